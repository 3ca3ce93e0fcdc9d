package mbox

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Held keeps one mailbox open from one Append to the next
// (Options.Held), for a process that appends to the same mailbox again
// and again: lda's warm worker, bound to one user. Without it every
// append looks the name up, opens it, checks the open file against the
// name and closes it again: steps 2 to 5 of the Security section in the
// package documentation, five system calls, of which reuse spends two on
// its own checks (a lookup before locking, faccessat2 under the lock).
//
// Reuse is checked on every append, never assumed, and the check is the
// one every append already makes once it holds the locks (step 7): the
// mailbox is reused only when Append is given the same *os.File for dir
// (the caller keeps that one valid: lda's worker stats its path to the
// open directory's device and inode before each delivery) and the same
// name; its parent directory, if the name has more than one component, is
// opened afresh beneath dir as step 1 opens it; the last component, looked
// up afresh in that parent with fstatat(AT_SYMLINK_NOFOLLOW), must be
// that very file (device and inode, which no other file can take while
// this one is held open) before the file is locked; and then, locked,
// only when the file held still has one link and the owner's uid, the
// name still leads to it, and faccessat2(AT_EACCESS) says the user may
// still open it for reading and writing (its mode, ACL or label may have
// changed). That is what opening the name and checking it would find at
// that instant, under the lock. Anything else unlocks it and closes it,
// and the append opens and checks everything afresh. A failed append
// closes it too, so that the next one starts afresh.
//
// A held mailbox holds no lock between appends: only the open file. A
// Held is for one goroutine at a time. Its zero value holds nothing.
type Held struct {
	held     bool
	dir      *os.File
	name     string
	fd       int
	dev, ino uint64    // the file held
	used     time.Time // when an append last kept it
}

// Holds reports whether h holds a mailbox open.
func (h *Held) Holds() bool { return h != nil && h.held }

// Used returns when the mailbox held was last appended to (zero when h
// holds none).
func (h *Held) Used() time.Time {
	if !h.Holds() {
		return time.Time{}
	}
	return h.used
}

// Close closes the mailbox held, if any.
func (h *Held) Close() {
	if h == nil || !h.held {
		return
	}
	unix.Close(h.fd)
	*h = Held{}
}

// take hands over the mailbox held for name beneath dir as an open
// mailbox, its parent directory opened as openMailbox opens it (step 1:
// dir's own descriptor for a one-component name), for Append to lock and
// recheck; h then holds nothing. It returns nil, closing whatever it
// held, when it holds nothing for them, the parent cannot be opened (the
// fresh open that follows then says why), or the name no longer leads to
// the file held: so that Append does not wait for the locks of a file
// that is not the mailbox any more (a mail reader that renamed a new file
// over it may still hold the old one locked).
func (h *Held) take(dir *os.File, name string) *mailbox {
	if h == nil || !h.held {
		return nil
	}
	if h.dir != dir || h.name != name {
		h.Close()
		return nil
	}
	m := &mailbox{name: name, base: name, dirfd: -1, fd: h.fd}
	dev, ino := h.dev, h.ino
	*h = Held{}
	parent, base, err := splitName(name)
	if err == nil {
		m.base = base
		err = m.openDir(dir, parent)
	}
	var st unix.Stat_t
	if err == nil {
		err = m.lstat(&st)
	}
	if err != nil || st.Dev != dev || st.Ino != ino {
		m.close()
		return nil
	}
	return m
}

// mayOpen reports whether the user may still open the mailbox for reading
// and writing, as a fresh open (O_RDWR) would require: its mode, ACL,
// flags or security label may have changed while it was held.
func (m *mailbox) mayOpen() bool {
	return unix.Faccessat2(m.dirfd, m.base, unix.R_OK|unix.W_OK, unix.AT_EACCESS|unix.AT_SYMLINK_NOFOLLOW) == nil
}

// keep takes over m's file, whose status st is, after a successful
// append of name beneath dir, closing whatever h held before. m keeps its
// directory and loses its file.
func (h *Held) keep(dir *os.File, name string, m *mailbox, st *unix.Stat_t) {
	if h == nil || m.fd < 0 {
		return
	}
	h.Close()
	*h = Held{held: true, dir: dir, name: name, fd: m.fd, dev: st.Dev, ino: st.Ino, used: time.Now()}
	m.fd = -1
}
