package delivery

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/job"
	"lda/internal/status"
	"lda/internal/testutil"
	"lda/internal/userdb"
)

// directFixture wires a listener-side Direct to a root-side Agent in one
// process, as the daemon's control channel does: Start is
// Agent.StartDirect, End kills and waits for the reap (and recovery).
type directFixture struct {
	*warmFixture
	direct *Direct
	log    *testutil.SyncBuffer

	mu      sync.Mutex
	workers map[uint64]*DirectWorker
	next    uint64
	busy    bool
}

func newDirectFixture(t *testing.T, cfg PoolConfig) *directFixture {
	wf := newWarmFixture(t, cfg)
	f := &directFixture{warmFixture: wf, log: &testutil.SyncBuffer{}, workers: map[uint64]*DirectWorker{}}
	wf.agent.Pool = nil // root keeps none of its own
	wf.agent.Log = slog.New(slog.NewTextHandler(f.log, nil))
	users := map[string]*userdb.User{wf.u1.Name: wf.u1, wf.u2.Name: wf.u2}
	pool := NewPool(cfg)
	t.Cleanup(pool.Close)
	f.direct = &Direct{
		Pool: pool, PolicyPath: wf.agent.PolicyPath, Timeout: 10 * time.Second, Log: wf.agent.Log,
		Start: func(user string) (*job.Reply, *os.File) {
			f.mu.Lock()
			busy := f.busy
			f.mu.Unlock()
			if busy {
				return &job.Reply{Status: status.Busy}, nil
			}
			w, sock, err := wf.agent.StartDirect(users[user])
			if err != nil {
				return &job.Reply{Status: status.From(err)}, nil
			}
			f.mu.Lock()
			f.next++
			id := f.next
			f.workers[id] = w
			f.mu.Unlock()
			return &job.Reply{Status: status.New(250, "2.0.0", "worker started"), Worker: id, Pid: w.Pid, Bind: w.Bind, Stamp: w.Stamp}, sock
		},
		End: func(_ string, id uint64) {
			f.mu.Lock()
			w := f.workers[id]
			f.mu.Unlock()
			w.Kill()
			<-w.Ended()
		},
	}
	t.Cleanup(func() {
		pool.Close()
		for _, w := range f.workers {
			w.Kill()
			<-w.Ended()
		}
	})
	return f
}

func (f *directFixture) deliver(u *userdb.User, kind string, msg *os.File, size int64) (Outcome, bool) {
	f.t.Helper()
	path := ""
	if kind == job.KindMbox {
		path = filepath.Join(u.Home, "mbox")
	}
	return f.direct.Deliver(context.Background(), Request{User: u, Kind: kind, Path: path, Sender: "s@example.org",
		Recipient: u.Name + "@example.org", Message: msg, Size: size})
}

// idleDirect returns the one idle direct worker of u.
func (f *directFixture) idleDirect(t *testing.T, u *userdb.User) *warm {
	t.Helper()
	p := f.direct.Pool
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, ws := range p.idle {
		if k.user == u.Name && len(ws) == 1 {
			return ws[0]
		}
	}
	t.Fatalf("no single idle direct worker for %s", u.Name)
	return nil
}

// TestDirectReuse: the listener's deliveries go to one direct worker per
// user, started and bound by root, which is a child of root (this
// process), runs as the user, and is reused; with root busy the caller is
// told to go through root instead.
func TestDirectReuse(t *testing.T) {
	f := newDirectFixture(t, PoolConfig{MaxIdle: 4, IdleTime: time.Minute, MaxDeliveries: 100})
	var pid int
	for i := 0; i < 3; i++ {
		out, ok := f.deliver(f.u1, job.KindDefault, f.msg, f.size)
		if !ok || !out.Status.OK() {
			t.Fatalf("delivery %d: ok=%v %v", i, ok, out.Status)
		}
		w := f.idleDirect(t, f.u1)
		if i == 0 {
			pid = w.pid()
		} else if w.pid() != pid {
			t.Fatalf("delivery %d used worker %d, not %d", i, w.pid(), pid)
		}
	}
	st, err := os.ReadFile("/proc/" + itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(st), "\nPPid:\t"+itoa(os.Getpid())+"\n") || !strings.Contains(string(st), "\nUid:\t"+itoa(f.u1.UID)+"\t") {
		t.Fatalf("worker %d is not root's child running as %d:\n%s", pid, f.u1.UID, st)
	}
	if n := countNew(t, f.u1); n != 3 {
		t.Fatalf("%d messages, want 3", n)
	}
	if n := strings.Count(f.log.String(), "msg=delivery user="+f.u1.Name); n != 3 {
		t.Fatalf("%d delivery lines, want 3:\n%s", n, f.log)
	}
	t.Run("quiet: the caller logs the outcome", func(t *testing.T) {
		before := f.log.String()
		out, ok := f.direct.Deliver(context.Background(), Request{User: f.u1, Kind: job.KindDefault, Sender: "s@example.org",
			Recipient: f.u1.Name + "@example.org", Message: f.msg, Size: f.size, Quiet: true})
		if !ok || !out.Status.OK() {
			t.Fatalf("ok=%v %v", ok, out.Status)
		}
		if after := f.log.String(); after != before {
			t.Fatalf("a quiet delivery logged %q", strings.TrimPrefix(after, before))
		}
		attrs := fmt.Sprint(OutcomeAttrs(out))
		for _, want := range []string{"where", filepath.Join(f.u1.Home, "Maildir", "new") + "/", "rule"} {
			if !strings.Contains(attrs, want) {
				t.Fatalf("OutcomeAttrs %q lacks %q", attrs, want)
			}
		}
	})
	f.mu.Lock()
	f.busy = true
	f.mu.Unlock()
	if _, ok := f.deliver(f.u2, job.KindDefault, f.msg, f.size); ok {
		t.Fatal("with root busy, Deliver did not hand the job back")
	}
	if n := countNew(t, f.u2); n != 0 {
		t.Fatalf("u2 got %d messages while root was busy", n)
	}
}

// TestDirectRefuses plays a hostile listener against a direct worker it
// holds: a job for another user (another uid, or a virtual user sharing
// the uid), a recover job (only root may ask for one), a second bind
// record, a writable message descriptor, a memfd that is not sealed
// against writing (or growing) and an unsealed memfd reopened read-only
// are each refused with 451, and the worker exits rather than serve
// anything after.
func TestDirectRefuses(t *testing.T) {
	f := newDirectFixture(t, PoolConfig{MaxIdle: 8, IdleTime: time.Minute, MaxDeliveries: 100})
	rw, err := os.OpenFile(f.msg.Name(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	memfd := func(seals int) *os.File {
		fd, err := unix.MemfdCreate("msg", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		m := os.NewFile(uintptr(fd), "msg")
		t.Cleanup(func() { m.Close() })
		body, err := os.ReadFile(f.msg.Name())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Write(body); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.FcntlInt(m.Fd(), unix.F_ADD_SEALS, seals); err != nil {
			t.Fatal(err)
		}
		return m
	}
	// reopened is m opened again, read-only, through /proc: for a memfd
	// (mode 0777) no protection, since the worker could reopen it for
	// writing the same way.
	reopened := func(m *os.File) *os.File {
		ro, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", m.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ro.Close() })
		return ro
	}
	pol := f.agent.PolicyPath
	mk := func(mode string, u *userdb.User, kind string) *job.Job {
		j := &job.Job{Mode: mode, User: u.Name, UID: u.UID, GID: u.GID, Home: u.Home, Kind: kind,
			Sender: "s@example.org", Policy: pol, Size: f.size}
		if kind == job.KindMbox {
			j.Path = filepath.Join(u.Home, "mbox")
		}
		return j
	}
	virtual := &userdb.User{Name: "v2", UID: f.u1.UID, GID: f.u1.GID, Home: filepath.Join(f.u1.Home, "v2")}
	recover := mk(job.ModeRecover, f.u1, job.KindMbox)
	recover.Recover = &job.Progress{Offset: 0, Dev: 1, Ino: 2, FromLine: "From s@example.org Sun Dec  6 00:00:00 2026\n"}
	for _, c := range []struct {
		name string
		j    *job.Job
		msg  *os.File
		want string
	}{
		{"another uid", mk(job.ModeDeliver, f.u2, job.KindDefault), f.msg, "given to the worker of"},
		{"a virtual user sharing the uid", mk(job.ModeDeliver, virtual, job.KindDefault), f.msg, "given to the worker of"},
		{"a recover job", recover, f.msg, "may not ask for a recover job"},
		{"a second bind", &job.Job{Mode: job.ModeBind, User: f.u1.Name, UID: f.u1.UID, GID: f.u1.GID, Home: f.u1.Home,
			Kind: job.KindDefault, Policy: pol}, nil, "may not ask for a bind job"},
		{"a writable message", mk(job.ModeDeliver, f.u1, job.KindDefault), rw, "lets the message be changed"},
		{"a memfd sealed against size changes only", mk(job.ModeDeliver, f.u1, job.KindDefault), memfd(unix.F_SEAL_GROW | unix.F_SEAL_SHRINK), "lets the message be changed"},
		{"a memfd that can grow", mk(job.ModeDeliver, f.u1, job.KindDefault), memfd(unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_SEAL), "lets the message be changed"},
		{"a memfd without seals, reopened read-only", mk(job.ModeDeliver, f.u1, job.KindDefault), reopened(memfd(0)), "lets the message be changed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if out, ok := f.deliver(f.u1, job.KindDefault, f.msg, f.size); !ok || !out.Status.OK() {
				t.Fatalf("warm-up: %v", out.Status)
			}
			before := countNew(t, f.u1)
			w := f.idleDirect(t, f.u1)
			rec, err := c.j.Encode()
			if err != nil {
				t.Fatal(err)
			}
			res := sendBypassingPool(t, w, rec, c.msg)
			if res.Status.Code != 451 || !strings.Contains(res.Detail, c.want) {
				t.Fatalf("worker answered %v %q, want 451 and %q", res.Status, res.Detail, c.want)
			}
			waitUntil(t, "the refusing worker to exit", func() bool { return !alive(w.pid()) })
			if n := countNew(t, f.u1); n != before {
				t.Fatalf("new/ went from %d to %d", before, n)
			}
			f.direct.Pool.take(w.key) // drop the dead worker
		})
	}
	if _, err := os.Stat(filepath.Join(f.u1.Home, "v2")); err == nil {
		t.Fatal("the virtual user's home was written to")
	}
	if n := countNew(t, f.u2); n != 0 {
		t.Fatalf("u2 got %d messages", n)
	}
	if _, err := os.Stat(filepath.Join(f.u1.Home, "mbox")); err == nil {
		t.Fatal("the recover job touched the mbox")
	}
}

// TestDirectWithoutReplySocket plays a listener that skips the reply
// record and sends a job as its first record: the direct worker must not
// run it (it has nowhere to answer), and exits.
func TestDirectWithoutReplySocket(t *testing.T) {
	f := newDirectFixture(t, PoolConfig{MaxIdle: 4, IdleTime: time.Minute, MaxDeliveries: 100})
	before := countNew(t, f.u1)
	w, sock, err := f.agent.StartDirect(f.u1)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	j := &job.Job{Mode: job.ModeDeliver, User: f.u1.Name, UID: f.u1.UID, GID: f.u1.GID, Home: f.u1.Home,
		Kind: job.KindDefault, Sender: "s@example.org", Policy: f.agent.PolicyPath, Size: f.size}
	rec, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendmsg(int(sock.Fd()), rec, unix.UnixRights(int(f.msg.Fd())), nil, unix.MSG_NOSIGNAL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Ended():
	case <-time.After(10 * time.Second):
		w.Kill()
		t.Fatal("the worker served on without a reply socket")
	}
	b := make([]byte, 100)
	if n, _, _, _, err := unix.Recvmsg(int(sock.Fd()), b, nil, unix.MSG_DONTWAIT); n > 0 {
		t.Fatalf("the worker answered on the job socket: %q (%v)", b[:n], err)
	}
	if n := countNew(t, f.u1); n != before {
		t.Fatalf("new/ went from %d to %d", before, n)
	}
}

// TestDirectRecovery kills a direct worker in the middle of an mbox
// append (stopped once its recovery record is set, then killed): the job
// fails with 451 4.3.0 only after root has cut the partial message off, so
// the mbox is exactly as it was; the next delivery works.
func TestDirectRecovery(t *testing.T) {
	// Stopped and killed at once: not a stopped worker for exchange to find.
	defer func(d time.Duration) { stopLook = d }(stopLook)
	stopLook = time.Hour
	f := newDirectFixture(t, PoolConfig{MaxIdle: 4, IdleTime: time.Minute, MaxDeliveries: 100})
	ap := startBigAppend(t, f, 20*time.Second)
	syscall.Kill(ap.dw.Pid, syscall.SIGKILL)
	out := <-ap.done
	if out.Status.Code != 451 || out.Status.Enhanced != "4.3.0" {
		t.Fatalf("killed mid-append: %v, want 451 4.3.0", out.Status)
	}
	ap.unchanged(t)
	if !strings.Contains(f.log.String(), `msg="mbox recovery"`) {
		t.Fatalf("no recovery line:\n%s", f.log)
	}
	if out, ok := f.deliver(f.u1, job.KindMbox, f.msg, f.size); !ok || !out.Status.OK() {
		t.Fatalf("delivery after the recovery: %v", out.Status)
	}
}

// TestDirectStoppedHolding: a direct worker its user stopped after it
// read a job is ended when exchange looks (stopLook), and the job fails
// with 451 4.4.7 only after root has cut its partial append off: the mbox
// is as it was.
func TestDirectStoppedHolding(t *testing.T) {
	f := newDirectFixture(t, PoolConfig{MaxIdle: 4, IdleTime: time.Minute, MaxDeliveries: 100})
	defer func(d time.Duration) { stopLook = d }(stopLook)
	stopLook = 3 * time.Second // long enough to stop it first
	ap := startBigAppend(t, f, 2*time.Second)
	out := <-ap.done
	if out.Status.Code != 451 || out.Status.Enhanced != "4.4.7" {
		t.Fatalf("stopped mid-append: %v, want 451 4.4.7", out.Status)
	}
	if d := time.Since(ap.start); d < stopLook || d > stopLook+5*time.Second {
		t.Fatalf("answered after %v; the look was due after %v", d, stopLook)
	}
	ap.unchanged(t)
	if alive(ap.dw.Pid) {
		t.Fatal("the stopped worker is still there")
	}
}

// bigAppend is a 64 MiB mbox delivery that startBigAppend caught and
// stopped once its worker had recorded where the append starts.
type bigAppend struct {
	mbox  string
	size0 int64 // the mbox's size before
	dw    *DirectWorker
	done  chan Outcome
	start time.Time
}

// startBigAppend delivers one message to f.u1's mbox, then starts a 64 MiB
// one and stops (SIGSTOP) its worker once the worker has recorded the
// append, waiting at most wait for that; it skips the test if the append
// finished first.
func startBigAppend(t *testing.T, f *directFixture, wait time.Duration) *bigAppend {
	t.Helper()
	if out, ok := f.deliver(f.u1, job.KindMbox, f.msg, f.size); !ok || !out.Status.OK() {
		t.Fatalf("first mbox delivery: %v", out.Status)
	}
	ap := &bigAppend{mbox: filepath.Join(f.u1.Home, "mbox"), done: make(chan Outcome, 1)}
	st0, err := os.Stat(ap.mbox)
	if err != nil {
		t.Fatal(err)
	}
	ap.size0 = st0.Size()
	ro, size := bigMessage(t, f.dir)
	ap.dw = f.onlyWorker(t)
	ap.start = time.Now()
	go func() {
		out, _ := f.deliver(f.u1, job.KindMbox, ro, size)
		ap.done <- out
	}()
	for !recorded(ap.dw) {
		if time.Since(ap.start) > wait {
			t.Fatal("the worker never recorded its append")
		}
	}
	syscall.Kill(ap.dw.Pid, syscall.SIGSTOP)
	if !recorded(ap.dw) {
		t.Skip("the append finished before the worker could be stopped")
	}
	return ap
}

// unchanged fails unless the mbox is as it was before the big append.
func (ap *bigAppend) unchanged(t *testing.T) {
	t.Helper()
	st1, err := os.Stat(ap.mbox)
	if err != nil {
		t.Fatal(err)
	}
	if st1.Size() != ap.size0 {
		t.Fatalf("mbox is %d bytes after recovery, was %d", st1.Size(), ap.size0)
	}
}

// bigMessage is a 64 MiB message, so that a delivery lasts long enough to
// be caught in the middle.
func bigMessage(t *testing.T, dir string) (*os.File, int64) {
	t.Helper()
	big, err := os.CreateTemp(dir, "big")
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	line := append(bytes.Repeat([]byte("x"), 1023), '\n')
	big.WriteString("Subject: big\n\n")
	for i := 0; i < 64<<10; i++ {
		big.Write(line)
	}
	size, _ := big.Seek(0, 2)
	ro, err := os.Open(big.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ro.Close() })
	return ro, size
}

// onlyWorker returns the one direct worker started so far.
func (f *directFixture) onlyWorker(t *testing.T) *DirectWorker {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.workers) != 1 {
		t.Fatalf("%d direct workers, want 1", len(f.workers))
	}
	for _, w := range f.workers {
		return w
	}
	return nil
}

// recorded reports whether w's recovery record is set.
func recorded(w *DirectWorker) bool {
	var n [8]byte
	w.rec.ReadAt(n[:], 0)
	return binary.LittleEndian.Uint64(n[:]) != 0
}

// TestDirectRecoveryMaildir kills a direct worker while it writes a
// Maildir message into tmp/: the job fails with 451 4.3.0 only after root
// has had the tmp/ file removed, so nothing is left in tmp/ and nothing
// appeared in new/.
func TestDirectRecoveryMaildir(t *testing.T) {
	// Stopped and killed at once: not a stopped worker for exchange to find.
	defer func(d time.Duration) { stopLook = d }(stopLook)
	stopLook = time.Hour
	f := newDirectFixture(t, PoolConfig{MaxIdle: 4, IdleTime: time.Minute, MaxDeliveries: 100})
	if out, ok := f.deliver(f.u1, job.KindDefault, f.msg, f.size); !ok || !out.Status.OK() {
		t.Fatalf("first delivery: %v", out.Status)
	}
	dw := f.onlyWorker(t)
	ro, size := bigMessage(t, f.dir)
	tmp := filepath.Join(f.u1.Home, "Maildir", "tmp")
	done := make(chan Outcome, 1)
	go func() {
		out, _ := f.deliver(f.u1, job.KindDefault, ro, size)
		done <- out
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ents, _ := os.ReadDir(tmp); len(ents) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker never created its tmp/ file")
		}
	}
	syscall.Kill(dw.Pid, syscall.SIGSTOP)
	if ents, _ := os.ReadDir(tmp); len(ents) != 1 || countNew(t, f.u1) != 1 {
		t.Skip("the delivery finished before the worker could be stopped")
	}
	if !recorded(dw) {
		t.Fatal("the worker is writing into tmp/ without a recovery record")
	}
	syscall.Kill(dw.Pid, syscall.SIGKILL)
	out := <-done
	if out.Status.Code != 451 || out.Status.Enhanced != "4.3.0" {
		t.Fatalf("killed mid-write: %v, want 451 4.3.0", out.Status)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Fatalf("tmp/ still holds %v", ents)
	}
	if n := countNew(t, f.u1); n != 1 {
		t.Fatalf("%d messages in new/, want 1", n)
	}
	if !strings.Contains(f.log.String(), `msg="maildir recovery"`) {
		t.Fatalf("no recovery line:\n%s", f.log)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestDirectStoppedIdle: a direct worker its user stopped while idle is
// given the next job but never reads it: when the answer is stopLook late,
// the listener finds it stopped, has root end it, sees the job unread, and
// gives the job to a fresh worker; it is delivered once.
func TestDirectStoppedIdle(t *testing.T) {
	f := newDirectFixture(t, PoolConfig{MaxIdle: 4, IdleTime: time.Minute, MaxDeliveries: 100})
	if out, ok := f.deliver(f.u1, job.KindDefault, f.msg, f.size); !ok || !out.Status.OK() {
		t.Fatalf("first delivery: %v", out.Status)
	}
	old := f.onlyWorker(t).Pid
	syscall.Kill(old, syscall.SIGSTOP)
	waitUntil(t, "the worker to stop", func() bool { return stopped(old) })
	if out, ok := f.deliver(f.u1, job.KindDefault, f.msg, f.size); !ok || !out.Status.OK() {
		t.Fatalf("delivery after the idle worker was stopped: %v", out.Status)
	}
	if w := f.idleDirect(t, f.u1); w.pid() == old {
		t.Fatal("the stopped worker is still pooled")
	}
	waitUntil(t, "root to kill the stopped worker", func() bool { return !alive(old) })
	if n := countNew(t, f.u1); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
}

// TestDirectNoUser: a request without a user is 550 5.1.1, logged, and
// reaches neither root nor a worker.
func TestDirectNoUser(t *testing.T) {
	var log testutil.SyncBuffer
	d := &Direct{Pool: NewPool(PoolConfig{MaxIdle: 1, IdleTime: time.Minute, MaxDeliveries: 1}),
		Log: slog.New(slog.NewTextHandler(&log, nil)),
		Start: func(string) (*job.Reply, *os.File) {
			t.Fatal("asked root for a worker")
			return nil, nil
		},
	}
	defer d.Pool.Close()
	out, ok := d.Deliver(context.Background(), Request{Recipient: "nobody@example.org"})
	if !ok || out.Status.Enhanced != "5.1.1" {
		t.Fatalf("ok=%v %v, want 550 5.1.1", ok, out.Status)
	}
	if !strings.Contains(log.String(), `status="550 5.1.1"`) {
		t.Fatalf("no delivery line:\n%s", log.String())
	}
}

// TestDirectPolicyStamp: the listener keys a direct worker by the policy
// file root opened for it (job.Reply.Stamp), not by what it saw before
// asking. The policy is edited between the two, as a start ahead of its
// need makes likely: the worker still serves the next job, keyed by the
// edited file, and is not left idle under a stamp no job has.
func TestDirectPolicyStamp(t *testing.T) {
	f := newDirectFixture(t, PoolConfig{MaxIdle: 4, IdleTime: time.Minute, MaxDeliveries: 100})
	future := time.Now().Add(time.Hour).Truncate(time.Second)
	start := f.direct.Start
	var edited atomic.Bool
	f.direct.Start = func(user string) (*job.Reply, *os.File) {
		if !edited.Swap(true) { // after the listener's stat, before root's open
			testutil.Must(t, os.Chtimes(f.agent.PolicyPath, future, future))
		}
		return start(user)
	}
	for i := 0; i < 2; i++ {
		if out, ok := f.deliver(f.u1, job.KindDefault, f.msg, f.size); !ok || !out.Status.OK() {
			t.Fatalf("delivery %d: ok=%v %v", i, ok, out.Status)
		}
	}
	f.mu.Lock()
	started := f.next
	f.mu.Unlock()
	w := f.idleDirect(t, f.u1)
	if started != 1 || w.key.stamp.Mtime != future.UnixNano() {
		t.Fatalf("%d workers started for two jobs, the idle one keyed by mtime %d; want 1, keyed by %d",
			started, w.key.stamp.Mtime, future.UnixNano())
	}
}
