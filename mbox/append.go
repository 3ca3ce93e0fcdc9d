package mbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/status"
)

// Progress says where an append is about to start, so that a supervisor
// can undo it with Recover if the appending process dies.
type Progress struct {
	Offset   int64  // where the From_ line will start
	Dev, Ino uint64 // the mailbox file
	FromLine string // the From_ line, with its newline
}

// Options control Append and Recover.
type Options struct {
	Owner       int            // required st_uid of the mailbox; -1 disables the check (tests only)
	Create      bool           // create a missing mailbox O_CREAT|O_EXCL 0600 (never following links)
	Locks       Locking        // locks to take; 0 takes none
	LockTimeout time.Duration  // for all locks together; 0 = 30s
	StaleLock   time.Duration  // age after which a dot-lock is broken; 0 = 5m
	Quoting     Quoting        // MboxRD (default) or MboxO
	Sender      string         // envelope sender; "" is the null sender, written MAILER-DAEMON
	Time        time.Time      // delivery time for the From_ line (zero = now)
	Progress    func(Progress) // optional; called after locking and checks, before the first byte is written
	Held        *Held          // optional; keeps the mailbox open for the next Append, checked (see Held)
	// Durable, if set, is called once the message (and the directory of
	// a mailbox just created) is on stable storage, with the locks still
	// held: a caller can answer then, while the append tidies up. Append
	// succeeds once it has been called.
	Durable func()
}

// Result says where the appended message is: it starts (with its From_
// line) at Offset and is Size bytes long, separating empty line included,
// so that Offset+Size is the new size of the file. Any newlines written
// before Offset to repair a previous writer's missing separator are in
// neither.
type Result struct {
	Offset, Size int64
}

// ErrRecoverMismatch is wrapped by Recover's error when the mailbox is not
// in the state Progress describes, so nothing was truncated.
var ErrRecoverMismatch = errors.New("mbox: mailbox does not match the interrupted append")

// faultHook, when set by a test, is called at named stages ("open" between
// the lstat and the open, "opened" after the open, "create" before creating a missing mailbox,
// "locked" after locking, "write" before each write
// to the file, "sync", "close", "dirsync"); an error it returns is treated
// as a failure of that stage.
var faultHook func(stage string) error

func hook(stage string) error {
	if faultHook != nil {
		return faultHook(stage)
	}
	return nil
}

const bufSize = 64 << 10

// buffers are what one append writes through: the message is read into in,
// and out gathers the From_ line and the quoted lines for write(2). A warm
// worker appends message after message; pooled, they cost it no allocation
// per delivery (128 KiB each time, and a garbage collection every few
// dozen deliveries, before they were).
type buffers struct {
	in  [bufSize]byte
	out *bufio.Writer
}

var bufPool = sync.Pool{New: func() any { return &buffers{out: bufio.NewWriterSize(nil, bufSize)} }}

func checkOptions(opt *Options) error {
	if opt.Locks&^allLocks != 0 {
		return status.Usage.Wrapf("mbox: unknown locking bits %v", opt.Locks)
	}
	if opt.Quoting != MboxRD && opt.Quoting != MboxO {
		return status.Usage.Wrapf("mbox: unknown quoting %v", opt.Quoting)
	}
	return nil
}

// Append appends msg (LF line endings; CRLF is left as is) as one mbox
// message to the file name (a relative path, possibly several components)
// beneath dir. On success the file has been fsync'ed (and its directory,
// if the file was created). On any failure after writing began, the file
// is truncated back to its original size while the lock is still held,
// and fsync'ed.
//
// Errors carry a *status.Status where the condition is specific (see the
// package documentation); I/O errors are wrapped so that status.From maps
// their errno.
func Append(dir *os.File, name string, msg io.Reader, opt Options) (_ Result, err error) {
	if err := checkOptions(&opt); err != nil {
		return Result{}, err
	}
	if err := checkSender(opt.Sender); err != nil {
		return Result{}, err
	}
	t := opt.Time
	if t.IsZero() {
		t = time.Now()
	}
	from := FromLine(opt.Sender, t)

	m, l, st, err := acquire(dir, name, opt)
	if err != nil {
		return Result{}, err
	}
	ok := false // the append is complete (not failed, not panicking)
	defer func() {
		// Unlocked before the file is kept: a held mailbox holds no
		// lock, so one whose locks could not be released is not kept.
		if l.unlock() && ok {
			opt.Held.keep(dir, name, m, &st)
		}
		m.close()
	}()
	a := &appending{m: m, opt: &opt, from: from, orig: st.Size, dev: st.Dev, ino: st.Ino}
	n, err := m.write(l, a, msg)
	if err != nil {
		if !a.began {
			return Result{}, err
		}
		if rerr := m.rollback(a.orig); rerr != nil {
			err = fmt.Errorf("%w (and truncating back failed: %v)", err, rerr)
		} else if a.intent {
			if cerr := m.clearIntent(); cerr != nil {
				err = fmt.Errorf("%w (and %v)", err, cerr)
			}
		}
		return Result{}, err
	}
	ok = true
	if opt.Durable != nil {
		opt.Durable() // the unlock and the closes follow it
	}
	return Result{Offset: a.off, Size: n - int64(len(a.pad))}, nil
}

// appending is one append's state, settled by start just before its first
// byte is written.
type appending struct {
	m        *mailbox
	opt      *Options
	from     string
	orig     int64 // the file's size before the append (after any repair)
	dev, ino uint64
	began    bool   // start got as far as writing: a failure truncates back to orig
	pad      string // written before off, to end a previous writer's last line and message
	off      int64  // where the From_ line goes
	intent   bool   // the intent is set
}

// start runs under the locks just before the first write(2) of an append:
// it repairs what a dead writer left (intent.go), works out the padding,
// records the intent, reports the Progress and writes the padding. The
// message has been read and quoted into the write buffer by then (the
// first 64 KiB of a larger one), so that a failure to read it leaves no
// intent and nothing to truncate.
func (a *appending) start(w *fdWriter) error {
	m, opt := a.m, a.opt
	var err error
	if a.pad, err = m.padding(a.orig); err != nil {
		return err
	}
	a.off = a.orig + int64(len(a.pad))
	if kernelLocked(*opt) {
		a.intent, err = m.setIntent(a.off, a.from)
	}
	if errors.Is(err, errIntentLeft) {
		// A writer died mid-append: its region goes first (intent.go).
		// One that is no longer recognisably its own (another program
		// appended after it) stays; the append goes ahead after it.
		if a.orig, _, err = m.repairIntent(a.orig); err != nil && !errors.Is(err, ErrRecoverMismatch) {
			return err
		}
		if a.pad, err = m.padding(a.orig); err != nil {
			return err
		}
		a.off = a.orig + int64(len(a.pad))
		a.intent, err = m.setIntent(a.off, a.from)
	}
	if err != nil {
		return err
	}
	if opt.Progress != nil {
		opt.Progress(Progress{Offset: a.off, Dev: a.dev, Ino: a.ino, FromLine: a.from})
	}
	a.began = true
	if a.pad != "" {
		_, err = w.write([]byte(a.pad))
	}
	return err
}

// acquire returns the mailbox name beneath dir open, checked, locked and
// checked again under the lock (steps 1-7 of the Security section), with
// the locked file's status: the one opt.Held holds, if it passes the
// checks under the lock (see Held), else opened afresh. On error nothing
// is open or locked.
func acquire(dir *os.File, name string, opt Options) (*mailbox, *locker, unix.Stat_t, error) {
	if m := opt.Held.take(dir, name); m != nil {
		l, st, stale, err := lockChecked(m, opt)
		if err == nil && !m.mayOpen() {
			// Its mode, ACL or label changed: a fresh open says what
			// the user may do now.
			l.unlock()
			stale, err = true, errNotExist
		}
		if err == nil {
			return m, l, st, nil
		}
		m.close()
		if !stale {
			// take found the name leading to the held file: busy on
			// the mailbox itself, and waiting again on a fresh open
			// would double the timeout.
			return nil, nil, unix.Stat_t{}, err
		}
		// Replaced, removed, linked, given away or closed to the user
		// while it waited for the locks: open the name afresh, with
		// every check.
	}
	m, err := openMailbox(dir, name, opt, opt.Create)
	if err != nil {
		return nil, nil, unix.Stat_t{}, err
	}
	l, st, _, err := lockChecked(m, opt)
	if err != nil {
		m.close()
		return nil, nil, unix.Stat_t{}, err
	}
	return m, l, st, nil
}

// lockChecked locks m and checks it again under the locks (steps 6 and
// 7), returning the locked file's status. On error nothing is locked;
// stale says that the locks were had and the check under them failed.
func lockChecked(m *mailbox, opt Options) (l *locker, st unix.Stat_t, stale bool, err error) {
	if l, err = lock(m, opt); err != nil {
		return nil, st, false, err
	}
	if err = hook("locked"); err != nil {
		l.unlock()
		return nil, st, false, err
	}
	if st, err = m.recheck(opt); err != nil {
		l.unlock()
		return nil, st, true, err
	}
	return l, st, false, nil
}

// padding returns the newlines needed so that a message appended at size
// starts after an empty line: a writer that was killed may have left a
// partial line or no separator.
func (m *mailbox) padding(size int64) (string, error) {
	if size == 0 {
		return "", nil
	}
	var tail [2]byte
	k := min(size, 2)
	n, err := unix.Pread(m.fd, tail[:k], size-k)
	if err != nil {
		return "", fmt.Errorf("mbox: reading end of %q: %w", m.name, err)
	}
	if int64(n) != k {
		return "", fmt.Errorf("mbox: reading end of %q: %w", m.name, io.ErrUnexpectedEOF)
	}
	switch {
	case k == 2 && tail[0] == '\n' && tail[1] == '\n':
		return "", nil
	case tail[k-1] == '\n':
		return "\n", nil
	}
	return "\n\n", nil
}

// write appends the From_ line and the quoted message (with a.start's
// padding before them) through a duplicate descriptor, fsyncs and closes
// it (so that a close error is seen while the original descriptor still
// holds the locks). It returns the number of bytes written.
func (m *mailbox) write(l *locker, a *appending, msg io.Reader) (int64, error) {
	wfd, err := unix.FcntlInt(uintptr(m.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("mbox: dup: %w", err)
	}
	fw := &fdWriter{fd: wfd, first: a}
	defer func() {
		if fw.fd >= 0 {
			unix.Close(fw.fd)
		}
	}()
	bufs := bufPool.Get().(*buffers)
	defer bufPool.Put(bufs)
	bw := bufs.out
	bw.Reset(fw)
	defer bw.Reset(nil) // drop fw, and any data a failure left unwritten
	bw.WriteString(a.from)
	qw := newQuoteWriter(bw, a.opt.Quoting)
	buf := bufs.in[:]
	for {
		n, rerr := msg.Read(buf)
		if n > 0 {
			if _, err := qw.Write(buf[:n]); err != nil {
				return fw.n, fmt.Errorf("mbox: writing %q: %w", m.name, err)
			}
			l.touch()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fw.n, fmt.Errorf("mbox: reading message: %w", rerr)
		}
	}
	if err := qw.Close(); err != nil {
		return fw.n, fmt.Errorf("mbox: writing %q: %w", m.name, err)
	}
	if err := bw.Flush(); err != nil {
		return fw.n, fmt.Errorf("mbox: writing %q: %w", m.name, err)
	}
	if a.intent {
		// Removed after the last byte and before the fsync, which
		// makes its removal as durable as the message: removed after
		// it, a crash could bring it back beside a message answered
		// 250, for the next append to cut. If it cannot be removed,
		// the message goes.
		if err := m.clearIntent(); err != nil {
			return fw.n, err
		}
	}
	if err := hook("sync"); err != nil {
		return fw.n, fmt.Errorf("mbox: fsync %q: %w", m.name, err)
	}
	if err := unix.Fsync(fw.fd); err != nil {
		return fw.n, fmt.Errorf("mbox: fsync %q: %w", m.name, err)
	}
	err = hook("close")
	if cerr := unix.Close(fw.fd); err == nil {
		err = cerr
	}
	fw.fd = -1
	if err != nil {
		return fw.n, fmt.Errorf("mbox: close %q: %w", m.name, err)
	}
	if m.created {
		if err := hook("dirsync"); err != nil {
			return fw.n, fmt.Errorf("mbox: fsync directory of %q: %w", m.name, err)
		}
		if err := unix.Fsync(m.dirfd); err != nil {
			return fw.n, fmt.Errorf("mbox: fsync directory of %q: %w", m.name, err)
		}
	}
	return fw.n, nil
}

// rollback truncates the file back to size and fsyncs it, under the lock.
func (m *mailbox) rollback(size int64) error {
	for {
		err := unix.Ftruncate(m.fd, size)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("ftruncate: %w", err)
		}
		break
	}
	if err := unix.Fsync(m.fd); err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	return nil
}

// fdWriter writes to a raw descriptor, handling short writes and EINTR.
// first, if set, is started once, before the first write.
type fdWriter struct {
	fd    int
	n     int64
	first *appending
}

func (w *fdWriter) Write(p []byte) (int, error) {
	if a := w.first; a != nil {
		w.first = nil
		if err := a.start(w); err != nil {
			return 0, err
		}
	}
	return w.write(p)
}

func (w *fdWriter) write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := hook("write"); err != nil {
		return 0, err
	}
	done := 0
	for done < len(p) {
		n, err := unix.Write(w.fd, p[done:])
		if n > 0 {
			done += n
			w.n += int64(n)
		}
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return done, err
		case n == 0:
			return done, io.ErrShortWrite
		}
	}
	return done, nil
}

// Recover undoes a partial append left by a process that died mid-write,
// described by the Progress it reported. It opens the mailbox with the
// same checks (never creating it) and locks it. Where a kernel lock is
// taken and the file system keeps user extended attributes, the append
// intent left under the locks decides (intent.go): the region it names
// is cut off (with cutRegion's checks; a mismatch is returned as below),
// and with no intent left there is nothing to undo (false, nil).
// Elsewhere it truncates the file back to p.Offset only if it is
// the same file (dev, ino), is longer than p.Offset, the bytes at
// p.Offset start with p.FromLine (or are a prefix of it, if the writer
// died inside it), and no unquoted From_ line follows within the region
// (which would mean that someone else appended afterwards). It reports
// whether it truncated. If the file is not longer than p.Offset there is
// nothing to undo: false, nil. If the file does not match, it changes
// nothing and returns false and an error wrapping ErrRecoverMismatch.
func Recover(dir *os.File, name string, p Progress, opt Options) (bool, error) {
	if err := checkOptions(&opt); err != nil {
		return false, err
	}
	if p.Offset < 0 || !validFromLine(p.FromLine) {
		return false, status.Usage.Wrapf("mbox: invalid progress record")
	}
	m, err := openMailbox(dir, name, opt, false)
	if err != nil {
		return false, err
	}
	defer m.close()
	l, err := lock(m, opt)
	if err != nil {
		return false, err
	}
	defer l.unlock()
	st, err := m.recheck(opt)
	if err != nil {
		return false, err
	}
	if st.Dev != p.Dev || st.Ino != p.Ino {
		return false, fmt.Errorf("%w: %q is not the same file", ErrRecoverMismatch, name)
	}
	// Where intents are kept (intent.go), the intent left under the
	// locks is the one to act on, not p: the dead writer's, or a later
	// dead writer's, region is cut off here. None means that the writer
	// removed it (its append was complete, though never answered) or
	// that the next append already cut its region off; either way there
	// is nothing to undo, and what is at p.Offset now may be another
	// delivery's message, answered 250, which p alone must not cut.
	if !kernelLocked(opt) {
		return m.cutRegion(regionOf(p), st.Size) // no intents without kernel locks
	}
	size, state, err := m.repairIntent(st.Size)
	switch {
	case state == noIntent && err == nil:
		return false, nil
	case state == intentLeft || state == intentGarbled:
		return size < st.Size, err
	case err != nil:
		return false, err
	}
	return m.cutRegion(regionOf(p), size) // no user attributes: p is all there is
}

// cutRegion truncates the file (of size size, under the locks) back to
// r.off if the region from there is the one r describes: the bytes at
// r.off start with r's From_ line (or are the start of it, if the writer
// died inside it; region.startsWith) and no other From_ line follows.
// Otherwise it changes nothing and returns an error wrapping
// ErrRecoverMismatch; a file not longer than r.off has nothing to cut.
func (m *mailbox) cutRegion(r region, size int64) (bool, error) {
	if size <= r.off {
		return false, nil
	}
	if r.off > 0 {
		// A message starts at the start of a line.
		var b [1]byte
		if n, err := unix.Pread(m.fd, b[:], r.off-1); err != nil || n != 1 || b[0] != '\n' {
			return false, fmt.Errorf("%w: offset %d of %q is not at the start of a line", ErrRecoverMismatch, r.off, m.name)
		}
	}
	// The writer may have died inside its From_ line: then the region is
	// the start of it, which is all ours.
	head := make([]byte, min(int64(r.n), size-r.off))
	n, err := unix.Pread(m.fd, head, r.off)
	if err != nil {
		return false, fmt.Errorf("mbox: reading %q: %w", m.name, err)
	}
	if n != len(head) || !r.startsWith(head) {
		return false, fmt.Errorf("%w: no matching From_ line at offset %d of %q", ErrRecoverMismatch, r.off, m.name)
	}
	if len(head) == r.n {
		// Search from the From_ line's own newline, so that a From_
		// line right after it is found too.
		found, err := m.findFromLine(r.off+int64(r.n)-1, size)
		if err != nil {
			return false, err
		}
		if found >= 0 {
			return false, fmt.Errorf("%w: another message follows at offset %d of %q", ErrRecoverMismatch, found, m.name)
		}
	}
	if err := m.rollback(r.off); err != nil {
		return false, fmt.Errorf("mbox: truncating %q: %w", m.name, err)
	}
	return true, nil
}

// findFromLine returns the offset of the first "From " that follows a '\n'
// in [start, end), or -1.
func (m *mailbox) findFromLine(start, end int64) (int64, error) {
	const pat = "\n" + fromPrefix
	buf := make([]byte, bufSize+len(pat))
	carry := 0
	for off := start; off < end; {
		n, err := unix.Pread(m.fd, buf[carry:carry+int(min(bufSize, end-off))], off)
		if err != nil {
			return -1, fmt.Errorf("mbox: reading %q: %w", m.name, err)
		}
		if n == 0 {
			break
		}
		data := buf[:carry+n]
		if i := bytes.Index(data, []byte(pat)); i >= 0 {
			return off - int64(carry) + int64(i) + 1, nil
		}
		off += int64(n)
		carry = min(len(pat)-1, len(data))
		copy(buf, data[len(data)-carry:])
	}
	return -1, nil
}
