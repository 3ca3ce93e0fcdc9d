package mbox

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/status"
)

// Locking is a set of locking methods, taken in the order DotLock,
// FcntlLock, Flock.
type Locking uint8

const (
	// DotLock creates "<name>.lock" next to the mailbox.
	DotLock Locking = 1 << iota
	// FcntlLock takes an open file description lock (F_OFD_SETLK) on the
	// whole file, polled until the timeout.
	FcntlLock
	// Flock takes flock(LOCK_EX), polled until the timeout.
	Flock

	allLocks = DotLock | FcntlLock | Flock
)

var lockNames = []struct {
	name string
	l    Locking
}{{"dotlock", DotLock}, {"fcntl", FcntlLock}, {"flock", Flock}}

// ParseLocking parses a list of "dotlock", "fcntl" and "flock". A name
// may appear only once; an empty list means no locking.
func ParseLocking(names []string) (Locking, error) {
	var l Locking
	for _, n := range names {
		found := false
		for _, ln := range lockNames {
			if n == ln.name {
				if l&ln.l != 0 {
					return 0, fmt.Errorf("mbox: locking method %q given twice", n)
				}
				l |= ln.l
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("mbox: unknown locking method %q (want dotlock, fcntl or flock)", n)
		}
	}
	return l, nil
}

func (l Locking) String() string {
	var s []string
	for _, ln := range lockNames {
		if l&ln.l != 0 {
			s = append(s, ln.name)
		}
	}
	if rest := l &^ allLocks; rest != 0 {
		s = append(s, fmt.Sprintf("%#x", uint8(rest)))
	}
	return strings.Join(s, ",")
}

const (
	defaultLockTimeout = 30 * time.Second
	defaultStaleLock   = 5 * time.Minute
	minPoll            = 50 * time.Microsecond
	maxPoll            = 100 * time.Millisecond
)

// backoff sleeps before the next attempt to take a lock, and reports false
// when the deadline has passed. The first waits are short: the usual
// holder is another delivery to the same mailbox, which holds its locks
// for the time of one fsync, a few hundred microseconds; the waits double
// from there, so a mail reader that holds the mailbox for minutes costs
// about ten attempts a second.
type backoff struct {
	deadline time.Time
	delay    time.Duration
}

func (b *backoff) wait() bool {
	left := time.Until(b.deadline)
	if left <= 0 {
		return false
	}
	if b.delay == 0 {
		b.delay = minPoll
	}
	d := b.delay/2 + rand.N(b.delay)
	sleep(min(d, left))
	b.delay = min(2*b.delay, maxPoll)
	return true
}

// sleepSlack is the timer slack a wait for a lock runs with.
const sleepSlack = 10 * time.Microsecond

// sleep waits d on this thread, with a timer slack of sleepSlack for the
// wait. A process may run with a large slack (lda's workers have 10 ms,
// to let the kernel merge the Go runtime's wake-ups), which the kernel
// adds to every sleep; waiting behind another delivery's lock, that made
// each attempt about ten times as late as the lock's holder took. The
// runtime's own time.Sleep cannot be given its slack (another thread may
// run its timer, and its poller counts in milliseconds), so the wait is a
// nanosleep(2) on a thread held for it, whose slack is set for the wait
// and then set back.
func sleep(d time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err == nil && time.Duration(old) > sleepSlack {
		if unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(sleepSlack.Nanoseconds()), 0, 0, 0) == nil {
			defer unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0)
		}
	}
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for {
		var rem unix.Timespec
		if err := unix.Nanosleep(&ts, &rem); err != unix.EINTR {
			return
		}
		ts = rem
	}
}

var hostname = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil || h == "" || strings.ContainsAny(h, " \n") {
		return "localhost"
	}
	return h
})

// locker holds the locks on one mailbox.
type locker struct {
	m          *mailbox
	stale      time.Duration
	dotName    string
	dotFd      int // -1 when no dot-lock is held
	dotContent []byte
	lastTouch  time.Time
	fcntl      bool
	flock      bool
}

// lock takes the locks of opt.Locks on m. On error nothing is held.
func lock(m *mailbox, opt Options) (*locker, error) {
	timeout := opt.LockTimeout
	if timeout <= 0 {
		timeout = defaultLockTimeout
	}
	l := &locker{m: m, stale: opt.StaleLock, dotFd: -1}
	if l.stale <= 0 {
		l.stale = defaultStaleLock
	}
	deadline := time.Now().Add(timeout)
	var err error
	if opt.Locks&DotLock != 0 {
		err = l.dotLock(deadline)
	}
	if err == nil && opt.Locks&FcntlLock != 0 {
		err = l.fcntlLock(deadline)
	}
	if err == nil && opt.Locks&Flock != 0 {
		err = l.flockLock(deadline)
	}
	if err != nil {
		l.unlock()
		return nil, err
	}
	return l, nil
}

func busy(m *mailbox, what string) error {
	return status.MailboxBusy.Wrapf("mbox: timed out waiting for the %s lock on %q", what, m.name)
}

func (l *locker) dotLock(deadline time.Time) error {
	m := l.m
	l.dotName = m.base + ".lock"
	l.dotContent = []byte(strconv.Itoa(os.Getpid()) + " " + hostname() + "\n")
	b := backoff{deadline: deadline}
	for broken := 0; ; {
		fd, err := l.createDot()
		switch err {
		case nil:
			l.dotFd = fd
			// The content only helps to break the lock of a dead
			// process; an empty lock (ENOSPC) is still a lock.
			unix.Pwrite(fd, l.dotContent, 0)
			l.lastTouch = time.Now()
			return nil
		case unix.EEXIST:
			stale, err := l.breakStale()
			if err != nil {
				return err
			}
			// A lock that keeps coming back stale is not ours to
			// fight over forever: fall back to waiting.
			if stale && broken < 8 {
				broken++
				continue
			}
			if !b.wait() {
				return busy(m, "dot")
			}
		case unix.EACCES, unix.EPERM:
			return status.MailboxUnavail.Wrap(fmt.Errorf("mbox: cannot create dot-lock for %q: %w", m.name, err))
		default:
			return fmt.Errorf("mbox: creating dot-lock for %q: %w", m.name, err)
		}
	}
}

// createDot creates the dot-lock. Where the file system can, the lock
// file is made nameless (O_TMPFILE), its owner line written, and only
// then linked to its name (EEXIST if the lock is held), so that a process
// killed at any moment leaves either no lock or one that names it, never
// an empty one that only stale_lock can clear. Elsewhere it is created
// O_EXCL and written at once.
func (l *locker) createDot() (int, error) {
	m := l.m
	if !noTmpfileLock {
		tfd, err := unix.Openat(m.dirfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
		if err == unix.EACCES || err == unix.EPERM {
			return -1, err
		}
		if err == nil {
			_, err = unix.Pwrite(tfd, l.dotContent, 0)
			if err == nil {
				err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(tfd), m.dirfd, l.dotName, unix.AT_SYMLINK_FOLLOW)
				if err == nil {
					return tfd, nil
				}
			}
			unix.Close(tfd)
			if err == unix.EEXIST {
				return -1, err
			}
		}
		// No O_TMPFILE here (EOPNOTSUPP, EISDIR), no room for the owner
		// line (ENOSPC: an empty lock is still a lock) or no /proc: the
		// plain way, which also gives the authoritative error.
	}
	fd, err := openat2(m.dirfd, l.dotName, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC,
		Mode:    0o600,
		Resolve: resolve,
	})
	if err != nil {
		return -1, err
	}
	return fd, nil
}

// noTmpfileLock forces the O_EXCL path (tests of the fallback).
var noTmpfileLock = false

// breakStale removes the existing dot-lock if it is stale. It reports
// whether the caller should retry at once.
func (l *locker) breakStale() (bool, error) {
	m := l.m
	var st unix.Stat_t
	if err := unix.Fstatat(m.dirfd, l.dotName, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return true, nil
		}
		return false, nil
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return false, nil // cannot be ours to remove; wait and time out
	}
	mtime := time.Unix(st.Mtim.Unix())
	stale := time.Since(mtime) > l.stale
	if !stale && isReg(&st) && st.Size <= 256 {
		stale = l.deadOwner(&st)
	}
	if !stale {
		return false, nil
	}
	// Make sure it is still the lock we judged, then remove the name
	// (unlinkat never follows a symlink: a planted link just goes away).
	var again unix.Stat_t
	if err := unix.Fstatat(m.dirfd, l.dotName, &again, unix.AT_SYMLINK_NOFOLLOW); err != nil ||
		again.Dev != st.Dev || again.Ino != st.Ino || again.Mtim != st.Mtim {
		return true, nil
	}
	if err := unix.Unlinkat(m.dirfd, l.dotName, 0); err != nil && err != unix.ENOENT {
		if err == unix.EACCES || err == unix.EPERM {
			return false, status.MailboxUnavail.Wrap(fmt.Errorf("mbox: removing stale dot-lock of %q: %w", m.name, err))
		}
		return false, nil
	}
	return true, nil
}

// deadOwner reports whether the dot-lock st was written by an lda process
// on this host that no longer exists.
func (l *locker) deadOwner(st *unix.Stat_t) bool {
	fd, err := openat2(l.m.dirfd, l.dotName, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC,
		Resolve: resolve,
	})
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var fst unix.Stat_t
	if fstat(fd, &fst) != nil || !isReg(&fst) || fst.Dev != st.Dev || fst.Ino != st.Ino {
		return false
	}
	buf := make([]byte, 257)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil || n == 0 || n > 256 {
		return false
	}
	line, ok := bytes.CutSuffix(buf[:n], []byte("\n"))
	if !ok {
		return false
	}
	pidText, host, ok := bytes.Cut(line, []byte(" "))
	if !ok || string(host) != hostname() {
		return false
	}
	pid, err := strconv.Atoi(string(pidText))
	if err != nil || pid <= 1 || string(pidText) != strconv.Itoa(pid) {
		return false
	}
	return unix.Kill(pid, 0) == unix.ESRCH
}

// touch refreshes the dot-lock's mtime during a long append, so that it is
// not taken for stale.
func (l *locker) touch() {
	if l == nil || l.dotFd < 0 || time.Since(l.lastTouch) < l.stale/4 {
		return
	}
	unix.Pwrite(l.dotFd, l.dotContent, 0)
	l.lastTouch = time.Now()
}

func (l *locker) fcntlLock(deadline time.Time) error {
	b := backoff{deadline: deadline}
	for {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
		err := unix.FcntlFlock(uintptr(l.m.fd), unix.F_OFD_SETLK, &lk)
		switch err {
		case nil:
			l.fcntl = true
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.EACCES:
			if !b.wait() {
				return busy(l.m, "fcntl")
			}
		default:
			return fmt.Errorf("mbox: fcntl lock on %q: %w", l.m.name, err)
		}
	}
}

func (l *locker) flockLock(deadline time.Time) error {
	b := backoff{deadline: deadline}
	for {
		err := unix.Flock(l.m.fd, unix.LOCK_EX|unix.LOCK_NB)
		switch err {
		case nil:
			l.flock = true
			return nil
		case unix.EINTR:
			continue
		case unix.EWOULDBLOCK:
			if !b.wait() {
				return busy(l.m, "flock")
			}
		default:
			return fmt.Errorf("mbox: flock on %q: %w", l.m.name, err)
		}
	}
}

// unlock releases everything held, in reverse order. It is best effort:
// the message is already safe (or already rolled back) when it runs, and
// the kernel drops the fcntl and flock locks when the file is closed. It
// reports whether the kernel locks were released: a mailbox whose locks
// were not must be closed, never held for the next append (Held). A
// dot-lock is removed only if the name still refers to ours.
func (l *locker) unlock() (released bool) {
	if l == nil {
		return true
	}
	released = true
	if l.flock {
		if unix.Flock(l.m.fd, unix.LOCK_UN) != nil {
			released = false
		}
		l.flock = false
	}
	if l.fcntl {
		lk := unix.Flock_t{Type: unix.F_UNLCK}
		if unix.FcntlFlock(uintptr(l.m.fd), unix.F_OFD_SETLK, &lk) != nil {
			released = false
		}
		l.fcntl = false
	}
	if l.dotFd >= 0 {
		var fst, lst unix.Stat_t
		if fstat(l.dotFd, &fst) == nil &&
			unix.Fstatat(l.m.dirfd, l.dotName, &lst, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			fst.Dev == lst.Dev && fst.Ino == lst.Ino {
			unix.Unlinkat(l.m.dirfd, l.dotName, 0)
		}
		unix.Close(l.dotFd)
		l.dotFd = -1
	}
	return released
}
