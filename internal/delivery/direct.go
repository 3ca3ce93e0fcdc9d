package delivery

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"lda/internal/job"
	"lda/internal/spawn"
	"lda/internal/status"
	"lda/internal/userdb"
)

// DirectWorker is a direct worker as root sees it: a warm worker that
// root started as one user and bound to that user with a bind record,
// and whose socket it handed to the listener. Root is out of the path of
// its jobs; it keeps the process (to reap and, if asked, kill it) and the
// recovery record the worker writes before an mbox append (to cut a
// partial message off after the worker's death).
type DirectWorker struct {
	Bind  *job.Job
	Pid   int
	Stamp job.Stamp // the system policy file it was given, as root opened it (zero: embedded)

	proc  *spawn.Proc
	rec   *os.File      // memfd, read after the worker has ended
	ended chan struct{} // closed once reaped and recovered
}

// StartDirect starts a direct worker for u. It returns the worker and the
// end of its socket that goes to the listener; the bind record is already
// queued on it, ahead of anything the listener can send.
func (a *Agent) StartDirect(u *userdb.User) (*DirectWorker, *os.File, error) {
	if st := a.admit(u); st != nil {
		return nil, nil, st
	}
	pol := a.PolicyPath
	if pol == "" {
		pol = "embedded"
	}
	bind := &job.Job{Mode: job.ModeBind, User: u.Name, UID: u.UID, GID: u.GID, Home: u.Home,
		Kind: job.KindDefault, Policy: pol, SieveDir: a.SieveDir}
	rec, err := bind.Encode()
	if err != nil {
		return nil, nil, status.Usage.Wrap(err)
	}
	mem, err := newRecoveryFile()
	if err != nil {
		return nil, nil, status.Unknown.Wrap(err)
	}
	files := []*os.File{mem}
	var stamp job.Stamp
	if a.PolicyPath != "" {
		pf, err := os.Open(a.PolicyPath)
		if err != nil {
			mem.Close()
			return nil, nil, status.ConfigError.Wrap(err)
		}
		defer pf.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(pf.Fd()), &st); err != nil {
			mem.Close()
			return nil, nil, status.ConfigError.Wrap(err)
		}
		stamp = stampOf(&st)
		files = append(files, pf)
	}
	proc, err := spawn.StartWorker(spawn.Request{
		Exe: a.Exe, Args: []string{"worker", "direct"}, UID: u.UID, GID: u.GID, MinUID: a.MinUID, Files: files,
		TimerSlack: a.TimerSlack,
	})
	if err != nil {
		mem.Close()
		if errors.Is(err, spawn.ErrRefused) {
			return nil, nil, status.PolicyRefused.Wrap(err)
		}
		return nil, nil, status.Unknown.Wrap(err)
	}
	w := &DirectWorker{Bind: bind, Pid: proc.Pid, Stamp: stamp, proc: proc, rec: mem, ended: make(chan struct{})}
	if _, err := unix.Write(int(proc.Conn.Fd()), rec); err != nil {
		proc.Conn.Close()
		proc.Kill()
		go a.watchDirect(w)
		return nil, nil, status.Unknown.Wrap(fmt.Errorf("bind record: %w", err))
	}
	go a.watchDirect(w)
	return w, proc.Conn, nil
}

// newRecoveryFile makes a direct worker's recovery file: a memfd of
// job.RecoverySize bytes with no record, sealed so that no one can grow or
// shrink it (the worker maps it; a shorter file would fault).
func newRecoveryFile() (*os.File, error) {
	mfd, err := unix.MemfdCreate("lda-recovery", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	mem := os.NewFile(uintptr(mfd), "lda-recovery")
	if err := mem.Truncate(job.RecoverySize); err != nil {
		mem.Close()
		return nil, err
	}
	if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		mem.Close()
		return nil, fmt.Errorf("sealing the recovery file: %w", err)
	}
	return mem, nil
}

// Ended is closed once the worker has been reaped and any partial mbox
// append it recorded has been dealt with.
func (w *DirectWorker) Ended() <-chan struct{} { return w.ended }

// Kill kills the worker (if it still runs); Ended follows.
func (w *DirectWorker) Kill() { w.proc.Kill() }

// watchDirect waits for w to end, then reads its recovery record and, if
// an mbox append or a Maildir delivery was in progress, has a fresh worker
// of the same user cut the partial message off or remove the tmp/ file.
func (a *Agent) watchDirect(w *DirectWorker) {
	defer close(w.ended)
	defer w.rec.Close()
	<-w.proc.Done
	rj, err := job.ReadRecovery(w.rec)
	if err != nil {
		a.Log.Error("direct worker left a bad recovery record", "user", w.Bind.User, "pid", w.Pid, "error", err.Error())
		return
	}
	if msg := w.proc.Stderr(); msg != "" {
		a.Log.Warn("direct worker", "user", w.Bind.User, "pid", w.Pid, "stderr", clip([]byte(msg)))
	}
	if rj == nil {
		return
	}
	b := w.Bind
	if rj.User != b.User || rj.UID != b.UID || rj.GID != b.GID || rj.Home != b.Home || rj.Policy != b.Policy {
		a.Log.Error("direct worker's recovery record names another user; ignored", "user", b.User, "pid", w.Pid, "named", rj.User)
		return
	}
	a.recover(context.Background(), rj)
}
