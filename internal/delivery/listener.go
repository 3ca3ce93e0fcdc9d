package delivery

import (
	"context"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/affinity"
	"lda/internal/job"
	"lda/internal/seqpacket"
	"lda/internal/status"
)

// Direct is the listener's side of direct delivery. Root starts a warm
// worker as the user and binds it to that user before handing its socket
// over (Agent.StartDirect); from then on the listener gives it that
// user's jobs itself, and root is out of the path. The listener keeps the
// workers in a Pool exactly as root keeps its own: one user per worker,
// bounded, least recently used first out, replaced after MaxDeliveries
// jobs or when the system policy file changes. It cannot kill or reap a
// worker (root is its parent): End asks root to, and returns once root
// has, mbox recovery included.
type Direct struct {
	Pool       *Pool
	PolicyPath string // "" for the embedded policy; stat'ed before every job
	SieveDir   string
	Headers    bool
	Timeout    time.Duration
	Gather     *Gatherer // nil: never gathers
	Log        *slog.Logger
	// Start asks root for a direct worker of user: its reply (with the
	// bind record) and the worker's socket. End asks root to end worker
	// id and returns once root has.
	Start func(user string) (*job.Reply, *os.File)
	End   func(user string, id uint64)
}

// Deliver performs r through a direct worker and logs it (unless
// r.Quiet: then the caller does, with OutcomeAttrs). ok is false
// when root would not start one (it runs as many as it allows, or the
// configuration has warm workers off): the caller then asks root to
// deliver instead.
func (d *Direct) Deliver(ctx context.Context, r Request) (out Outcome, ok bool) {
	start := time.Now()
	if r.User == nil {
		out = Outcome{Status: status.UnknownUser}
	} else if out, ok = d.deliver(ctx, r); !ok {
		return out, false
	}
	if !r.Quiet {
		logDelivery(d.Log, r, out, time.Since(start))
	}
	return out, true
}

// stamp describes the system policy file now (the zero stamp for the
// embedded policy, or if it cannot be stat'ed): a job's key, matched
// against the stamp root reported for each worker.
func (d *Direct) stamp() policyStamp {
	var st unix.Stat_t
	if d.PolicyPath == "" || unix.Stat(d.PolicyPath, &st) != nil {
		return policyStamp{}
	}
	return stampOf(&st)
}

// isBusy reports whether st is root's answer when it runs as many workers
// as it allows.
func isBusy(st *status.Status) bool {
	return st != nil && st.Code == status.Busy.Code && st.Enhanced == status.Busy.Enhanced
}

// startWorker asks root for a direct worker of user. The worker is keyed
// by what root bound it to, which is what its jobs must say, and by the
// policy file root gave it (rep.Stamp), which may be newer than the job's
// key: then the job that started it still goes to it (onWarm uses the
// worker's own key), and later jobs find it under the newer stamp.
func (d *Direct) startWorker(name string) (*warm, *status.Status) {
	rep, sock := d.Start(name)
	if !rep.Status.OK() {
		if sock != nil {
			sock.Close()
		}
		return nil, rep.Status
	}
	b := rep.Bind
	if sock == nil || b == nil {
		if sock != nil {
			sock.Close()
		}
		return nil, status.Unknown.Wrapf("root started a worker without a socket or bind record")
	}
	conn, err := seqpacket.Parent(sock)
	if err != nil {
		return nil, status.Unknown.Wrap(err)
	}
	id, user := rep.Worker, b.User
	wk := warmKey{uid: b.UID, gid: b.GID, user: b.User, home: b.Home, policy: b.Policy, stamp: rep.Stamp}
	w := &warm{key: wk, conn: conn, remote: &remote{id: id, pid: rep.Pid, end: func() { d.End(user, id) }}}
	return w.openStat(), nil
}

func (d *Direct) deliver(ctx context.Context, r Request) (Outcome, bool) {
	pol := d.PolicyPath
	if pol == "" {
		pol = "embedded"
	}
	k := warmKey{uid: r.User.UID, gid: r.User.GID, user: r.User.Name, home: r.User.Home, policy: pol, stamp: d.stamp()}
	mode := r.Mode
	if mode == "" {
		mode = job.ModeDeliver
	}
	cpu := d.Gather.begin()
	defer d.Gather.end()
	encode := func(wk warmKey, buf []byte) ([]byte, error) {
		j := &job.Job{
			Mode: mode, User: wk.user, UID: wk.uid, GID: wk.gid, Home: wk.home,
			Kind: r.Kind, Path: r.Path, Folder: r.Folder, Program: r.Program,
			Sender: r.Sender, Recipient: r.Recipient, Headers: d.Headers, Received: r.Received,
			Policy: wk.policy, SieveDir: d.SieveDir, Size: r.Size,
		}
		if cpu != affinity.Spread && (mode == job.ModeDeliver || mode == job.ModeFilter || mode == job.ModeEnvelope) {
			j.Gather, j.CPU = true, cpu
		}
		return j.AppendEncode(buf)
	}
	busy := false
	start := func() (*warm, *status.Status) {
		w, st := d.startWorker(r.User.Name)
		busy = isBusy(st)
		return w, st
	}
	// The spare's starter is made only when one is due: it runs in a
	// goroutine of its own, a whole job or more later, and must hold
	// nothing of this job's (nor make r live on the heap for every job).
	spare := func() starter {
		dd, user := d, r.User.Name
		return func() (*warm, *status.Status) {
			w, st := dd.startWorker(user)
			warnSpare(dd.Log, user, st)
			return w, st
		}
	}
	res, st := onWarm(ctx, d.Pool, k, start, spare, encode, r.Message, d.Timeout)
	if busy {
		return Outcome{}, false
	}
	return Outcome{Status: st, Result: res}, true
}
