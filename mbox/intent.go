package mbox

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The append intent: an extended attribute on the mailbox, set under the
// locks before the first byte of an append and removed after its last
// byte and before its fsync, which makes the removal as durable as the
// message (removed after the fsync, a crash could bring it back beside a
// message answered 250). A writer that dies in between (killed, or by
// the OOM killer) leaves it behind, and its kernel locks (fcntl, flock)
// go with it. Whoever takes those locks next, an lda append or Recover,
// therefore finds the intent of a writer that can no longer be writing,
// and cuts that writer's region off (cutRegion) before it does anything
// else. Without it, another delivery to the same mailbox, waiting on the
// lock, appended after the partial message, and Recover, run later by
// whoever reaped the dead writer, then had to leave the partial message
// where it was (ErrRecoverMismatch: another message follows).
//
// Intents are used only when a kernel lock is taken (kernelLocked): a
// dot-lock can be broken by age while its writer still lives, and an
// intent found under it would not mean a dead writer. A program that
// does not know the intent and appends after a partial message makes the
// region no longer recognisable; it is left as it is, as before.
//
// The value is "1 OFFSET FROMLINE": the offset at which the region
// starts and the From_ line written there. A file system without user
// extended attributes (ENOTSUP), an append-only file (EPERM) or a
// security module's refusal (EACCES) gets no intent, and the append and
// Recover work as they did before it.
const intentAttr = "user.lda.append"

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
	v := make([]byte, 0, 24+len(from)) // one allocation: this is on every append
	v = append(strconv.AppendInt(append(v, "1 "...), off, 10), ' ')
	v = append(v, from...)
	err = unix.Fsetxattr(m.fd, intentAttr, v, unix.XATTR_CREATE)
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
func (m *mailbox) leftIntent() (Progress, intentState, error) {
	if !intentAttrs {
		return Progress{}, noAttrs, nil
	}
	buf := make([]byte, 64+maxSender)
	n, err := unix.Fgetxattr(m.fd, intentAttr, buf)
	switch {
	case errors.Is(err, unix.ENODATA):
		return Progress{}, noIntent, nil
	case errors.Is(err, unix.ENOTSUP):
		return Progress{}, noAttrs, nil
	case errors.Is(err, unix.ERANGE):
		return Progress{}, intentGarbled, nil // longer than any we write
	case err != nil:
		return Progress{}, noIntent, fmt.Errorf("mbox: reading the append record of %q: %w", m.name, err)
	}
	v, ok := strings.CutPrefix(string(buf[:n]), "1 ")
	if !ok {
		return Progress{}, intentGarbled, nil
	}
	offs, from, ok := strings.Cut(v, " ")
	off, err := strconv.ParseInt(offs, 10, 64)
	if !ok || err != nil || off < 0 || strconv.FormatInt(off, 10) != offs || !validFromLine(from) {
		return Progress{}, intentGarbled, nil
	}
	return Progress{Offset: off, FromLine: from}, intentLeft, nil
}

// repairIntent cuts off the region of a writer that died mid-append, if
// its intent is there, and removes the intent; size is the file's size
// under the locks. It returns the size after and what it found. A region
// that is no longer recognisably that writer's (cutRegion's checks) is
// left as it is, and its ErrRecoverMismatch returned; the intent goes
// either way, so that it is looked at once.
func (m *mailbox) repairIntent(size int64) (int64, intentState, error) {
	p, state, err := m.leftIntent()
	if err != nil || state == noIntent || state == noAttrs {
		return size, state, err
	}
	var mismatch error
	if state == intentLeft {
		cut, err := m.cutRegion(p, size)
		if err != nil && !errors.Is(err, ErrRecoverMismatch) {
			return size, state, err
		}
		mismatch = err
		if cut {
			size = p.Offset
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
