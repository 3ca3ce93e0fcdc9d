package worker

import (
	"errors"
	"io"
	"os"

	"lda/internal/job"
	"lda/internal/seqpacket"
	"lda/internal/status"
	"lda/policy"
)

// MainWarm runs a warm worker: the jobs of one user, one after another,
// over the SOCK_SEQPACKET socket on fd 3 (the system policy is on fd 4).
// Each job is a packet carrying the message descriptor; the worker answers
// with zero or more progress packets and then one result packet. It binds
// itself to the user, uid, gid, home and policy of its first job and
// refuses, then exits on, any job for another: the pool must never hand it
// one, and the test suite tries. It exits when the parent closes the
// socket.
func MainWarm() int {
	if err := harden(); err != nil {
		return 1
	}
	if rootCredentials() {
		return 1
	}
	conn, err := seqpacket.New(os.NewFile(3, "worker"))
	if err != nil {
		return 1
	}
	defer conn.Close()
	if conn.AcceptReply() != nil { // the socket to answer on
		return 1
	}
	var (
		bound *job.Job
		sys   *policy.System
	)
	for {
		rec, f, err := recvJob(conn)
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil {
			return 1
		}
		res, stop := warmJob(rec, f, &bound, &sys, conn)
		if f != nil {
			f.Close()
		}
		if conn.Send(resultBody(res), nil) != nil || stop {
			return 1
		}
	}
}

// warmJob decodes and admits one job and runs it. stop is set when the
// worker must not serve another job (a record it cannot trust, or a job
// that left a Sieve run behind).
func warmJob(rec []byte, f *os.File, bound **job.Job, sys **policy.System, conn *seqpacket.Conn) (res *job.Result, stop bool) {
	j, err := job.Decode(rec)
	if err != nil {
		return &job.Result{Status: status.Unknown.Wrap(err)}, true
	}
	if st := mine(j); st != nil {
		return &job.Result{Status: st}, true
	}
	if b := *bound; b != nil {
		if j.User != b.User || j.Home != b.Home || j.Policy != b.Policy {
			return &job.Result{Status: status.Unknown.Wrapf("worker: job for user %q given to the worker of %q", j.User, b.User)}, true
		}
	} else {
		s, err := loadSystem(j.Policy)
		if err != nil {
			return &job.Result{Status: status.ConfigError.Wrap(err)}, true
		}
		*bound, *sys = j, s
	}
	t := &task{Job: j, msg: f, progress: func(p job.Progress) {
		if err := conn.Send(job.EncodeProgress(p), nil); err != nil {
			progressLost(err)
		}
	}}
	res = execute(*sys, t)
	return res, t.retiring()
}
