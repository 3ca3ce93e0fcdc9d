package worker

import (
	"errors"
	"io"
	"os"

	"lda/internal/affinity"
	"lda/internal/job"
	"lda/internal/seqpacket"
	"lda/internal/status"
	"lda/policy"
)

// Descriptors of a direct worker.
const (
	directSocket   = 3 // SOCK_SEQPACKET: root's bind record, the listener's reply socket, then its jobs
	directRecovery = 4 // root's memfd: the recover job for an mbox append or a tmp/ file in progress
	directPolicy   = 5 // the system policy (absent for the embedded one)
)

// MainDirect runs a direct worker. Root starts it as one user, writes a
// bind record (job.ModeBind) on the socket on fd 3 and only then hands
// the other end to the unprivileged listener, which sends it jobs. So the
// first record can only be root's: the worker takes its user, uid, gid,
// home, system policy and Sieve directory from it, for life, and refuses
// (and exits on) any later job that names anything else, any later bind,
// and any recover job (only root may ask for one, from the record below).
//
// Before an mbox append starts, or a Maildir file is created in tmp/, the
// worker writes the recover job that would undo it into the recovery
// record on fd 4, a memfd that only root reads, after the worker's death;
// it clears the record before it answers. The listener never carries
// that record, so it cannot ask root to truncate or remove anything.
func MainDirect() int {
	if err := harden(); err != nil {
		return 1
	}
	if rootCredentials() {
		return 1
	}
	affinity.Start()
	conn, err := seqpacket.New(os.NewFile(directSocket, "worker"))
	if err != nil {
		return 1
	}
	defer conn.Close()
	recf := os.NewFile(directRecovery, "recovery")
	rec, err := job.MapRecovery(recf)
	if err != nil {
		os.Stderr.WriteString("worker: " + err.Error() + "\n")
		return 1
	}
	recf.Close() // the mapping keeps the file
	pkt, f, err := conn.Recv()
	if err != nil || f != nil {
		return 1
	}
	bind, err := job.Decode(pkt)
	if err != nil || bind.Mode != job.ModeBind || mine(bind) != nil {
		return 1
	}
	// The listener's first record: the socket this worker answers on.
	if conn.AcceptReply() != nil {
		return 1
	}
	sys, err := loadSystemFrom(bind.Policy, directPolicy)
	if err != nil {
		// The listener learns of it as a worker that ended before its
		// first job; root logs what it wrote here.
		os.Stderr.WriteString("worker: " + err.Error() + "\n")
		return 1
	}
	r := &replier{rec: rec, send: func(b []byte) error { return conn.Send(b, nil) }}
	for {
		pkt, f, err := recvJob(conn)
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil {
			return 1
		}
		if r.serve(pkt, f, bind, sys) {
			return 1
		}
	}
}

// replier answers a direct worker's jobs, each exactly once, with the
// recovery record cleared first: root must never undo what was answered.
type replier struct {
	rec  *job.Recovery
	send func([]byte) error
	out  []byte            // the result, one buffer for the worker's life
	sent bool              // the job's result is sent
	err  error             // the send's
	fn   func(*job.Result) // answer, made once: a method value per job would be an allocation
}

// serve runs one job (its message f, if any, closed after it) and makes
// sure it is answered: by the job itself, early (an mbox delivery, once
// its message is on stable storage, before it unlocks), or after it. It
// reports whether the worker must stop: a record it cannot trust, or an
// answer it could not send.
func (r *replier) serve(pkt []byte, f *os.File, bind *job.Job, sys *policy.System) (stop bool) {
	r.sent, r.err = false, nil
	if r.fn == nil {
		r.fn = r.answer
	}
	res, stop := directJob(pkt, f, bind, sys, r.rec, r.fn)
	if f != nil {
		f.Close()
	}
	if !r.sent {
		r.answer(res)
	}
	return stop || r.err != nil
}

// answer clears the recovery record and sends res.
func (r *replier) answer(res *job.Result) {
	r.rec.Clear()
	r.out = appendResult(r.out[:0], res)
	r.err, r.sent = r.send(r.out), true
}

// directJob admits one job from the listener and runs it. stop is set
// when the worker must not serve another (a record it cannot trust).
func directJob(pkt []byte, f *os.File, bind *job.Job, sys *policy.System, rec *job.Recovery, answer func(*job.Result)) (res *job.Result, stop bool) {
	j, err := job.Decode(pkt)
	if err != nil {
		return &job.Result{Status: status.Unknown.Wrap(err)}, true
	}
	if st := admitDirect(j, bind); st != nil {
		return &job.Result{Status: st}, true
	}
	if j.Mode != job.ModeEnvelope || f != nil {
		if st := checkMessage(f); st != nil {
			return &job.Result{Status: st}, true
		}
	}
	gather(j)
	t := &task{Job: j, msg: f, progress: func(p job.Progress) {
		r := recoverOf(j)
		r.Recover = &p
		if err := rec.Set(&r); err != nil {
			progressLost(err)
		}
	}, creating: func(folder, tmp string) error {
		r := recoverOf(j)
		r.Folder, r.RecoverTmp = folder, tmp
		return rec.Set(&r)
	}, answer: answer}
	res = execute(sys, t)
	return res, t.retiring()
}

// recoverOf returns the recover job for j, for the recovery record (its
// Recover or RecoverTmp still to be set): root's to run, so it carries
// nothing of the listener's gathering.
func recoverOf(j *job.Job) job.Job {
	r := *j
	r.Mode, r.Gather, r.CPU = job.ModeRecover, false, 0
	return r
}

// gather runs the worker where the listener asks (job.Job.Gather): on the
// CPU the listener is gathered on, or spread. A CPU outside the worker's
// starting mask leaves it spread (affinity.Set).
func gather(j *job.Job) {
	cpu := affinity.Spread
	if j.Gather {
		cpu = j.CPU
	}
	affinity.Set(cpu)
}

// admitDirect checks that j is a job the listener may give: a delivery,
// filter or envelope job of the bound user, home, policy and Sieve
// directory.
func admitDirect(j, bind *job.Job) *status.Status {
	switch j.Mode {
	case job.ModeDeliver, job.ModeFilter, job.ModeEnvelope:
	default:
		return status.Unknown.Wrapf("worker: the listener may not ask for a %s job", j.Mode)
	}
	if j.User != bind.User || j.UID != bind.UID || j.GID != bind.GID || j.Home != bind.Home ||
		j.Policy != bind.Policy || j.SieveDir != bind.SieveDir {
		return status.Unknown.Wrapf("worker: job for user %q given to the worker of %q", j.User, bind.User)
	}
	return nil
}

// checkMessage checks the message descriptor (job.CheckMessage): one
// that no one can change the message through, so that this worker cannot
// change what the workers of the message's other recipients read.
func checkMessage(f *os.File) *status.Status {
	if f == nil {
		return status.Unknown.Wrapf("worker: job without a message descriptor")
	}
	if err := job.CheckMessage(int(f.Fd())); err != nil {
		return status.Unknown.Wrapf("worker: %v", err)
	}
	return nil
}

// progressLost ends a worker that could not record where its mbox append
// starts: without that record a death mid-append could not be undone, so
// it is better not to append at all. Whoever waits for the job sees a
// worker that died holding it (4xx); root logs this line.
func progressLost(err error) {
	os.Stderr.WriteString("worker: cannot record the append's progress: " + err.Error() + "\n")
	os.Exit(1)
}
