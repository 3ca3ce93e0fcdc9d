package mbox

import (
	"os"

	"golang.org/x/sys/unix"
)

// Held keeps one mailbox open from one Append to the next
// (Options.Held), for a process that appends to the same mailbox again
// and again: lda's warm worker, bound to one user. Without it every
// append looks the name up, opens it, checks the open file against the
// name and closes it again: steps 2 to 5 of the Security section in the
// package documentation, five system calls.
//
// Reuse is checked on every append, never assumed, and the check is the
// one every append already makes once it holds the locks (step 7): the
// mailbox is reused only when Append is given the same *os.File for dir
// (the caller keeps that one valid: lda's worker stats its path to the
// open directory's device and inode before each delivery) and the same
// name; its parent directory, if the name has more than one component, is
// opened afresh beneath dir as step 1 opens it; and then, locked, only
// when the file held still has one link and the owner's uid, and its last
// component looked up afresh in that parent with
// fstatat(AT_SYMLINK_NOFOLLOW) is still that very file (device and inode,
// which no other file can take while this one is held open). That is what
// opening the name and checking it would find at that instant, under the
// lock. Anything else unlocks it and closes it, and the append opens and
// checks everything afresh. A failed append closes it too, so that the
// next one starts afresh.
//
// A held mailbox holds no lock between appends: only the open file. A
// Held is for one goroutine at a time. Its zero value holds nothing.
type Held struct {
	held bool
	dir  *os.File
	name string
	fd   int
}

// Holds reports whether h holds a mailbox open.
func (h *Held) Holds() bool { return h != nil && h.held }

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
// held, when it holds nothing for them or the parent cannot be opened
// (the fresh open that follows then says why).
func (h *Held) take(dir *os.File, name string) *mailbox {
	if h == nil || !h.held {
		return nil
	}
	if h.dir != dir || h.name != name {
		h.Close()
		return nil
	}
	m := &mailbox{name: name, base: name, dirfd: -1, fd: h.fd}
	*h = Held{}
	parent, base, err := splitName(name)
	if err == nil {
		m.base = base
		err = m.openDir(dir, parent)
	}
	if err != nil {
		m.close()
		return nil
	}
	return m
}

// keep takes over m's file after a successful append of name beneath
// dir, closing whatever h held before. m keeps its directory and loses
// its file.
func (h *Held) keep(dir *os.File, name string, m *mailbox) {
	if h == nil || m.fd < 0 {
		return
	}
	h.Close()
	*h = Held{held: true, dir: dir, name: name, fd: m.fd}
	m.fd = -1
}
