package mbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The append intent: an extended attribute on the mailbox, set under the
// locks just before the first write(2) of an append (appending.start) and
// removed after its last byte and before its fsync, which makes the
// removal as durable as the message (removed after the fsync, a crash
// could bring it back beside a message answered 250). So no intent is
// ever there beside a message that was answered: the answer
// (Options.Durable) comes after the fsync. A writer that dies in between
// (killed, or by the OOM killer) leaves it behind, and its kernel locks
// (fcntl, flock) go with it. Whoever takes those locks next, an lda
// append or Recover, therefore finds the intent of a writer that can no
// longer be writing, and cuts that writer's region off (cutRegion)
// before it does anything else. Without it, another delivery to the
// same mailbox, waiting on the lock, appended after the partial message,
// and Recover, run later by whoever reaped the dead writer, then had to
// leave the partial message where it was (ErrRecoverMismatch: another
// message follows).
//
// Intents are used only when a kernel lock is taken (kernelLocked): a
// dot-lock can be broken by age while its writer still lives, and an
// intent found under it would not mean a dead writer. A program that
// does not know the intent and appends after a partial message makes the
// region no longer recognisable; it is left as it is, as before.
//
// The value is "2 OFFSET LENGTH SUM": the offset at which the region
// starts, and the length of the From_ line written there and the first
// 16 bytes of its SHA-256, in hex. It is at most 59 bytes whatever the
// sender, so that on a file with no other extended attributes it fits in
// the inode: on ext4 with 256-byte inodes a value of more than 60 bytes
// takes a block of its own, allocated by the set and freed by the
// removal, which made each append 40-50 us slower (a loop of appends with
// fsync on the disk, p50 150 against 190 us). Other attributes (an
// SELinux label, an ACL) share that room and can push it out again.
//
// The first form, "1 OFFSET FROMLINE" with the From_ line itself, is
// still read: an older lda may have left one. The compatibility is one
// way: an older lda takes the second form for garbage and removes it
// without cutting, so a partial message from a writer of this version
// that died while an older one (a worker still running the old binary
// after an upgrade) took the locks next stays, as before intents.
//
// An intent that names the append's end too, so that it could stay until
// after the answer (one system call fewer before it), was tried and not
// kept: left by a writer killed after its answer, it would stand beside
// an answered message, and a mail reader that then shortened that message
// in place would make it look like a partial one, to be cut.
//
// A file system without user extended attributes (ENOTSUP), an
// append-only file (EPERM) or a security module's refusal (EACCES) gets
// no intent, and the append and Recover work as they did before it.
const intentAttr = "user.lda.append"

// sumLen is how many bytes of the From_ line's SHA-256 an intent keeps:
// enough that no one can make two From_ lines with the same sum, though
// whoever can set the attribute (anyone who may write the mailbox) can
// write the mailbox anyway.
const sumLen = 16

// intentAttrs is false in tests that play a file system without user
// extended attributes.
var intentAttrs = true

// errIntentLeft is setIntent finding an intent already set.
var errIntentLeft = errors.New("mbox: an earlier append's intent is still set")

// setIntent records the region an append is about to write. ok is false
// where the file system keeps no user attributes.
func (m *mailbox) setIntent(off int64, from string) (ok bool, err error) {
	if err := hook("intent"); err != nil {
		return false, err
	}
	if !intentAttrs {
		return false, nil
	}
	err = unix.Fsetxattr(m.fd, intentAttr, intentValue(off, from), unix.XATTR_CREATE)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EEXIST):
		return false, errIntentLeft
	case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		// No user attributes here, an append-only file (chattr +a), or
		// a security module's refusal: the append goes ahead as before
		// intents, which is better than no delivery at all.
		return false, nil
	}
	return false, fmt.Errorf("mbox: recording the append in %q: %w", m.name, err)
}

// intentValue is the value setIntent writes, in one allocation (this is
// on every append): the From_ line is hashed from the tail of the
// value's own buffer, which the sum then overwrites.
func intentValue(off int64, from string) []byte {
	v := make([]byte, 0, 64+len(from))
	v = append(strconv.AppendInt(append(v, "2 "...), off, 10), ' ')
	v = append(strconv.AppendInt(v, int64(len(from)), 10), ' ')
	sum := sha256.Sum256(append(v[len(v):], from...))
	return hex.AppendEncode(v, sum[:sumLen])
}

// clearIntent removes the intent (none is fine).
func (m *mailbox) clearIntent() error {
	if err := hook("clear"); err != nil {
		return err
	}
	if !intentAttrs {
		return nil
	}
	err := unix.Fremovexattr(m.fd, intentAttr)
	if err == nil || errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	return fmt.Errorf("mbox: clearing the append record of %q: %w", m.name, err)
}

// intentState is what leftIntent found.
type intentState int

const (
	noIntent      intentState = iota // none: no writer died mid-append since the last repair
	noAttrs                          // the file system keeps no user attributes
	intentLeft                       // a dead writer's intent, parsed
	intentGarbled                    // an attribute of that name that is not one of ours
)

// leftIntent reads an intent left by a writer that died.
func (m *mailbox) leftIntent() (region, intentState, error) {
	if !intentAttrs {
		return region{}, noAttrs, nil
	}
	buf := make([]byte, 64+maxSender) // the first form holds a From_ line
	n, err := unix.Fgetxattr(m.fd, intentAttr, buf)
	switch {
	case errors.Is(err, unix.ENODATA):
		return region{}, noIntent, nil
	case errors.Is(err, unix.ENOTSUP):
		return region{}, noAttrs, nil
	case errors.Is(err, unix.ERANGE):
		return region{}, intentGarbled, nil // longer than any we write
	case err != nil:
		return region{}, noIntent, fmt.Errorf("mbox: reading the append record of %q: %w", m.name, err)
	}
	r, ok := parseIntent(string(buf[:n]))
	if !ok {
		return region{}, intentGarbled, nil
	}
	return r, intentLeft, nil
}

// parseIntent reads either form of an intent's value.
func parseIntent(v string) (region, bool) {
	form, v, _ := strings.Cut(v, " ")
	offs, v, ok := strings.Cut(v, " ")
	off, ok := decimal(offs, ok)
	if !ok {
		return region{}, false
	}
	switch form {
	case "1":
		if !validFromLine(v) {
			return region{}, false
		}
		return region{off: off, from: v, n: len(v)}, true
	case "2":
		ns, sums, ok := strings.Cut(v, " ")
		n, ok := decimal(ns, ok)
		if !ok || n < int64(len(fromPrefix))+2 || n > 64+maxSender || len(sums) != 2*sumLen {
			return region{}, false
		}
		r := region{off: off, n: int(n)}
		if _, err := hex.Decode(r.sum[:], []byte(sums)); err != nil || hex.EncodeToString(r.sum[:]) != sums {
			return region{}, false // lower case only, as intentValue writes
		}
		return r, true
	}
	return region{}, false
}

// decimal parses a non-negative decimal number written without leading
// zeros or sign (ok false passes through).
func decimal(s string, ok bool) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	if !ok || err != nil || n < 0 || strconv.FormatInt(n, 10) != s {
		return 0, false
	}
	return n, true
}

// region is where a writer's append starts and what it wrote first: its
// From_ line, whole (from a Progress, or an intent of the first form),
// or as its length and the start of its SHA-256 (the second form).
type region struct {
	off  int64
	from string // "" when only n and sum are known
	n    int
	sum  [sumLen]byte
}

// regionOf is the region a Progress describes.
func regionOf(p Progress) region {
	return region{off: p.Offset, from: p.FromLine, n: len(p.FromLine)}
}

// startsWith reports whether head, the first min(r.n, what is there)
// bytes at r.off, is r's From_ line or, shorter, the start of it (the
// writer died inside it). Known only by its sum, a whole From_ line must
// also be one (validFromLine, as the first form's is), so that a forged
// intent cannot cut inside a message, where "From " lines are quoted;
// one that was cut short can be told only by its shape: the start of
// "From " and no newline, which a From_ line holds only as its last byte.
func (r region) startsWith(head []byte) bool {
	switch {
	case r.from != "":
		return string(head) == r.from[:len(head)]
	case len(head) == r.n:
		sum := sha256.Sum256(head)
		return [sumLen]byte(sum[:sumLen]) == r.sum && validFromLine(string(head))
	}
	k := min(len(head), len(fromPrefix))
	return string(head[:k]) == fromPrefix[:k] && bytes.IndexByte(head, '\n') < 0
}

// repairIntent cuts off the region of a writer that died mid-append, if
// its intent is there, and removes the intent; size is the file's size
// under the locks. It returns the size after and what it found. A region
// that is no longer recognisably that writer's (cutRegion's checks) is
// left as it is, and its ErrRecoverMismatch returned; the intent goes
// either way, so that it is looked at once.
func (m *mailbox) repairIntent(size int64) (int64, intentState, error) {
	r, state, err := m.leftIntent()
	if err != nil || state == noIntent || state == noAttrs {
		return size, state, err
	}
	var mismatch error
	if state == intentLeft {
		cut, err := m.cutRegion(r, size)
		if err != nil && !errors.Is(err, ErrRecoverMismatch) {
			return size, state, err
		}
		mismatch = err
		if cut {
			size = r.off
		}
	}
	if err := m.clearIntent(); err != nil {
		return size, state, err
	}
	return size, state, mismatch
}

// kernelLocked reports whether opt takes a kernel lock (fcntl or flock).
// Only then does an intent found under the locks mean a dead writer: a
// dot-lock can also be broken by age while its writer still lives.
func kernelLocked(opt Options) bool { return opt.Locks&(FcntlLock|Flock) != 0 }
