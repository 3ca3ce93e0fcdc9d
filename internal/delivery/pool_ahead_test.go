package delivery

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lda/internal/seqpacket"
	"lda/internal/status"
)

// fakes makes stand-in workers for the pool's own logic: a direct
// worker's shape (a remote whose end is counted), with a real socket to
// close, and no process. Needs no root.
type fakes struct {
	t     *testing.T
	next  int
	mu    sync.Mutex
	ended map[int]bool
}

func newFakes(t *testing.T) *fakes { return &fakes{t: t, ended: map[int]bool{}} }

func (f *fakes) worker(user string, uses int) *warm {
	f.t.Helper()
	w, err := f.make(user, uses)
	if err != nil {
		f.t.Fatal(err)
	}
	return w
}

// make is worker for any goroutine.
func (f *fakes) make(user string, uses int) (*warm, error) {
	a, b, err := seqpacket.Pair()
	if err != nil {
		return nil, err
	}
	f.t.Cleanup(func() { b.Close() })
	conn, err := seqpacket.New(a)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.next++
	pid := f.next
	f.mu.Unlock()
	return &warm{key: warmKey{uid: 1000, gid: 1000, user: user, home: "/home/" + user, policy: "embedded"},
		conn: conn, uses: uses, stat: -1, last: time.Now(),
		remote: &remote{pid: pid, end: func() { f.mu.Lock(); f.ended[pid] = true; f.mu.Unlock() }}}, nil
}

func (f *fakes) isEnded(w *warm) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ended[w.pid()]
}

// starter returns what makes a starter (as onWarm is given it) of
// workers for user, counting the starts; with gate set, each start waits
// for a value on it.
func (f *fakes) starter(user string, calls *atomic.Int32, gate chan struct{}) (func() starter, chan *warm) {
	made := make(chan *warm, 4)
	return func() starter { return f.start(user, calls, gate, made) }, made
}

func (f *fakes) start(user string, calls *atomic.Int32, gate chan struct{}, made chan *warm) starter {
	return func() (*warm, *status.Status) {
		calls.Add(1)
		if gate != nil {
			<-gate
		}
		w, err := f.make(user, 0)
		if err != nil {
			f.t.Error(err)
			return nil, status.Unknown.Wrap(err)
		}
		made <- w
		return w, nil
	}
}

// newAheadPool returns stand-ins and a pool that is closed at the end of
// the test (Close may be called before).
func newAheadPool(t *testing.T, maxIdle int, idle time.Duration, maxDeliveries int) (*fakes, *Pool) {
	p := NewPool(PoolConfig{MaxIdle: maxIdle, IdleTime: idle, MaxDeliveries: maxDeliveries})
	t.Cleanup(p.Close)
	return newFakes(t), p
}

// started returns the next worker a fake starter made, failing the test
// if none is made within 10 seconds.
func started(t *testing.T, made chan *warm) *warm {
	t.Helper()
	select {
	case w := <-made:
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("no spare was started")
		return nil
	}
}

func spareOf(p *Pool, user string) *warm {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, w := range p.spare {
		if k.user == user {
			return w
		}
	}
	return nil
}

func isIdle(p *Pool, w *warm) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, x := range p.idle[w.key] {
		if x == w {
			return true
		}
	}
	return false
}

// TestPoolAhead: the pool's side of starting a replacement ahead, with
// stand-in workers.
func TestPoolAhead(t *testing.T) {
	t.Run("ahead is a twentieth, none below 20", func(t *testing.T) {
		for _, c := range []struct{ max, want int }{{1, 0}, {19, 0}, {20, 1}, {39, 1}, {40, 2}, {1000, 50}} {
			if got := NewPool(PoolConfig{MaxDeliveries: c.max}).ahead(); got != c.want {
				t.Errorf("MaxDeliveries %d: ahead %d, want %d", c.max, got, c.want)
			}
		}
	})
	t.Run("the spare waits behind the old worker", func(t *testing.T) {
		f, p := newAheadPool(t, 4, time.Minute, 40)
		var calls atomic.Int32
		renew, made := f.starter("a", &calls, nil)
		old := f.worker("a", 37)
		p.release(old, renew) // its 38th job: two left
		sp := started(t, made)
		waitUntil(t, "the spare", func() bool { return spareOf(p, "a") == sp })
		for i := 39; i <= 40; i++ {
			if w := p.take(old.key); w != old {
				t.Fatalf("job %d: took %v, want the old worker", i, w)
			}
			p.release(old, renew)
		}
		waitUntil(t, "the old worker's end", func() bool { return f.isEnded(old) })
		if w := p.take(old.key); w != sp {
			t.Fatalf("after the old worker's last job took %v, want the spare", w)
		}
		if p.Idle() != 0 || spareOf(p, "a") != nil || calls.Load() != 1 {
			t.Fatalf("idle %d, spare %v, %d starts; want 0, none, 1", p.Idle(), spareOf(p, "a"), calls.Load())
		}
	})
	t.Run("no room: nothing started", func(t *testing.T) {
		f, p := newAheadPool(t, 1, time.Minute, 40)
		var calls atomic.Int32
		renew, _ := f.starter("a", &calls, nil)
		p.release(f.worker("a", 37), renew)
		time.Sleep(50 * time.Millisecond) // a start would have been called by now
		if calls.Load() != 0 {
			t.Fatalf("%d starts with no room for a spare", calls.Load())
		}
	})
	t.Run("a spare never pushes another worker out", func(t *testing.T) {
		f, p := newAheadPool(t, 3, time.Minute, 40)
		c := f.worker("c", 1)
		p.release(c, nil) // the oldest idle worker
		time.Sleep(time.Millisecond)
		var calls atomic.Int32
		renew, made := f.starter("a", &calls, nil)
		a := f.worker("a", 37)
		p.release(a, renew)
		sp := started(t, made)
		waitUntil(t, "the spare", func() bool { return spareOf(p, "a") == sp })
		if p.take(a.key) != a { // a's old worker out on a job
			t.Fatal("did not take a's old worker")
		}
		b := f.worker("b", 1)
		p.release(b, nil) // c, b and the spare: full
		p.release(a, renew)
		waitUntil(t, "the spare's end", func() bool { return f.isEnded(sp) })
		if !isIdle(p, c) || !isIdle(p, b) || !isIdle(p, a) || f.isEnded(c) || spareOf(p, "a") != nil {
			t.Fatalf("idle c %v, b %v, a %v, spare %v: the spare, not another worker, should have gone",
				isIdle(p, c), isIdle(p, b), isIdle(p, a), spareOf(p, "a"))
		}
	})
	t.Run("one spare per user", func(t *testing.T) {
		f, p := newAheadPool(t, 8, time.Minute, 40)
		var calls atomic.Int32
		renew, made := f.starter("a", &calls, nil)
		p.release(f.worker("a", 37), renew)
		p.release(f.worker("a", 37), renew)
		s1, s2 := started(t, made), started(t, made)
		waitUntil(t, "one spare kept and one ended", func() bool {
			sp := spareOf(p, "a")
			return sp != nil && (sp == s1 && f.isEnded(s2) || sp == s2 && f.isEnded(s1))
		})
		if p.Idle() != 3 {
			t.Fatalf("%d idle, want the two old workers and one spare", p.Idle())
		}
	})
	t.Run("room gone during the start", func(t *testing.T) {
		f, p := newAheadPool(t, 2, time.Minute, 40)
		var calls atomic.Int32
		gate := make(chan struct{})
		renew, made := f.starter("a", &calls, gate)
		p.release(f.worker("a", 37), renew) // room for one more
		waitUntil(t, "the start", func() bool { return calls.Load() == 1 })
		p.release(f.worker("b", 1), nil) // now full
		close(gate)
		sp := started(t, made)
		waitUntil(t, "the spare's end", func() bool { return f.isEnded(sp) })
		if p.Idle() != 2 || spareOf(p, "a") != nil {
			t.Fatalf("idle %d, spare %v; want 2 and none", p.Idle(), spareOf(p, "a"))
		}
	})
	t.Run("the pool closed during the start", func(t *testing.T) {
		f, p := newAheadPool(t, 4, time.Minute, 40)
		var calls atomic.Int32
		gate := make(chan struct{})
		renew, made := f.starter("a", &calls, gate)
		old := f.worker("a", 37)
		p.release(old, renew)
		waitUntil(t, "the start", func() bool { return calls.Load() == 1 })
		p.Close()
		close(gate)
		sp := started(t, made)
		waitUntil(t, "the late spare's end", func() bool { return f.isEnded(sp) })
		if p.Idle() != 0 || spareOf(p, "a") != nil || !f.isEnded(old) {
			t.Fatalf("after Close: idle %d, spare %v, old ended %v", p.Idle(), spareOf(p, "a"), f.isEnded(old))
		}
	})
	t.Run("the reaper keeps a spare while its user's mail comes", func(t *testing.T) {
		idle := 300 * time.Millisecond
		f, p := newAheadPool(t, 4, idle, 1000)
		var calls atomic.Int32
		renew, made := f.starter("a", &calls, nil)
		old := f.worker("a", 949) // put: 950, fifty left
		p.release(old, renew)
		sp := started(t, made)
		waitUntil(t, "the spare", func() bool { return spareOf(p, "a") == sp })
		// Two idle times of jobs for the old worker, one every 100 ms:
		// each keeps the spare too.
		for end := time.Now().Add(2 * idle); time.Now().Before(end); {
			time.Sleep(100 * time.Millisecond)
			if w := p.take(old.key); w != old {
				t.Fatalf("took %v, want the old worker", w)
			}
			p.release(old, nil)
		}
		if spareOf(p, "a") != sp || f.isEnded(sp) {
			t.Fatal("the spare was reaped while its user's old worker served jobs")
		}
		// Then the user's mail stops: both go.
		waitUntil(t, "the spare reaped", func() bool { return f.isEnded(sp) && f.isEnded(old) })
		if p.Idle() != 0 {
			t.Fatalf("%d idle after the reaper, want 0", p.Idle())
		}
	})
}
