// Package delivery is the root side of one delivery: it turns a request
// into a job record, has a worker running as the destination user perform
// it (a one-shot worker started through package spawn, or a warm one from
// the Pool), validates the worker's result and logs one structured line.
// It never opens a user's path itself. It also holds both sides of direct
// delivery: root starts and binds a direct worker (Agent.StartDirect) and
// reaps it, and the listener keeps such workers in a Pool of its own and
// gives them jobs (Direct), without root in the path.
//
// Security: the request's user comes from the user database, never from
// the peer. The worker's result is parsed strictly (package job) and
// trusted only as far as the user's own mail: a worker can lie about its own
// delivery, not about anyone else's. A warm worker is only ever given jobs
// of the user it was started for (same uid, gid, name, home and system
// policy): the Pool refuses any other before sending, and the worker
// refuses and exits on one. A warm worker that dies, times out or answers
// badly while holding a job is killed and the job fails with 4xx. When a
// worker dies after it announced an mbox append, another worker, as the
// same user, cuts the partial message off again (mbox.Recover) before the
// failure is reported. For a direct worker the announcement is the recover
// job it wrote into a memfd only root reads; the listener, which answers
// the MTA, waits for root to have reaped the worker first.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/job"
	"lda/internal/seqpacket"
	"lda/internal/spawn"
	"lda/internal/status"
	"lda/internal/userdb"
)

// Agent holds what every delivery shares.
type Agent struct {
	Exe        string        // our own binary, executable by every user
	PolicyPath string        // "" for the embedded default policy
	SieveDir   string        // system before.sieve/after.sieve directory, "" for none
	MinUID     int           // enforced here as well as in spawn and the policy
	Timeout    time.Duration // per worker
	TimerSlack time.Duration // every worker's timer slack (spawn.DefaultTimerSlack); 0 leaves root's
	Log        *slog.Logger
	// Pool, if set, keeps warm workers (one user each) between jobs;
	// without it every job gets a worker of its own.
	Pool *Pool
}

// Request is one recipient's delivery.
type Request struct {
	Mode      string // job.ModeDeliver (default), ModeExplain, ModeFilter or ModeEnvelope
	User      *userdb.User
	Kind      string // job.KindDefault, KindMbox, KindMaildir, KindProgram
	Path      string
	Folder    string
	Program   string
	Sender    string
	Recipient string
	Headers   bool
	Received  string   // with Headers, the value of a Received line
	Message   *os.File // read by offset only
	Size      int64
	// Quiet: the caller writes the outcome into a line of its own (with
	// OutcomeAttrs), so Direct.Deliver logs nothing for it.
	Quiet bool
}

// Outcome is what happened.
type Outcome struct {
	Status *status.Status
	Result *job.Result // nil when no worker answered
}

// Deliver runs one worker and returns the outcome. It always returns a
// Status; anything unexpected is 451 4.3.0.
func (a *Agent) Deliver(ctx context.Context, r Request) Outcome {
	start := time.Now()
	out := a.deliver(ctx, r)
	a.log(r, out, time.Since(start))
	return out
}

func (a *Agent) job(r Request) *job.Job {
	mode := r.Mode
	if mode == "" {
		mode = job.ModeDeliver
	}
	pol := a.PolicyPath
	if pol == "" {
		pol = "embedded"
	}
	return &job.Job{
		Mode: mode, User: r.User.Name, UID: r.User.UID, GID: r.User.GID, Home: r.User.Home,
		Kind: r.Kind, Path: r.Path, Folder: r.Folder, Program: r.Program,
		Sender: r.Sender, Recipient: r.Recipient, Headers: r.Headers, Received: r.Received,
		Policy: pol, SieveDir: a.SieveDir, Size: r.Size,
	}
}

func (a *Agent) deliver(ctx context.Context, r Request) Outcome {
	if r.User == nil {
		return Outcome{Status: status.UnknownUser}
	}
	if st := a.admit(r.User); st != nil {
		return Outcome{Status: st}
	}
	j := a.job(r)
	res, st := a.run(ctx, j, r.Message)
	if res != nil && res.Progress != nil && st != nil && errors.Is(st, job.ErrIncomplete) {
		rj := *j
		rj.Mode, rj.Recover = job.ModeRecover, res.Progress
		a.recover(ctx, &rj)
	}
	return Outcome{Status: st, Result: res}
}

// admit refuses root and users below min_uid, whatever the policy says.
func (a *Agent) admit(u *userdb.User) *status.Status {
	if u.UID < a.MinUID || u.UID == 0 {
		return status.PolicyRefused.Wrapf("uid %d is below the minimum uid %d", u.UID, a.MinUID)
	}
	return nil
}

// run has a worker perform j and decodes its answer.
func (a *Agent) run(ctx context.Context, j *job.Job, msg *os.File) (*job.Result, *status.Status) {
	if a.Pool != nil {
		return a.runWarm(ctx, j, msg)
	}
	rec, err := j.Encode()
	if err != nil {
		return nil, status.Usage.Wrap(err)
	}
	files := []*os.File{msg, nil}
	if msg == nil {
		files[0] = devNull()
		defer files[0].Close()
	}
	if a.PolicyPath != "" {
		pf, err := os.Open(a.PolicyPath)
		if err != nil {
			return nil, status.ConfigError.Wrap(err)
		}
		defer pf.Close()
		files[1] = pf
	} else {
		files = files[:1]
	}
	out, err := spawn.Run(ctx, spawn.Request{
		Exe: a.Exe, Args: []string{"worker"}, UID: j.UID, GID: j.GID, MinUID: a.MinUID,
		Stdin: rec, Files: files, Timeout: a.Timeout, TimerSlack: a.TimerSlack,
	})
	if err != nil {
		if errors.Is(err, spawn.ErrRefused) {
			return nil, status.PolicyRefused.Wrap(err)
		}
		if out == nil {
			return nil, notStarted(err)
		}
		// The worker ran (and may have delivered): not a start that the
		// time limit prevented.
		return nil, status.Unknown.Wrap(err)
	}
	res, err := job.DecodeResult(out.Stdout)
	switch {
	case out.TimedOut:
		return res, status.Timeout.Wrap(fmt.Errorf("worker killed after %s: %w", a.Timeout, job.ErrIncomplete))
	case errors.Is(err, job.ErrIncomplete):
		return res, status.Unknown.Wrap(fmt.Errorf("worker exited %d: %w (stderr: %q)", out.ExitCode, err, clip(out.Stderr)))
	case err != nil:
		return nil, status.Unknown.Wrap(fmt.Errorf("worker result: %w (stderr: %q)", err, clip(out.Stderr)))
	}
	return res, res.Status
}

// notStarted is the status of a one-shot worker that spawn could not
// start: the delivery's time limit (451 4.4.7, as for a worker killed at
// the limit) when that is what stopped it, as a -timeout shorter than a
// worker's start does; otherwise 451 4.3.0.
func notStarted(err error) *status.Status {
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Timeout.Wrap(err)
	}
	return status.Unknown.Wrap(err)
}

// runWarm has a warm worker of j's user, from root's own pool, perform j.
func (a *Agent) runWarm(ctx context.Context, j *job.Job, msg *os.File) (*job.Result, *status.Status) {
	rec, err := j.Encode()
	if err != nil {
		return nil, status.Usage.Wrap(err)
	}
	k := warmKey{uid: j.UID, gid: j.GID, user: j.User, home: j.Home, policy: j.Policy}
	if a.PolicyPath != "" {
		var st unix.Stat_t
		if err := unix.Stat(a.PolicyPath, &st); err != nil {
			return nil, status.ConfigError.Wrap(err)
		}
		k.stamp = stampOf(&st)
	}
	// Each start has a key of its own: startWarm sets its stamp, and a
	// replacement started ahead runs beside the job's goroutine.
	start := func() (*warm, *status.Status) {
		wk := k
		w, err := a.startWarm(&wk)
		if errors.Is(err, spawn.ErrRefused) {
			return nil, status.PolicyRefused.Wrap(err)
		}
		if err != nil {
			return nil, status.Unknown.Wrap(err)
		}
		return w, nil
	}
	encode := func(_ warmKey, buf []byte) ([]byte, error) { return append(buf, rec...), nil }
	spare := func() starter {
		return func() (*warm, *status.Status) {
			w, st := start()
			warnSpare(a.Log, k.user, st)
			return w, st
		}
	}
	return onWarm(ctx, a.Pool, k, start, spare, encode, msg, a.Timeout)
}

// onWarm has a warm worker for k perform the job encode builds for that
// worker's key (appended to buf, the worker's own buffer, kept for its
// next job): an idle one from pool, or one start makes. An idle worker
// that turns out to have died, or to have been stopped by its user, before
// it read the job is replaced (each try uses up one idle worker, so this
// ends); a worker that dies, times out, is found stopped or answers badly
// after it read the job is killed and the job fails with a temporary error
// (and mbox recovery, by whoever reaps the worker). A worker is never
// given another user's job: exchange refuses any job whose key is not the
// worker's.
func onWarm(ctx context.Context, pool *Pool, k warmKey, start starter, spare func() starter,
	encode func(k warmKey, buf []byte) ([]byte, error), msg *os.File, timeout time.Duration) (*job.Result, *status.Status) {
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for {
		w := pool.take(k)
		fresh := w == nil
		if fresh {
			var st *status.Status
			if w, st = start(); st != nil {
				return nil, st
			}
		}
		rec, err := encode(w.key, w.jobBuf[:0])
		if err != nil {
			pool.release(w, nil)
			return nil, status.Usage.Wrap(err)
		}
		w.jobBuf = rec[:0]
		out, sent, err := w.exchange(w.key, rec, msg, deadline)
		if errors.Is(err, errStopped) {
			if w.endStopped() && !fresh {
				continue // stopped while idle; the job never reached it
			}
			res, _ := job.DecodeResult(out)
			return res, status.Timeout.Wrap(fmt.Errorf("%w, killed: %w", err, job.ErrIncomplete))
		}
		if !sent {
			w.kill()
			if !fresh && !errors.Is(err, errWrongWorker) {
				continue // it died while idle; the job never reached it
			}
			return nil, status.Unknown.Wrap(fmt.Errorf("worker: %w", err))
		}
		res, derr := job.DecodeResult(out)
		if err == nil && derr == nil {
			pool.release(w, spare)
			return res, res.Status
		}
		w.kill()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return res, status.Timeout.Wrap(fmt.Errorf("worker killed after %s: %w", timeout, job.ErrIncomplete))
		case errors.Is(derr, job.ErrIncomplete):
			return res, status.Unknown.Wrap(fmt.Errorf("worker ended (%v): %w (stderr: %q)", err, derr, clip([]byte(w.stderr()))))
		case err != nil:
			return nil, status.Unknown.Wrap(fmt.Errorf("worker: %w", err))
		}
		return nil, status.Unknown.Wrap(fmt.Errorf("worker result: %w", derr))
	}
}

// startWarm starts a warm worker for k's user with the system policy on
// its fd 4; k's stamp becomes that of the file the worker was given.
func (a *Agent) startWarm(k *warmKey) (*warm, error) {
	var files []*os.File
	if a.PolicyPath != "" {
		pf, err := os.Open(a.PolicyPath)
		if err != nil {
			return nil, err
		}
		defer pf.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(pf.Fd()), &st); err != nil {
			return nil, err
		}
		k.stamp = stampOf(&st)
		files = []*os.File{pf}
	}
	proc, err := spawn.StartWorker(spawn.Request{
		Exe: a.Exe, Args: []string{"worker", "warm"}, UID: k.uid, GID: k.gid, MinUID: a.MinUID, Files: files,
		TimerSlack: a.TimerSlack,
	})
	if err != nil {
		return nil, err
	}
	conn, err := seqpacket.Parent(proc.Conn)
	if err != nil {
		proc.Kill()
		return nil, err
	}
	return (&warm{key: *k, proc: proc, conn: conn}).openStat(), nil
}

// recover asks a fresh worker, as the same user, to undo what a dead
// worker left, as described by the recover job rj: a partial mbox append
// to cut off, or a Maildir tmp/ file to remove.
func (a *Agent) recover(ctx context.Context, rj *job.Job) {
	if rj.Kind == job.KindProgram {
		return
	}
	for attempt := 1; ; attempt++ {
		st := a.recoverOnce(ctx, rj, attempt)
		if attempt == recoverAttempts || !diedMidway(st) {
			return
		}
	}
}

// recoverAttempts bounds the recovery workers root runs for one record. A
// recovery worker killed in its turn (by the OOM killer, or by its user)
// would leave the partial message in the mailbox until the next delivery
// there cuts it (the append intent), so root tries again at once: the
// recovery finds what is left to undo, if anything, each time.
const recoverAttempts = 3

// diedMidway reports a worker that ended without its answer (killed),
// not one stopped at the time limit, which another attempt would wait
// out again.
func diedMidway(st *status.Status) bool {
	return st != nil && st.Enhanced == status.Unknown.Enhanced && errors.Is(st, job.ErrIncomplete)
}

// recoverOnce runs one recovery worker for rj and logs the outcome.
func (a *Agent) recoverOnce(ctx context.Context, rj *job.Job, attempt int) *status.Status {
	res, st := a.run(ctx, rj, nil)
	level := slog.LevelWarn
	if st == nil || !st.OK() {
		level = slog.LevelError
	}
	// st, not res.Status: a recovery worker that dies in its turn leaves
	// a result without a status. The cause is st's own when root made
	// st, and otherwise the worker's detail: a status read from a result
	// carries no cause.
	detail := ""
	switch {
	case st != nil && st.Cause != nil:
		detail = st.Cause.Error()
	case res != nil:
		detail = res.Detail
	}
	if rj.Recover != nil {
		a.Log.Log(ctx, level, "mbox recovery", "user", rj.User, "offset", rj.Recover.Offset, "status", reply(st), "detail", detail, "attempt", attempt)
	} else {
		a.Log.Log(ctx, level, "maildir recovery", "user", rj.User, "tmp", rj.RecoverTmp, "status", reply(st), "detail", detail, "attempt", attempt)
	}
	return st
}

func (a *Agent) log(r Request, out Outcome, d time.Duration) { logDelivery(a.Log, r, out, d) }

// logDelivery writes the one line of a delivery.
func logDelivery(log *slog.Logger, r Request, out Outcome, d time.Duration) {
	st := out.Status
	user := "" // no user: refused with 550 5.1.1 before anything ran
	if r.User != nil {
		user = r.User.Name
	}
	// slog.Attr values, not ...any: a string or number costs no
	// allocation of its own to pass (this line is on every delivery).
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs, slog.String("user", user), slog.String("sender", r.Sender), slog.String("recipient", r.Recipient),
		slog.String("status", reply(st)), slog.Int64("size", r.Size), slog.Float64("duration_ms", float64(d.Microseconds())/1000))
	attrs = appendOutcome(attrs, out, "dest")
	level := slog.LevelInfo
	if st == nil || !st.OK() {
		level = slog.LevelWarn
	}
	msg := "delivery"
	switch r.Mode {
	case job.ModeExplain:
		msg = "explain"
	case job.ModeEnvelope:
		msg = "rcpt-sieve" // an envelope-only evaluation, nothing delivered
	case job.ModeFilter:
		msg = "filter-only" // actions reported, nothing delivered
	}
	log.LogAttrs(context.Background(), level, msg, attrs...)
}

// OutcomeAttrs is what a delivery's log line says of its outcome, for a
// caller that logs it in its own line (Request.Quiet): where the message
// went ("where"), the policy rule, and the worker's detail and warning.
func OutcomeAttrs(out Outcome) []slog.Attr { return appendOutcome(nil, out, "where") }

func appendOutcome(attrs []slog.Attr, out Outcome, whereKey string) []slog.Attr {
	st := out.Status
	if res := out.Result; res != nil {
		attrs = append(attrs, slog.String(whereKey, res.Where), slog.String("rule", res.Rule))
		if res.Detail != "" {
			attrs = append(attrs, slog.String("detail", res.Detail))
		} else if st != nil && st.Cause != nil {
			attrs = append(attrs, slog.String("detail", st.Cause.Error())) // a worker that died says nothing
		}
		if res.Warning != "" {
			attrs = append(attrs, slog.String("warning", res.Warning))
		}
	} else if st != nil && st.Cause != nil {
		attrs = append(attrs, slog.String("detail", st.Cause.Error()))
	}
	return attrs
}

func reply(st *status.Status) string {
	if st == nil {
		return "none"
	}
	return strconv.Itoa(st.Code) + " " + st.Enhanced
}

func clip(b []byte) string {
	if len(b) > 300 {
		b = b[:300]
	}
	return string(b)
}

func devNull() *os.File {
	f, err := os.Open(os.DevNull)
	if err != nil {
		panic(err)
	}
	return f
}
