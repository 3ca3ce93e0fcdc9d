package delivery

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/job"
	"lda/internal/seqpacket"
	"lda/internal/spawn"
	"lda/internal/status"
)

// PoolConfig bounds the warm workers (lda.yaml "workers").
type PoolConfig struct {
	MaxIdle       int           // idle workers kept, over all users; 0 disables warm workers
	IdleTime      time.Duration // an idle worker older than this is stopped
	MaxDeliveries int           // a worker is stopped after this many jobs
}

// Pool keeps warm workers: each runs as one user and serves that user's
// jobs one at a time. A worker is taken out of the pool for a job and put
// back after a complete, well-formed answer; any other outcome (death,
// timeout, a record that does not decode) kills it, so the next job gets a
// fresh one. Workers are matched on everything that identifies the user
// (uid, gid, name, home) and on the system policy file they were given
// (path and dev/ino/size/mtime), so an edited policy is picked up by the
// next delivery without a reload.
type Pool struct {
	cfg PoolConfig

	mu     sync.Mutex
	idle   map[warmKey][]*warm // most recently used last
	spare  map[warmKey]*warm   // replacements started ahead, not yet used (startAhead)
	nidle  int                 // idle and spare workers
	closed bool
	stop   chan struct{}
}

// warmKey is what a worker is bound to. Two virtual users that share a uid
// still get different workers.
type warmKey struct {
	uid, gid   int
	user, home string
	policy     string
	stamp      policyStamp
}

// policyStamp is job.Stamp: root sends the one of the file it gave a
// direct worker (job.Reply.Stamp).
type policyStamp = job.Stamp

// warm is a warm worker: one of root's own (proc set) or, in the
// listener, a direct worker whose parent is root (remote set).
type warm struct {
	key    warmKey
	proc   *spawn.Proc
	remote *remote
	conn   *seqpacket.Conn
	uses   int
	last   time.Time
	stat   int // /proc/PID/stat, opened when the worker started; -1 if not
	// The job sent and the answer read, one buffer each for the worker's
	// life: the goroutine that took the worker from the pool owns them.
	jobBuf, outBuf []byte
}

// openStat opens the worker's /proc/PID/stat once, so that the check
// before every job is one pread (and can never read a reused pid's).
func (w *warm) openStat() *warm {
	fd, err := unix.Open("/proc/"+strconv.Itoa(w.pid())+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fd = -1
	}
	w.stat = fd
	return w
}

// close closes the worker's socket and its stat descriptor.
func (w *warm) close() {
	w.conn.Close()
	w.closeStat()
}

func (w *warm) closeStat() {
	if w.stat >= 0 {
		unix.Close(w.stat)
		w.stat = -1
	}
}

// stopped reports whether the worker is stopped or traced.
func (w *warm) stopped() bool {
	if w.stat < 0 {
		return stopped(w.pid())
	}
	var b [512]byte
	n, err := unix.Pread(w.stat, b[:], 0)
	if err != nil || n <= 0 {
		return false // gone: the send will fail and another is taken
	}
	return stoppedStat(b[:n])
}

// remote is a direct worker as the listener knows it: root started it and
// alone can kill and reap it; end asks root to, and returns once root has
// (mbox recovery included).
type remote struct {
	id  uint64
	pid int
	end func()
}

func (w *warm) pid() int {
	if w.remote != nil {
		return w.remote.pid
	}
	return w.proc.Pid
}

// done is closed once the worker is known to have ended; a direct
// worker's death shows on its socket instead (see exchange).
func (w *warm) done() <-chan struct{} {
	if w.remote != nil {
		return nil
	}
	return w.proc.Done
}

// NewPool starts the reaper of idle workers.
func NewPool(cfg PoolConfig) *Pool {
	p := &Pool{cfg: cfg, idle: map[warmKey][]*warm{}, spare: map[warmKey]*warm{}, stop: make(chan struct{})}
	if cfg.MaxIdle > 0 && cfg.IdleTime > 0 {
		go p.reap()
	}
	return p
}

// Close stops every idle worker; busy ones are stopped when they finish.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.stop)
	var all []*warm
	for k, ws := range p.idle {
		all = append(all, ws...)
		delete(p.idle, k)
	}
	for k, w := range p.spare {
		all = append(all, w)
		delete(p.spare, k)
	}
	p.nidle = 0
	p.mu.Unlock()
	for _, w := range all {
		w.retire()
	}
}

// Idle returns the number of idle workers.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nidle
}

// take returns an idle live worker for k, or nil: the most recently
// used one, or k's spare once no other is idle.
func (p *Pool) take(k warmKey) *warm {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		var w *warm
		if ws := p.idle[k]; len(ws) > 0 {
			w = ws[len(ws)-1]
			p.idle[k] = ws[:len(ws)-1]
			if len(p.idle[k]) == 0 {
				delete(p.idle, k)
			}
		} else if w = p.spare[k]; w != nil {
			delete(p.spare, k)
		} else {
			return nil
		}
		p.nidle--
		select {
		case <-w.done(): // died while idle (killed by its user, say)
			w.close()
			continue
		default:
		}
		return w // one its user has stopped is found by exchange
	}
}

// starter starts a worker for one user (see onWarm).
type starter func() (*warm, *status.Status)

// warnSpare logs a spare that could not be started (st not nil), unless
// root was only busy: the job after the old worker's last starts one.
func warnSpare(log *slog.Logger, user string, st *status.Status) {
	if st != nil && !isBusy(st) && log != nil {
		log.Warn("spare worker not started", "user", user, "status", strconv.Itoa(st.Code)+" "+st.Enhanced, "error", st.Error())
	}
}

// put returns a worker that answered its job completely. It reports
// whether the caller should start the worker's replacement now (see
// startAhead): the worker has ahead() jobs left and the pool has room for
// both.
func (p *Pool) put(w *warm) (due bool) {
	w.uses++
	w.last = time.Now()
	p.mu.Lock()
	if sp := p.spare[w.key]; sp != nil {
		sp.last = w.last // its user's mail still comes: see reap
	}
	if p.closed || p.cfg.MaxIdle <= 0 || w.uses >= p.cfg.MaxDeliveries && p.cfg.MaxDeliveries > 0 {
		p.mu.Unlock()
		w.retire()
		return false
	}
	p.idle[w.key] = append(p.idle[w.key], w)
	p.nidle++
	var evict *warm
	if p.nidle > p.cfg.MaxIdle {
		evict = p.removeOldest()
	}
	due = p.ahead() > 0 && w.uses == p.cfg.MaxDeliveries-p.ahead() && p.nidle < p.cfg.MaxIdle
	p.mu.Unlock()
	if evict != nil {
		evict.retire()
	}
	return due
}

// release puts w back (put) and, when its replacement is due, starts it
// in the background with the starter spare makes (if spare is not nil).
// spare is called only then: a starter outlives the job that released
// w, so what it holds is allocated for it alone, not for every job.
func (p *Pool) release(w *warm, spare func() starter) {
	if p.put(w) && spare != nil {
		go p.startAhead(spare())
	}
}

// ahead is how many jobs before its last a worker's replacement starts:
// a twentieth of MaxDeliveries (so none when MaxDeliveries is below 20).
// Starting a worker takes 5-10 ms (fork, exec, the Go runtime, the bind);
// started when the old worker retires, it is in the next job's time. A
// user whose mail comes fast enough for that to matter gets the last
// twentieth of a worker's jobs in far more time than a start takes.
func (p *Pool) ahead() int { return p.cfg.MaxDeliveries / 20 }

// startAhead starts a replacement for a worker near MaxDeliveries and
// keeps it as its user's spare: take gives it out only when no other
// worker of that user is idle, so the worker it replaces serves every job
// up to its last. At most one spare per user; a spare is the first to go
// when the pool is over MaxIdle, so it never pushes another worker out;
// and one that finds no room, or a closed pool, is stopped at once. A
// start that fails leaves things as before (the job after the old
// worker's last starts one).
func (p *Pool) startAhead(start starter) {
	w, st := start()
	if st != nil {
		return
	}
	w.last = time.Now()
	p.mu.Lock()
	if p.closed || p.nidle >= p.cfg.MaxIdle || p.spare[w.key] != nil {
		p.mu.Unlock()
		w.retire()
		return
	}
	p.spare[w.key] = w
	p.nidle++
	p.mu.Unlock()
}

// removeOldest takes the least recently used idle worker out, a spare
// before any other; p.mu held.
func (p *Pool) removeOldest() *warm {
	var sk warmKey
	var spare *warm
	for k, w := range p.spare {
		if spare == nil || w.last.Before(spare.last) {
			sk, spare = k, w
		}
	}
	if spare != nil {
		delete(p.spare, sk)
		p.nidle--
		return spare
	}
	var ok warmKey
	oi, found := -1, false
	var oldest time.Time
	for k, ws := range p.idle {
		// ws is ordered by use, so its first entry is its oldest.
		if len(ws) > 0 && (!found || ws[0].last.Before(oldest)) {
			ok, oi, oldest, found = k, 0, ws[0].last, true
		}
	}
	if !found {
		return nil
	}
	ws := p.idle[ok]
	w := ws[oi]
	if len(ws) == 1 {
		delete(p.idle, ok)
	} else {
		p.idle[ok] = append([]*warm(nil), ws[1:]...)
	}
	p.nidle--
	return w
}

// reap stops workers idle for longer than IdleTime.
func (p *Pool) reap() {
	tick := p.cfg.IdleTime / 2
	if tick < 50*time.Millisecond {
		tick = 50 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			var old []*warm
			p.mu.Lock()
			for k, ws := range p.idle {
				keep := ws[:0]
				for _, w := range ws {
					if now.Sub(w.last) >= p.cfg.IdleTime {
						old = append(old, w)
						p.nidle--
					} else {
						keep = append(keep, w)
					}
				}
				if len(keep) == 0 {
					delete(p.idle, k)
				} else {
					p.idle[k] = keep
				}
			}
			// A spare's time is its user's last put (see put): it
			// goes when its user's mail has stopped for IdleTime, or
			// comes under another key (an edited policy file).
			for k, w := range p.spare {
				if now.Sub(w.last) >= p.cfg.IdleTime {
					old = append(old, w)
					delete(p.spare, k)
					p.nidle--
				}
			}
			p.mu.Unlock()
			for _, w := range old {
				w.retire()
			}
		}
	}
}

// retire ends a worker that is in a good state: closing its socket makes
// it exit; one that does not within a few seconds is killed.
func (w *warm) retire() {
	w.close()
	if w.remote != nil {
		// It exits on EOF; root kills it if it has not (stopped by its
		// user, say), and reaps it either way.
		go w.remote.end()
		return
	}
	go func() {
		select {
		case <-w.proc.Done:
		case <-time.After(5 * time.Second):
			w.proc.Kill()
		}
	}()
}

// stderr is what a dead worker wrote to standard error.
func (w *warm) stderr() string {
	if w.remote != nil {
		return "" // root logs it when it reaps the worker
	}
	select {
	case <-w.proc.Done:
	case <-time.After(2 * time.Second):
	}
	return w.proc.Stderr()
}

// abandon ends an idle worker that must not be used. It holds no job,
// so nothing waits for its end: a direct worker's is left to root,
// without holding the pool's lock for the round trip.
func (w *warm) abandon() {
	if w.remote != nil {
		w.close()
		go w.remote.end()
		return
	}
	w.kill()
}

// kill ends a worker whose state is unknown.
func (w *warm) kill() {
	if w.remote != nil {
		w.close()
		w.remote.end()
		return
	}
	w.proc.Kill()
	w.close()
}

var errWrongWorker = errors.New("delivery: job does not belong to this worker's user")

// errStopped: the worker's answer was slow, and the worker is stopped.
var errStopped = errors.New("worker stopped (SIGSTOP or a tracer)")

// stopLook is how long a job's answer may take before exchange looks at
// the worker's state. A worker its user has stopped (SIGSTOP) would hold
// the job, and with it the replies of every other recipient of the
// message, until delivery_timeout. Looking only when an answer is this
// slow keeps the read of /proc/PID/stat off the path of every delivery
// (it was 4 % of the listener's CPU per delivery, looked at before each
// job); a stopped idle worker now costs its next job this much delay.
var stopLook = 20 * time.Millisecond

// endStopped ends a worker that exchange found stopped while it held a
// job, and reports whether the job was still unread: then the worker
// never acted on it and another may take it. The worker is ended first
// and the socket asked afterwards, so that a SIGCONT in between cannot
// make a job read after the answer "unread".
func (w *warm) endStopped() (unread bool) {
	if w.remote != nil {
		w.remote.end() // root kills and reaps it, and recovers what it left
	} else {
		w.proc.Kill()
		<-w.proc.Done
	}
	unread = w.conn.Unread(io.EOF)
	w.close()
	return unread
}

// exchange sends one job to w and reads its answer: zero or more progress
// packets and one result packet, which it returns behind a result header
// so that job.DecodeResult reads it exactly as a one-shot worker's output.
// The job must be w's user's; anything else is refused before a byte is
// sent. sent reports whether the job reached the worker.
func (w *warm) exchange(k warmKey, rec []byte, msg *os.File, deadline time.Time) (out []byte, sent bool, err error) {
	if k != w.key {
		return nil, false, errWrongWorker
	}
	if err := w.conn.Send(rec, msg); err != nil {
		return nil, false, err
	}
	look := time.Now().Add(stopLook)
	if !look.Before(deadline) {
		look = deadline
	}
	w.conn.SetReadDeadline(look)
	out = job.AppendResultHeader(w.outBuf[:0])
	defer func() { w.outBuf = out[:0] }()
	for first := true; ; first = false {
		pkt, f, err := w.conn.Recv()
		for errors.Is(err, os.ErrDeadlineExceeded) && look.Before(deadline) {
			// Slow: see whether its user stopped it (stopLook).
			if w.stopped() {
				return out, true, errStopped
			}
			look = deadline
			w.conn.SetReadDeadline(deadline)
			pkt, f, err = w.conn.Recv()
		}
		if f != nil {
			f.Close()
			return out, true, errors.New("worker sent a descriptor")
		}
		if first && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) && w.conn.Unread(err) {
			// The worker's socket was closed with packets unread: it
			// died (killed while idle, say) without reading the job,
			// our only packet.
			return nil, false, err
		}
		if err != nil {
			return out, true, err
		}
		out = append(out, pkt...)
		if len(out) > job.MaxRecord {
			return out, true, fmt.Errorf("worker answer exceeds %d bytes", job.MaxRecord)
		}
		if !bytes.HasPrefix(pkt, []byte("progress ")) {
			return out, true, nil
		}
	}
}

// stopped reports whether pid is stopped or traced, from /proc/PID/stat.
func stopped(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false // gone: the send will fail and another is taken
	}
	return stoppedStat(b)
}

// stoppedStat reads the state from a /proc/PID/stat line: the field after
// the last ')' (the command name may hold anything).
func stoppedStat(b []byte) bool {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	st := b[i+2]
	return st == 'T' || st == 't'
}

// stampOf describes the policy file (the zero stamp for the embedded one).
func stampOf(st *unix.Stat_t) policyStamp {
	return policyStamp{Dev: st.Dev, Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano()}
}
