package delivery

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"lda/internal/job"
	"lda/internal/testutil"
	"lda/internal/userdb"
)

// warmFixture is a real lda binary, two real users and an Agent with a pool.
type warmFixture struct {
	t      *testing.T
	dir    string
	agent  *Agent
	u1, u2 *userdb.User
	msg    *os.File
	size   int64
}

const warmPolicy = `version: 1
min_uid: 1000
default: {maildir: ~/Maildir}
allow:
  - {maildir: ~/Maildir}
  - {mbox: ~/mbox}
mbox: {locking: [dotlock], lock_timeout: 20s, stale_lock: 5m, create: true}
maildir: {create: true}
`

func newWarmFixture(t *testing.T, cfg PoolConfig) *warmFixture {
	t.Helper()
	testutil.RequireRoot(t)
	dir := testutil.RootDir(t)
	bin := testutil.Build(t, filepath.Join(dir, "bin"), "./cmd/lda")
	home := filepath.Join(dir, "home")
	testutil.Must(t, os.Mkdir(home, 0o755))
	mk := func(n int) *userdb.User {
		u := testutil.CreateUser(t, fmt.Sprintf("ldapool%d%d", n, os.Getpid()%100000), home)
		return &userdb.User{Name: u.Name, UID: u.UID, GID: u.GID, Home: u.Home}
	}
	pol := filepath.Join(dir, "policy.yaml")
	testutil.WriteFile(t, pol, []byte(warmPolicy), 0o644, 0, 0)
	msg, err := os.CreateTemp(dir, "msg")
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: warm\n\nbody\n"
	msg.WriteString(body)
	ro, err := os.Open(msg.Name())
	if err != nil {
		t.Fatal(err)
	}
	msg.Close()
	pool := NewPool(cfg)
	t.Cleanup(pool.Close)
	f := &warmFixture{t: t, dir: dir, u1: mk(1), u2: mk(2), msg: ro, size: int64(len(body)),
		agent: &Agent{Exe: bin, PolicyPath: pol, MinUID: 1000, Timeout: 10 * time.Second, Log: discard(), Pool: pool}}
	return f
}

func (f *warmFixture) deliver(u *userdb.User, kind string) *Outcome {
	f.t.Helper()
	path := ""
	switch kind {
	case job.KindMbox:
		path = filepath.Join(u.Home, "mbox")
	case job.KindMaildir:
		path = filepath.Join(u.Home, "Maildir")
	}
	out := f.agent.Deliver(context.Background(), Request{User: u, Kind: kind, Path: path, Sender: "s@example.org", Recipient: u.Name + "@example.org", Message: f.msg, Size: f.size})
	return &out
}

// idle returns the pids of the idle workers, by user.
func idlePids(p *Pool) map[string][]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string][]int{}
	for k, ws := range p.idle {
		for _, w := range ws {
			m[k.user] = append(m[k.user], w.proc.Pid)
		}
	}
	return m
}

func countNew(t *testing.T, u *userdb.User) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(u.Home, "Maildir", "new"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(ents)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is not a live worker.
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// TestWarmReuse: one user's deliveries go to the same worker until
// max_deliveries, then a fresh one takes over; an edited policy file also
// gets a fresh worker.
func TestWarmReuse(t *testing.T) {
	f := newWarmFixture(t, PoolConfig{MaxIdle: 4, IdleTime: time.Minute, MaxDeliveries: 3})
	var pids []int
	for i := 0; i < 4; i++ {
		if out := f.deliver(f.u1, job.KindDefault); !out.Status.OK() {
			t.Fatalf("delivery %d: %v (%s)", i, out.Status, out.Result.Detail)
		}
		p := idlePids(f.agent.Pool)[f.u1.Name]
		if i == 2 {
			if len(p) != 0 {
				t.Fatalf("worker kept after max_deliveries: %v", p)
			}
			pids = append(pids, 0)
			continue
		}
		if len(p) != 1 {
			t.Fatalf("delivery %d: idle workers %v, want one", i, p)
		}
		pids = append(pids, p[0])
	}
	if pids[0] != pids[1] {
		t.Errorf("second delivery used a new worker (%d, then %d)", pids[0], pids[1])
	}
	if pids[3] == pids[0] {
		t.Errorf("worker %d still used after max_deliveries", pids[0])
	}
	waitUntil(t, "the retired worker to exit", func() bool { return !alive(pids[0]) })
	if n := countNew(t, f.u1); n != 4 {
		t.Fatalf("%d messages in new/, want 4", n)
	}
	// Editing the policy file replaces the worker for the next delivery.
	future := time.Now().Add(time.Hour)
	testutil.Must(t, os.Chtimes(f.agent.PolicyPath, future, future))
	if out := f.deliver(f.u1, job.KindDefault); !out.Status.OK() {
		t.Fatal(out.Status)
	}
	f.agent.Pool.mu.Lock()
	defer f.agent.Pool.mu.Unlock()
	served := 0
	for k, ws := range f.agent.Pool.idle {
		for _, w := range ws {
			if k.stamp.Mtime == future.UnixNano() {
				served++
				if w.proc.Pid == pids[3] {
					t.Errorf("worker %d, given the old policy, served a delivery after the policy changed", w.proc.Pid)
				}
			}
		}
	}
	if served != 1 {
		t.Errorf("%d idle workers have the new policy, want 1", served)
	}
}

// TestWarmNeverAnotherUser tries to hand a warm worker another user's
// job: the pool refuses before sending, and a worker given one anyway
// (the pool's check bypassed) refuses it and exits, for a user of another
// uid and for a virtual user sharing its uid.
func TestWarmNeverAnotherUser(t *testing.T) {
	f := newWarmFixture(t, PoolConfig{MaxIdle: 4, IdleTime: time.Minute, MaxDeliveries: 100})
	v1 := &userdb.User{Name: "v1", UID: f.u1.UID, GID: f.u1.GID, Home: f.u1.Home}
	v2 := &userdb.User{Name: "v2", UID: f.u1.UID, GID: f.u1.GID, Home: filepath.Join(f.u1.Home, "v2")}
	for _, tc := range []struct {
		name         string
		owner, other *userdb.User
		want         string
	}{
		{"other uid", f.u1, f.u2, "given to uid"},
		{"virtual user sharing the uid", v1, v2, "given to the worker of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out := f.deliver(tc.owner, job.KindDefault); !out.Status.OK() {
				t.Fatal(out.Status)
			}
			other := f.agent.job(Request{User: tc.other, Kind: job.KindMaildir, Path: filepath.Join(tc.other.Home, "Maildir"), Sender: "s@example.org", Size: f.size})
			rec, err := other.Encode()
			if err != nil {
				t.Fatal(err)
			}
			k := warmKey{uid: other.UID, gid: other.GID, user: other.User, home: other.Home, policy: other.Policy}
			var w *warm
			f.agent.Pool.mu.Lock()
			for key, ws := range f.agent.Pool.idle {
				if key.user == tc.owner.Name {
					w = ws[0]
					k.stamp = key.stamp
				}
			}
			f.agent.Pool.mu.Unlock()
			if w == nil {
				t.Fatal("no idle worker for the owner")
			}
			// The pool's check.
			if _, sent, err := w.exchange(k, rec, f.msg, time.Now().Add(5*time.Second)); sent || err != errWrongWorker {
				t.Fatalf("exchange with another user's key: sent=%v err=%v", sent, err)
			}
			// The worker's own check, the pool bypassed.
			res := sendBypassingPool(t, w, rec, f.msg)
			if res.Status.Code != 451 || !strings.Contains(res.Detail, tc.want) {
				t.Fatalf("worker answered %v %q, want 451 and %q", res.Status, res.Detail, tc.want)
			}
			waitUntil(t, "the refusing worker to exit", func() bool { return !alive(w.proc.Pid) })
			if _, err := os.Stat(filepath.Join(tc.other.Home, "Maildir")); tc.other != v2 && err == nil {
				t.Fatal("the other user's Maildir was created")
			}
		})
	}
	if _, err := os.Stat(filepath.Join(f.u1.Home, "v2")); err == nil {
		t.Fatal("the virtual user's home was written to")
	}
	if n := countNew(t, f.u2); n != 0 {
		t.Fatalf("u2 got %d messages", n)
	}
}

// TestWarmDeath: a worker killed while idle is replaced without failing
// the next delivery; one killed or stopped while it holds a job fails that
// job with 4xx, and the next delivery gets a fresh worker.
func TestWarmDeath(t *testing.T) {
	f := newWarmFixture(t, PoolConfig{MaxIdle: 4, IdleTime: time.Minute, MaxDeliveries: 100})
	pid := func(t *testing.T) int {
		t.Helper()
		p := idlePids(f.agent.Pool)[f.u1.Name]
		if len(p) != 1 {
			t.Fatalf("idle workers %v, want one", p)
		}
		return p[0]
	}
	if out := f.deliver(f.u1, job.KindDefault); !out.Status.OK() {
		t.Fatal(out.Status)
	}
	t.Run("killed while idle", func(t *testing.T) {
		old := pid(t)
		syscall.Kill(old, syscall.SIGKILL)
		waitUntil(t, "the worker to die", func() bool { return !alive(old) })
		if out := f.deliver(f.u1, job.KindDefault); !out.Status.OK() {
			t.Fatalf("delivery after an idle worker died: %v", out.Status)
		}
		if pid(t) == old {
			t.Fatal("dead worker still pooled")
		}
	})
	t.Run("killed while holding a job", func(t *testing.T) {
		old := pid(t)
		// A held dotlock keeps the mbox delivery waiting inside the worker.
		lock := filepath.Join(f.u1.Home, "mbox.lock")
		testutil.WriteFile(t, lock, nil, 0o600, f.u1.UID, f.u1.GID)
		done := make(chan *Outcome, 1)
		go func() { done <- f.deliver(f.u1, job.KindMbox) }()
		time.Sleep(500 * time.Millisecond)
		syscall.Kill(old, syscall.SIGKILL)
		out := <-done
		if out.Status.Code != 451 || out.Status.Enhanced != "4.3.0" {
			t.Fatalf("killed mid-delivery: %v, want 451 4.3.0", out.Status)
		}
		os.Remove(lock)
		if out := f.deliver(f.u1, job.KindMbox); !out.Status.OK() {
			t.Fatalf("delivery after the kill: %v", out.Status)
		}
		if p := pid(t); p == old {
			t.Fatal("the killed worker is still pooled")
		}
	})
	t.Run("stopped while idle", func(t *testing.T) {
		old := pid(t)
		syscall.Kill(old, syscall.SIGSTOP)
		waitUntil(t, "the worker to stop", func() bool { return stopped(old) })
		if out := f.deliver(f.u1, job.KindDefault); !out.Status.OK() {
			t.Fatalf("delivery after the idle worker was stopped: %v", out.Status)
		}
		waitUntil(t, "the stopped worker to be killed", func() bool { return !alive(old) })
	})
	t.Run("stopped past the timeout", func(t *testing.T) {
		old := pid(t)
		f.agent.Timeout = time.Second
		defer func() { f.agent.Timeout = 10 * time.Second }()
		// Stopped while it holds a job (waiting for a held dotlock).
		lock := filepath.Join(f.u1.Home, "mbox.lock")
		testutil.WriteFile(t, lock, nil, 0o600, f.u1.UID, f.u1.GID)
		done := make(chan *Outcome, 1)
		go func() { done <- f.deliver(f.u1, job.KindMbox) }()
		time.Sleep(300 * time.Millisecond)
		syscall.Kill(old, syscall.SIGSTOP)
		out := <-done
		os.Remove(lock)
		if !out.Status.Temporary() {
			t.Fatalf("stopped worker: %v, want 4xx", out.Status)
		}
		waitUntil(t, "the stopped worker to be killed", func() bool { return !alive(old) })
		if out := f.deliver(f.u1, job.KindDefault); !out.Status.OK() {
			t.Fatalf("delivery after the timeout: %v", out.Status)
		}
	})
}

// TestWarmBounds: max_idle evicts the least recently used worker, and
// idle_time stops the rest.
func TestWarmBounds(t *testing.T) {
	f := newWarmFixture(t, PoolConfig{MaxIdle: 1, IdleTime: 400 * time.Millisecond, MaxDeliveries: 100})
	if out := f.deliver(f.u1, job.KindDefault); !out.Status.OK() {
		t.Fatal(out.Status)
	}
	first := idlePids(f.agent.Pool)[f.u1.Name]
	if out := f.deliver(f.u2, job.KindDefault); !out.Status.OK() {
		t.Fatal(out.Status)
	}
	idle := idlePids(f.agent.Pool)
	if len(idle[f.u1.Name]) != 0 || len(idle[f.u2.Name]) != 1 || f.agent.Pool.Idle() != 1 {
		t.Fatalf("after two users with max_idle 1: %v", idle)
	}
	waitUntil(t, "the evicted worker to exit", func() bool { return !alive(first[0]) })
	second := idle[f.u2.Name][0]
	waitUntil(t, "idle_time to stop the last worker", func() bool { return f.agent.Pool.Idle() == 0 && !alive(second) })
}

// sendBypassingPool gives w the job record rec (with msg) as a hostile
// sender would, without the pool's checks, and returns its answer.
func sendBypassingPool(t *testing.T, w *warm, rec []byte, msg *os.File) *job.Result {
	t.Helper()
	if err := w.conn.Send(rec, msg); err != nil {
		t.Fatal(err)
	}
	w.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	pkt, _, err := w.conn.Recv()
	if err != nil {
		t.Fatal(err)
	}
	res, err := job.DecodeResult(append(job.ResultHeader(), pkt...))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestWarmAhead: a worker with a twentieth of max_deliveries left gets its
// replacement started beside it, kept as its user's spare; the old one
// serves until its last job and retires, and the next job goes to the
// replacement without waiting for a start. With no room in the pool for
// both, nothing is started ahead. Both pools, with real workers: root's
// own, and the listener's of direct workers. (TestPoolAhead tests the
// pool's side with stand-ins.)
func TestWarmAhead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		direct  bool
		maxIdle int
	}{
		{"root", false, 4},
		{"direct", true, 4},
		{"root, no room", false, 1},
		{"direct, no room", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := PoolConfig{MaxIdle: tc.maxIdle, IdleTime: time.Minute, MaxDeliveries: 40} // ahead: 2
			var pool *Pool
			var deliver func()
			var u *userdb.User
			starts := func() uint64 { return 0 } // direct workers root started
			if tc.direct {
				f := newDirectFixture(t, cfg)
				pool, u = f.direct.Pool, f.u1
				starts = func() uint64 {
					f.mu.Lock()
					defer f.mu.Unlock()
					return f.next
				}
				deliver = func() {
					t.Helper()
					if out, ok := f.deliver(u, job.KindDefault, f.msg, f.size); !ok || !out.Status.OK() {
						t.Fatalf("ok=%v %v", ok, out.Status)
					}
				}
			} else {
				f := newWarmFixture(t, cfg)
				pool, u = f.agent.Pool, f.u1
				deliver = func() {
					t.Helper()
					if out := f.deliver(u, job.KindDefault); !out.Status.OK() {
						t.Fatal(out.Status)
					}
				}
			}
			if pool.ahead() != 2 {
				t.Fatalf("ahead %d, want 2", pool.ahead())
			}
			// idle returns the pids of u's idle workers and of its spare (0: none).
			idle := func() (pids []int, spare int) {
				pool.mu.Lock()
				defer pool.mu.Unlock()
				for k, ws := range pool.idle {
					for _, w := range ws {
						if k.user == u.Name {
							pids = append(pids, w.pid())
						}
					}
				}
				for k, w := range pool.spare {
					if k.user == u.Name {
						spare = w.pid()
					}
				}
				return pids, spare
			}
			for i := 1; i <= 37; i++ {
				deliver()
			}
			first, sp := idle()
			if len(first) != 1 || sp != 0 {
				t.Fatalf("after 37 jobs: idle %v, spare %d; want one worker, no spare", first, sp)
			}
			deliver() // the 38th: two left
			var next int
			if tc.maxIdle > 1 {
				waitUntil(t, "the replacement", func() bool { _, sp := idle(); return sp != 0 })
				p, sp := idle()
				if len(p) != 1 || p[0] != first[0] || sp == first[0] {
					t.Fatalf("idle %v, spare %d: want the old worker %d idle and a new spare", p, sp, first[0])
				}
				next = sp
			} else {
				time.Sleep(300 * time.Millisecond)
				if p, sp := idle(); len(p) != 1 || p[0] != first[0] || sp != 0 {
					t.Fatalf("no room, yet idle %v, spare %d (old worker %d)", p, sp, first[0])
				}
				if tc.direct && starts() != 1 {
					t.Fatalf("no room, yet %d workers started", starts())
				}
			}
			deliver()
			if p, _ := idle(); len(p) != 1 || p[0] != first[0] {
				t.Fatalf("the 39th job left idle %v, want the old worker %d", p, first[0])
			}
			deliver() // the 40th: the old worker's last
			if p, _ := idle(); slices.Contains(p, first[0]) {
				t.Fatalf("idle %v: worker %d kept after its last job", p, first[0])
			}
			waitUntil(t, "the old worker to exit", func() bool { return !alive(first[0]) })
			deliver()
			p, sp := idle()
			if len(p) != 1 || p[0] == first[0] || tc.maxIdle > 1 && p[0] != next || sp != 0 {
				t.Fatalf("after 41 jobs idle %v, spare %d; old %d, replacement %d", p, sp, first[0], next)
			}
			if tc.direct && starts() != 2 {
				t.Fatalf("%d workers started for 41 jobs, want 2", starts())
			}
			if n := countNew(t, u); n != 41 {
				t.Fatalf("%d messages, want 41", n)
			}
		})
	}
}
