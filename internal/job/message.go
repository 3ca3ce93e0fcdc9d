package job

import (
	"errors"

	"golang.org/x/sys/unix"
)

// FrozenSeals are the seals that make a memfd's content and size fixed
// for good, through every descriptor of it, the writable ones included
// (memfd_create(2), fcntl(2) F_ADD_SEALS).
const FrozenSeals = unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW

// Sealed reports whether fd is a memfd sealed with FrozenSeals: one open
// file description that the workers of every recipient may share, since
// none of them can change anything about it that the others' reads
// depend on (a disk spool's descriptor is reopened per recipient).
func Sealed(fd int) bool {
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	return err == nil && seals&FrozenSeals == FrozenSeals
}

// Errors of CheckMessage.
var (
	ErrMessageNotFile    = errors.New("message descriptor is not a regular file")
	ErrMessageChangeable = errors.New("message descriptor lets the message be changed")
)

// CheckMessage checks a message descriptor before a worker reads it or
// root passes it on. The workers of a message's recipients, each running
// as its own user, share it, so none of them may be able to change what
// the others read through it. It must be a regular file and either a
// memfd sealed with FrozenSeals (the listener's spool of a small
// message: no one can write, shrink or grow it, whatever the descriptor's
// mode) or opened read-only on a file that neither its group nor others
// may write (the disk spool, a 0600 file of the listener's, reopened).
// The mode matters because a worker holding any descriptor of a file can
// reopen it through /proc with whatever access the file's mode grants
// its user: an unsealed memfd, whose mode is 0777, reopened read-only
// protects nothing. O_PATH is refused either way: such a descriptor would
// let the listener name a file it cannot read. (A sealed memfd opened
// write-only passes; reading it fails, so a listener that sends one only
// fails its own delivery.)
//
// The seals are looked at first, since that is the common case, and they
// settle it alone: only a memfd can carry them, and a memfd is a regular
// file. Every other file of shmem or hugetlbfs is born with F_SEAL_SEAL
// and can never gain a seal, every other file system has no seals
// (EINVAL), and an O_PATH descriptor has none to read (EBADF). Anything
// else is looked at with fstat and F_GETFL.
func CheckMessage(fd int) error {
	if Sealed(fd) {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return ErrMessageNotFile
	}
	if st.Mode&0o022 != 0 {
		return ErrMessageChangeable
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_ACCMODE != unix.O_RDONLY || fl&unix.O_PATH != 0 {
		return ErrMessageChangeable
	}
	return nil
}
