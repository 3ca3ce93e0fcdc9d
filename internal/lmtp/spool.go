package lmtp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// spill is the spool of one message: an anonymous memory file (memfd)
// until the message passes Config.SpoolMemory bytes, then the file the
// session's spool function makes, with what was written so far copied
// over. A small message never touches a file system: no inode is created
// and freed per message (on ext4 an allocation scans past every inode
// freed in the last minutes, which made the disk spool the listener's
// largest cost), and nothing is written back.
//
// What the backend gets is frozen (file): the memfd sealed, or the disk
// spool, a 0600 file of the listener's, reopened read-only, so that
// whoever the backend hands it to cannot change what the others read.
type spill struct {
	f     *os.File
	ro    *os.File // the read-only reopening that file handed out, if any
	mem   bool
	n     int64
	limit int64
	disk  func() (*os.File, error)
}

// memfdCreate is unix.MemfdCreate; tests replace it to see the fallback.
var memfdCreate = unix.MemfdCreate

// frozenSeals fix a memfd's content and size for good: no write, no
// truncation, no growth, and no change to the seals themselves (what
// job.CheckMessage and job.Sealed require is the first three).
const frozenSeals = unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// addSeals seals a memfd; tests replace it to see the fallback.
var addSeals = func(fd uintptr) error {
	_, err := unix.FcntlInt(fd, unix.F_ADD_SEALS, frozenSeals)
	return err
}

// reopen opens a descriptor afresh, read-only; tests replace it to see
// it fail.
var reopen = func(fd uintptr) (int, error) {
	// unix.Open, not os.Open: a plain file needs no poller registration.
	return unix.Open("/proc/self/fd/"+strconv.Itoa(int(fd)), unix.O_RDONLY|unix.O_CLOEXEC, 0)
}

// newSpill starts a spool: in memory if limit > 0 and a memfd can be
// made, else straight on disk.
func newSpill(limit int64, disk func() (*os.File, error)) (*spill, error) {
	if disk == nil {
		return nil, errors.New("lmtp: no spool function")
	}
	s := &spill{limit: limit, disk: disk}
	if limit > 0 {
		if fd, err := memfdCreate("lda-spool", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING); err == nil {
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

// file returns the spool frozen, for reading at offsets: the memfd
// itself once sealed, else a read-only descriptor of the disk spool,
// opened afresh through /proc. Its file offset is not specified. Sealing
// costs one fcntl, where the reopening costs a lookup in /proc, an open
// and a close.
//
// A memfd that cannot be sealed is moved to the disk spool first, never
// handed out reopened read-only: a memfd's inode has mode 0777, so
// whoever holds any descriptor of it, a worker of another user included,
// could reopen it for writing through /proc. The disk spool's file is
// 0600 and the listener's own.
func (s *spill) file() (*os.File, error) {
	if s.mem {
		if addSeals(s.f.Fd()) == nil {
			return s.f, nil
		}
		if err := s.toDisk(); err != nil {
			return nil, err
		}
	}
	ro, err := ReopenReadOnly(s.f)
	if err != nil {
		return nil, err
	}
	s.ro = ro
	return s.ro, nil
}

// ReopenReadOnly opens msg, a disk spool Backend.Data got, afresh,
// read-only: a description of its own for one reader. The readers of one
// read-only description share its status flags, so one of them could set
// O_DIRECT on it and make the others' reads fail; a sealed memfd does not
// need this.
func ReopenReadOnly(msg *os.File) (*os.File, error) {
	fd, err := reopen(msg.Fd())
	if err != nil {
		return nil, fmt.Errorf("lmtp: spool: reopening read-only: %w", err)
	}
	return os.NewFile(uintptr(fd), "spool"), nil
}

func (s *spill) Close() error {
	if s.ro != nil {
		s.ro.Close()
	}
	return s.f.Close()
}
