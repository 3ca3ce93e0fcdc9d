package lmtpbench

import "sync/atomic"

// Feed hands out the messages of a run to one connection, each prepared
// (generated, checksummed, put in its wire form) on a goroutine of its
// own while the message before it is on its way. Messages are numbered
// 0 to total-1 and claimed from a counter that every connection's Feed
// shares, so each is handed out exactly once.
//
// Generating a 100 KiB message takes a few hundred microseconds; in line
// with the deliveries, that time counted against every server's rate
// alike, and held the client's single connection off the server while
// the server had nothing else to do.
type Feed[T any] struct {
	c    chan fed[T]
	stop chan struct{}
}

type fed[T any] struct {
	k int
	v T
}

// NewFeed starts preparing the messages claimed from next, below total,
// one ahead of the caller's Next.
func NewFeed[T any](next *atomic.Int64, total int, prepare func(k int) T) *Feed[T] {
	f := &Feed[T]{c: make(chan fed[T]), stop: make(chan struct{})}
	go func() {
		defer close(f.c)
		for {
			select {
			case <-f.stop:
				return
			default:
			}
			k := int(next.Add(1) - 1)
			if k >= total {
				return
			}
			select {
			case f.c <- fed[T]{k, prepare(k)}:
			case <-f.stop:
				return
			}
		}
	}()
	return f
}

// Next returns the next message and its number; ok is false when none
// is left.
func (f *Feed[T]) Next() (k int, v T, ok bool) {
	m, ok := <-f.c
	return m.k, m.v, ok
}

// Stop ends the preparing goroutine of a caller that takes no more
// messages. At most one more message may still be handed out; one it had
// claimed may never be, so only a run that is abandoned stops its feeds
// early.
func (f *Feed[T]) Stop() { close(f.stop) }
