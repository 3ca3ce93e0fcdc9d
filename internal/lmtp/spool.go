package lmtp

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// spill is the spool of one message: an anonymous memory file (memfd)
// until the message passes Config.SpoolMemory bytes, then the file the
// session's spool function makes, with what was written so far copied
// over. A small message never touches a file system: no inode is created
// and freed per message (on ext4 an allocation scans past every inode
// freed in the last minutes, which made the disk spool the listener's
// largest cost), and nothing is written back.
type spill struct {
	f     *os.File
	mem   bool
	n     int64
	limit int64
	disk  func() (*os.File, error)
}

// memfdCreate is unix.MemfdCreate; tests replace it to see the fallback.
var memfdCreate = unix.MemfdCreate

// newSpill starts a spool: in memory if limit > 0 and a memfd can be
// made, else straight on disk.
func newSpill(limit int64, disk func() (*os.File, error)) (*spill, error) {
	if disk == nil {
		return nil, errors.New("lmtp: no spool function")
	}
	s := &spill{limit: limit, disk: disk}
	if limit > 0 {
		if fd, err := memfdCreate("lda-spool", unix.MFD_CLOEXEC); err == nil {
			s.f, s.mem = os.NewFile(uintptr(fd), "spool"), true
			return s, nil
		}
	}
	f, err := disk()
	if err == nil && f == nil {
		err = errors.New("lmtp: spool returned no file")
	}
	if err != nil {
		return nil, err
	}
	s.f = f
	return s, nil
}

func (s *spill) Write(p []byte) (int, error) {
	if s.mem && s.n+int64(len(p)) > s.limit {
		if err := s.toDisk(); err != nil {
			return 0, err
		}
	}
	n, err := s.f.Write(p)
	s.n += int64(n)
	return n, err
}

// toDisk moves the message so far from memory to the disk spool.
func (s *spill) toDisk() error {
	d, err := s.disk()
	if err == nil && d == nil {
		err = errors.New("lmtp: spool returned no file")
	}
	if err != nil {
		return err
	}
	if _, err := io.Copy(d, io.NewSectionReader(s.f, 0, s.n)); err != nil {
		d.Close()
		return fmt.Errorf("lmtp: spool: %w", err)
	}
	s.f.Close()
	s.f, s.mem = d, false
	return nil
}

// file returns the spool, rewound, for reading.
func (s *spill) file() (*os.File, error) {
	_, err := s.f.Seek(0, io.SeekStart)
	return s.f, err
}

func (s *spill) Close() error { return s.f.Close() }
