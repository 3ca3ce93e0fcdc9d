package worker

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/seqpacket"
	"lda/maildir"
	"lda/mbox"
)

// rootCache keeps open the trusted root directories of a worker's last
// deliveries (the policy decision's Root: a home, /var/mail), so that a
// warm worker does not open and close the same directory for every job.
//
// Each use checks it, never assumes it: the path is stat'ed, following
// symlinks as open(2) would, and the open directory is reused only if
// the path still leads to it (the same device and inode, which no other
// directory can take while this one is held open) and it is still a
// directory. Otherwise it is closed and the path opened afresh. What the
// caller gets is what opening the path would give at that instant.
//
// A worker runs one job at a time; the cache is not for concurrent use.
type rootCache struct {
	ents [2]rootEnt // a Maildir's home and a mailbox spool, say
	next int        // the entry replaced when none is free
}

type rootEnt struct {
	path     string
	f        *os.File
	dev, ino uint64
}

// open returns the directory at path, open, for the caller to use but not
// to close. seen is the directory that this job has already found at path
// with a stat (following symlinks, as here), or nil: the home's, from the
// job's probe (home.go), stands for a second stat of the same path.
func (c *rootCache) open(path string, seen *fileID) (*os.File, error) {
	for i := range c.ents {
		e := &c.ents[i]
		if e.f == nil || e.path != path {
			continue
		}
		if seen != nil {
			if seen.dev == e.dev && seen.ino == e.ino {
				return e.f, nil
			}
		} else {
			var st unix.Stat_t
			if unix.Stat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Dev == e.dev && st.Ino == e.ino {
				return e.f, nil
			}
		}
		e.close()
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	slot := -1
	for i := range c.ents {
		if c.ents[i].f == nil {
			slot = i
			break
		}
	}
	if slot < 0 {
		slot, c.next = c.next, (c.next+1)%len(c.ents)
		c.ents[slot].close()
	}
	f := os.NewFile(uintptr(fd), path)
	c.ents[slot] = rootEnt{path: path, f: f, dev: st.Dev, ino: st.Ino}
	return f, nil
}

func (e *rootEnt) close() {
	if e.f != nil {
		e.f.Close()
	}
	*e = rootEnt{}
}

// roots, inbox and held are this worker's: the open roots of its
// deliveries, the directories of the last Maildir INBOX it delivered into
// (handed to maildir.Deliver, which checks them again on each use; see
// maildir.Dirs), and the last mbox it appended to (handed to mbox.Append,
// which checks it again under the lock on each use; see mbox.Held).
var (
	roots rootCache
	inbox maildir.Dirs
	held  mbox.Held
)

// heldIdle is how long a warm worker keeps its mbox open without an
// append to it (other jobs, Maildir deliveries say, do not count). A
// mailbox its user deletes or replaces meanwhile stays allocated while
// held (its blocks, and its quota); and the worker that
// finally lets it go frees it, which on ext4 with online discard took
// about 6 ms, in the next delivery's time. After heldIdle the worker lets
// it go between jobs instead.
const heldIdle = time.Second

// recvJob is conn.Recv for a warm worker's loop: while the worker holds an
// mbox, it waits for the next job only until heldIdle has passed since the
// mbox was last appended to, then closes the mbox (held.Close) and waits
// on without a deadline.
func recvJob(conn *seqpacket.Conn) ([]byte, *os.File, error) {
	if held.Holds() {
		if left := heldIdle - time.Since(held.Used()); left > 0 {
			conn.SetReadDeadline(time.Now().Add(left))
			pkt, f, err := conn.Recv()
			conn.SetReadDeadline(time.Time{})
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return pkt, f, err
			}
		}
		held.Close()
	}
	return conn.Recv()
}
