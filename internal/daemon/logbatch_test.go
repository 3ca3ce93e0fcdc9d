package daemon

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// writes records each write given to it, and signals it.
type writes struct {
	mu   sync.Mutex
	got  []string
	sent chan struct{}
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.got = append(w.got, string(p))
	w.mu.Unlock()
	select {
	case w.sent <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *writes) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.got...)
}

func TestLogBatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delay  time.Duration
		max    int
		lines  []string
		flush  bool     // call Flush after the lines
		writes []string // what w must have got by then (before any timer)
	}{
		{name: "nothing before the delay", delay: time.Hour, max: 1 << 10, lines: []string{"a\n", "b\n"}},
		{name: "one write at Flush", delay: time.Hour, max: 1 << 10, lines: []string{"a\n", "b\n"}, flush: true, writes: []string{"a\nb\n"}},
		{name: "a full batch at once", delay: time.Hour, max: 4, lines: []string{"a\n", "b\n", "c\n"}, writes: []string{"a\nb\n"}},
		{name: "full, then Flush", delay: time.Hour, max: 4, lines: []string{"a\n", "b\n", "c\n"}, flush: true, writes: []string{"a\nb\n", "c\n"}},
		{name: "a long line alone", delay: time.Hour, max: 4, lines: []string{"abcdefgh\n"}, writes: []string{"abcdefgh\n"}},
		{name: "Flush with nothing waiting", delay: time.Hour, max: 4, flush: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &writes{sent: make(chan struct{}, 1)}
			b := newLogBatch(w, tc.delay, tc.max)
			for _, l := range tc.lines {
				if n, err := b.Write([]byte(l)); n != len(l) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", l, n, err)
				}
			}
			if tc.flush {
				b.Flush()
			}
			if got := w.all(); strings.Join(got, "|") != strings.Join(tc.writes, "|") {
				t.Fatalf("writes %q, want %q", got, tc.writes)
			}
		})
	}
}

// TestLogBatchTimer: lines that wait are written once the delay passes,
// with no Flush, and the next line arms the timer again.
func TestLogBatchTimer(t *testing.T) {
	w := &writes{sent: make(chan struct{}, 1)}
	b := newLogBatch(w, time.Millisecond, 1<<20)
	for round, line := range []string{"first\n", "second\n"} {
		b.Write([]byte(line))
		select {
		case <-w.sent:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: %q not written without a Flush", round, line)
		}
		if got := w.all(); got[len(got)-1] != line {
			t.Fatalf("round %d: writes %q", round, got)
		}
	}
}

// TestLogBatchConcurrent: lines from many goroutines all arrive, each
// whole and once, and each goroutine's in its order.
func TestLogBatchConcurrent(t *testing.T) {
	w := &writes{sent: make(chan struct{}, 1)}
	b := newLogBatch(w, 50*time.Microsecond, 256)
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				fmt.Fprintf(b, "g=%d i=%d %s\n", g, i, strings.Repeat("x", i%40))
			}
		}()
	}
	wg.Wait()
	b.Flush()
	var all bytes.Buffer
	for _, s := range w.all() {
		all.WriteString(s)
	}
	next := make([]int, writers)
	n := 0
	for _, l := range strings.Split(strings.TrimSuffix(all.String(), "\n"), "\n") {
		var g, i int
		var pad string
		if _, err := fmt.Sscanf(l, "g=%d i=%d %s", &g, &i, &pad); err != nil && i%40 != 0 {
			t.Fatalf("torn line %q: %v", l, err)
		}
		if g < 0 || g >= writers || i != next[g] || len(pad) != i%40 {
			t.Fatalf("line %q out of order or torn (want i=%d for g=%d)", l, next[g], g)
		}
		next[g]++
		n++
	}
	if n != writers*lines {
		t.Fatalf("%d lines, want %d", n, writers*lines)
	}
}
