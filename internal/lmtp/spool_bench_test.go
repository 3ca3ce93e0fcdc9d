package lmtp

import (
	"bytes"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkSpool spools one 1 KiB message and frees it, as the listener
// does per transaction: in a memfd (spool_memory) and in an O_TMPFILE in
// a directory of the disk the test runs on (spool_memory: 0). The disk
// case allocates and frees an inode per message; on ext4 without a
// journal each allocation scans past the inodes freed in the last minutes,
// so its cost grows with b.N (compare -benchtime 1000x and 20000x).
func BenchmarkSpool(b *testing.B) {
	msg := bytes.Repeat([]byte("x"), 1023)
	msg = append(msg, '\n')
	dir := b.TempDir()
	disk := func() (*os.File, error) {
		fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), "spool"), nil
	}
	for _, c := range []struct {
		name  string
		limit int64
	}{{"memfd", 1 << 20}, {"tmpfile", 0}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for i := 0; i < b.N; i++ {
				s, err := newSpill(c.limit, disk)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := s.file(); err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}
