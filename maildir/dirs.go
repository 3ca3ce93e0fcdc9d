package maildir

import (
	"os"

	"golang.org/x/sys/unix"
)

// Dirs keeps one maildir's root, tmp/ and new/ open from one delivery to
// the next (Options.Dirs), for a process that delivers into the same
// maildir again and again: lda's warm worker, bound to one user. Without
// it every delivery opens, fstats and closes the three directories: nine
// system calls where reusing them, checked, takes three.
//
// Reuse is checked on every delivery, never assumed. The directories are
// reused only when Deliver is given the same *os.File for dir (the caller
// keeps that one valid: lda's worker stats its path to the open
// directory's device and inode before each delivery) and the same name,
// for the INBOX (no folder) and new/ (no flags), and only when, looked up
// afresh with fstatat(AT_SYMLINK_NOFOLLOW) one component at a time, name
// beneath dir and tmp and new beneath it are still the very directories
// held open (device and inode), still directories, and (with
// Options.CheckOwner) still the owner's. That is what opening them again
// beneath dir with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS would find at that
// instant: a symlink is its own inode to fstatat, never a directory; a
// renamed, replaced or removed directory is another inode or none; and a
// device and inode pair cannot be reused by another directory while the
// old one is held open. Anything else closes them, and the delivery opens
// and checks everything as without Dirs. A failed delivery closes them
// too, so that the next one starts afresh.
//
// A Dirs is for one goroutine at a time. Its zero value holds nothing.
type Dirs struct {
	held          bool
	dir           *os.File
	name          string
	box, tmp, new dirRef
}

type dirRef struct {
	fd       int
	dev, ino uint64
}

// Close closes the directories held, if any.
func (d *Dirs) Close() {
	if d == nil || !d.held {
		return
	}
	unix.Close(d.box.fd)
	unix.Close(d.tmp.fd)
	unix.Close(d.new.fd)
	*d = Dirs{}
}

// reuse returns the tmp/ and new/ descriptors held for name beneath dir,
// if the checks in the type's comment pass; otherwise it closes them and
// returns false.
func (d *Dirs) reuse(dir *os.File, name string, owner int) (tmp, new int, ok bool) {
	if !d.held {
		return -1, -1, false
	}
	if d.dir != dir || d.name != name ||
		!d.box.still(int(dir.Fd()), name, owner) ||
		!d.tmp.still(d.box.fd, "tmp", owner) ||
		!d.new.still(d.box.fd, "new", owner) {
		d.Close()
		return -1, -1, false
	}
	return d.tmp.fd, d.new.fd, true
}

// still reports whether name beneath parent is, without following a
// symlink, the directory r holds, owned by owner (if owner >= 0).
func (r dirRef) still(parent int, name string, owner int) bool {
	var st unix.Stat_t
	if unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && (owner < 0 || int(st.Uid) == owner) &&
		st.Dev == r.dev && st.Ino == r.ino
}

// keep takes over box, tmp and new, just opened and checked beneath dir for
// name, closing whatever it held before. It returns false, and takes
// nothing, if it cannot fstat them.
func (d *Dirs) keep(dir *os.File, name string, box, tmp, new int) bool {
	d.Close()
	var refs [3]dirRef
	for i, fd := range [...]int{box, tmp, new} {
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil {
			return false
		}
		refs[i] = dirRef{fd: fd, dev: st.Dev, ino: st.Ino}
	}
	*d = Dirs{held: true, dir: dir, name: name, box: refs[0], tmp: refs[1], new: refs[2]}
	return true
}
