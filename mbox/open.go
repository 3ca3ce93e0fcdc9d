package mbox

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"lda/internal/status"
)

// resolve forbids symlinks (also magic ones) in every component and any
// escape from the starting directory.
const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// Flags for opening a mailbox; see the Security section of the package
// documentation for why each one is there.
const (
	openFlags   = unix.O_RDWR | unix.O_APPEND | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_NOCTTY | unix.O_CLOEXEC
	createFlags = openFlags | unix.O_CREAT | unix.O_EXCL
	dirFlags    = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
)

// errNotExist reports that the last component of the name does not exist.
var errNotExist = errors.New("mbox: mailbox does not exist")

// mailbox is an open, checked mailbox file and its directory.
type mailbox struct {
	name    string   // as given, for messages
	base    string   // last component
	dir     *os.File // the caller's directory, when dirfd is its own (not closed here)
	dirfd   int      // the directory holding base
	fd      int      // the mailbox, -1 if not open
	created bool     // we created it in this call
}

// splitName checks name lexically and splits it into the parent path
// ("." for none) and the last component.
func splitName(name string) (parent, base string, err error) {
	if name == "" {
		return "", "", status.Usage.Wrapf("mbox: empty mailbox name")
	}
	if name[0] == '/' {
		return "", "", status.Usage.Wrapf("mbox: mailbox name %q is absolute", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			return "", "", status.Usage.Wrapf("mbox: mailbox name %q contains a control character", name)
		}
	}
	for _, c := range strings.Split(name, "/") {
		if c == "" || c == "." || c == ".." {
			return "", "", status.Usage.Wrapf("mbox: mailbox name %q has an empty, \".\" or \"..\" component", name)
		}
	}
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return ".", name, nil
	}
	return name[:i], name[i+1:], nil
}

// openat2 retries EINTR and the EAGAIN that RESOLVE_BENEATH returns when a
// rename raced with the lookup.
func openat2(dirfd int, path string, how *unix.OpenHow) (int, error) {
	var err error
	for range 16 {
		var fd int
		fd, err = unix.Openat2(dirfd, path, how)
		if err == nil {
			return fd, nil
		}
		if err != unix.EINTR && err != unix.EAGAIN {
			break
		}
	}
	return -1, err
}

// dirFd runs f with the descriptor of dir, keeping dir alive meanwhile.
func dirFd(dir *os.File, f func(fd int) error) error {
	if dir == nil {
		return status.Usage.Wrapf("mbox: nil directory")
	}
	rc, err := dir.SyscallConn()
	if err != nil {
		return fmt.Errorf("mbox: directory handle: %w", err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return fmt.Errorf("mbox: directory handle: %w", err)
	}
	return ferr
}

// openMailbox opens and checks the mailbox name beneath dir (steps 1-5 of
// the Security section), creating it if create is set and it is missing.
// The caller must call close.
func openMailbox(dir *os.File, name string, opt Options, create bool) (*mailbox, error) {
	parent, base, err := splitName(name)
	if err != nil {
		return nil, err
	}
	m := &mailbox{name: name, base: base, dirfd: -1, fd: -1}
	if err := m.openDir(dir, parent); err != nil {
		var st *status.Status
		if errors.As(err, &st) {
			return nil, err
		}
		// ENOENT, ENOTDIR, ELOOP (a symlinked directory), EXDEV (an
		// escape), EACCES: all temporary, the owner can fix them.
		return nil, status.MailboxUnavail.Wrap(fmt.Errorf("mbox: opening directory of %q: %w", name, err))
	}
	err = m.openExisting(opt)
	if errors.Is(err, errNotExist) && create {
		if err = hook("create"); err == nil {
			err = m.create(opt)
		}
		if errors.Is(err, unix.EEXIST) {
			// Someone created it between our lstat and our open:
			// take the existing-file path, once.
			err = m.openExisting(opt)
		}
	}
	if errors.Is(err, errNotExist) {
		err = status.MailboxUnavail.Wrap(fmt.Errorf("mbox: %q: %w", name, unix.ENOENT))
	}
	if err != nil {
		m.close()
		return nil, err
	}
	return m, nil
}

// openDir sets m's directory (step 1): parent opened beneath dir, or, for
// a mailbox directly beneath dir, dir itself, since that is what opening
// "." beneath it would give (its own descriptor, kept alive and not
// closed).
func (m *mailbox) openDir(dir *os.File, parent string) error {
	return dirFd(dir, func(fd int) error {
		if parent == "." {
			m.dir, m.dirfd = dir, fd
			return nil
		}
		var err error
		m.dirfd, err = openat2(fd, parent, &unix.OpenHow{Flags: dirFlags, Resolve: resolve})
		return err
	})
}

func (m *mailbox) close() {
	if m == nil {
		return
	}
	if m.fd >= 0 {
		unix.Close(m.fd)
		m.fd = -1
	}
	if m.dirfd >= 0 && m.dir == nil {
		unix.Close(m.dirfd)
	}
	runtime.KeepAlive(m.dir)
	m.dir, m.dirfd = nil, -1
}

func (m *mailbox) lstat(st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(m.dirfd, m.base, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

func fstat(fd int, st *unix.Stat_t) error {
	for {
		err := unix.Fstat(fd, st)
		if err != unix.EINTR {
			return err
		}
	}
}

func isReg(st *unix.Stat_t) bool  { return st.Mode&unix.S_IFMT == unix.S_IFREG }
func isLink(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFLNK }

func (m *mailbox) openExisting(opt Options) error {
	var pre unix.Stat_t
	if err := m.lstat(&pre); err != nil {
		if err == unix.ENOENT {
			return errNotExist
		}
		return status.MailboxUnavail.Wrap(fmt.Errorf("mbox: lstat %q: %w", m.name, err))
	}
	switch {
	case isLink(&pre):
		return status.MailboxUnavail.Wrap(fmt.Errorf("mbox: %q is a symbolic link: %w", m.name, unix.ELOOP))
	case !isReg(&pre):
		return status.NotRegular.Wrapf("mbox: %q is not a regular file (mode %#o)", m.name, pre.Mode)
	}
	if err := hook("open"); err != nil {
		return err
	}
	fd, err := openat2(m.dirfd, m.base, &unix.OpenHow{Flags: openFlags, Resolve: resolve})
	switch err {
	case nil:
	case unix.ENOENT:
		return errNotExist
	case unix.ELOOP:
		return status.MailboxUnavail.Wrap(fmt.Errorf("mbox: %q became a symbolic link: %w", m.name, err))
	case unix.ENXIO, unix.EISDIR:
		// ENXIO: a socket (or a FIFO without reader, were it O_WRONLY).
		return status.NotRegular.Wrap(fmt.Errorf("mbox: opening %q: %w", m.name, err))
	case unix.EWOULDBLOCK:
		// A lease held by someone else.
		return status.MailboxBusy.Wrap(fmt.Errorf("mbox: opening %q: %w", m.name, err))
	default:
		return fmt.Errorf("mbox: opening %q: %w", m.name, err)
	}
	m.fd = fd
	if err := hook("opened"); err != nil {
		return err
	}
	return m.checkOpened(opt)
}

// create makes a missing mailbox: O_CREAT|O_EXCL (never following a link),
// mode 0600 whatever the umask, owned by opt.Owner.
func (m *mailbox) create(opt Options) error {
	fd, err := openat2(m.dirfd, m.base, &unix.OpenHow{Flags: createFlags, Mode: 0o600, Resolve: resolve})
	if err != nil {
		if err == unix.EEXIST {
			return err
		}
		return fmt.Errorf("mbox: creating %q: %w", m.name, err)
	}
	m.fd = fd
	m.created = true
	if err := unix.Fchmod(fd, 0o600); err != nil {
		m.removeCreated()
		return fmt.Errorf("mbox: fchmod %q: %w", m.name, err)
	}
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		m.removeCreated()
		return fmt.Errorf("mbox: fstat %q: %w", m.name, err)
	}
	if opt.Owner >= 0 && st.Uid != uint32(opt.Owner) {
		if err := unix.Fchown(fd, opt.Owner, -1); err != nil {
			m.removeCreated()
			return status.MailboxUnavail.Wrap(fmt.Errorf("mbox: fchown %q to %d: %w", m.name, opt.Owner, err))
		}
	}
	return m.checkOpened(opt)
}

// removeCreated removes a file this call created and closes it, if the name
// still refers to it.
func (m *mailbox) removeCreated() {
	var fst, lst unix.Stat_t
	if fstat(m.fd, &fst) == nil && m.lstat(&lst) == nil && fst.Dev == lst.Dev && fst.Ino == lst.Ino && fst.Size == 0 {
		unix.Unlinkat(m.dirfd, m.base, 0)
	}
	unix.Close(m.fd)
	m.fd = -1
	m.created = false
}

// checkOpened performs Postfix's checks on the opened descriptor, then
// compares it with the name.
func (m *mailbox) checkOpened(opt Options) error {
	var st unix.Stat_t
	if err := fstat(m.fd, &st); err != nil {
		return fmt.Errorf("mbox: fstat %q: %w", m.name, err)
	}
	if !isReg(&st) {
		return status.NotRegular.Wrapf("mbox: %q is not a regular file (mode %#o)", m.name, st.Mode)
	}
	if st.Nlink != 1 {
		return status.MailboxUnavail.Wrapf("mbox: %q has %d hard links", m.name, st.Nlink)
	}
	if opt.Owner >= 0 && st.Uid != uint32(opt.Owner) {
		return status.MailboxUnavail.Wrapf("mbox: %q is owned by uid %d, not %d", m.name, st.Uid, opt.Owner)
	}
	var lst unix.Stat_t
	if err := m.lstat(&lst); err != nil {
		return status.MailboxUnavail.Wrap(fmt.Errorf("mbox: lstat %q after open: %w", m.name, err))
	}
	if lst.Dev != st.Dev || lst.Ino != st.Ino || lst.Nlink != st.Nlink || lst.Mode != st.Mode || lst.Uid != st.Uid {
		return status.MailboxUnavail.Wrapf("mbox: %q changed while it was opened", m.name)
	}
	return nil
}

// recheck runs after locking: the file may have been linked or replaced
// while we waited. It returns the locked file's status.
func (m *mailbox) recheck(opt Options) (unix.Stat_t, error) {
	var st, lst unix.Stat_t
	if err := fstat(m.fd, &st); err != nil {
		return st, fmt.Errorf("mbox: fstat %q: %w", m.name, err)
	}
	if st.Nlink != 1 {
		return st, status.MailboxUnavail.Wrapf("mbox: %q has %d hard links after locking", m.name, st.Nlink)
	}
	if opt.Owner >= 0 && st.Uid != uint32(opt.Owner) {
		return st, status.MailboxUnavail.Wrapf("mbox: %q is owned by uid %d after locking", m.name, st.Uid)
	}
	if err := m.lstat(&lst); err != nil {
		return st, status.MailboxUnavail.Wrap(fmt.Errorf("mbox: lstat %q after locking: %w", m.name, err))
	}
	if lst.Dev != st.Dev || lst.Ino != st.Ino {
		return st, status.MailboxUnavail.Wrapf("mbox: %q was replaced while it was being locked", m.name)
	}
	return st, nil
}
