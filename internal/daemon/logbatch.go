package daemon

import (
	"io"
	"os"
	"sync"
	"time"
)

// logDelay is how long the listener's log lines may wait before they are
// written, when its log is a file; logBatchMax how many bytes may wait.
const (
	logDelay    = 100 * time.Millisecond
	logBatchMax = 64 << 10
)

// logBatch gathers log lines and writes them to w together, at most
// delay after the first of them (or at once past max bytes), in the order
// they came, each line whole.
//
// Why: the listener writes a line per recipient. Written one by one, each
// line cost a write(2) (3 to 24 us traced, on the disk: an append
// allocates and dirties the log's page and inode) just after the reply,
// while the client turns round to send its next message. Batched, it is
// one write for up to 100 ms of lines (DESIGN.md gives the figures). The
// cost is that a listener that dies without warning (killed, or a crash)
// loses the lines of its last delay; every normal exit flushes them
// (ListenerMain, and brokenChannelExit).
type logBatch struct {
	w     io.Writer
	delay time.Duration
	max   int

	mu    sync.Mutex // guards buf, spare and armed
	buf   []byte
	spare []byte
	armed bool

	wmu sync.Mutex // one flush at a time, so batches go out in order
}

func newLogBatch(w io.Writer, delay time.Duration, max int) *logBatch {
	return &logBatch{w: w, delay: delay, max: max}
}

// Write takes one line (slog's handlers write a record with one call).
// It never fails: the line is written, or lost with its batch, later.
func (b *logBatch) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf = append(b.buf, p...)
	full := len(b.buf) >= b.max
	if !full && !b.armed {
		b.armed = true
		time.AfterFunc(b.delay, b.Flush)
	}
	b.mu.Unlock()
	if full {
		b.Flush()
	}
	return len(p), nil
}

// Flush writes what is waiting, with one write.
func (b *logBatch) Flush() {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.mu.Lock()
	b.armed = false
	if len(b.buf) == 0 {
		b.mu.Unlock()
		return
	}
	out := b.buf
	b.buf, b.spare = b.spare[:0], nil
	b.mu.Unlock()
	b.w.Write(out) // as slog's own write: an error has nowhere to go
	b.mu.Lock()
	b.spare = out[:0]
	b.mu.Unlock()
}

// BatchedStderr returns the listener's log destination: standard error
// itself, or a logBatch on it when it is a regular file (the parent's log
// file, or a service manager's); a pipe or a terminal is written line by
// line, as before. flush writes what waits (a no-op when unbatched).
func BatchedStderr() (w io.Writer, flush func()) {
	st, err := os.Stderr.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return os.Stderr, func() {}
	}
	b := newLogBatch(os.Stderr, logDelay, logBatchMax)
	return b, b.Flush
}
