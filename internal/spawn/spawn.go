// Package spawn starts one per-delivery worker: our own binary, re-executed
// as the destination user. It is the only code in lda that names
// syscall.Credential; a test guards that no other file changes credentials.
//
// Security: the caller is trusted only to have looked the user up. Spawn
// itself refuses uid 0, gid 0 and uids below the minimum; when not running as
// root it refuses any uid but its own. The child gets setgroups([]) (no
// supplementary groups), setgid, setuid (done by the kernel side of
// fork/exec, in that order, on the single child thread), a new session
// and process group, an empty environment, "/" as its directory, the
// timer slack in Request.TimerSlack, and only the descriptors named in
// Request.Files (as 3, 4, ...). Go opens every
// other descriptor close-on-exec, so nothing else is inherited. On timeout
// or cancellation the whole process group is killed.
package spawn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Request describes one worker.
type Request struct {
	Exe     string // our own binary
	Args    []string
	UID     int
	GID     int
	MinUID  int
	Stdin   []byte     // the job record
	Files   []*os.File // inherited as fd 3, 4, ...
	Timeout time.Duration
	// Started, if set, is called with the worker's pid once it runs.
	Started func(pid int)
	// Stderr, for Start only, replaces the parent's standard error as the
	// child's standard output and error.
	Stderr *os.File
	// TimerSlack is the child's timer slack (see DefaultTimerSlack); 0
	// leaves it the parent's.
	TimerSlack time.Duration
}

// Output is what the worker wrote and how it ended.
type Output struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int  // -1 when killed by a signal
	TimedOut bool // killed because Timeout passed
}

// MaxStdout and MaxStderr bound what is read from a worker.
const (
	MaxStdout = 64 << 10
	MaxStderr = 8 << 10
)

// ErrRefused is returned for a request spawn will not run.
var ErrRefused = errors.New("spawn: refused")

// credential checks r and returns the child's process attributes.
func credential(r Request) (*syscall.SysProcAttr, error) {
	if r.UID <= 0 || r.GID <= 0 {
		return nil, fmt.Errorf("%w: uid %d gid %d is privileged", ErrRefused, r.UID, r.GID)
	}
	if r.UID < r.MinUID {
		return nil, fmt.Errorf("%w: uid %d below minimum %d", ErrRefused, r.UID, r.MinUID)
	}
	attr := &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if me := os.Getuid(); me == 0 {
		attr.Credential = &syscall.Credential{Uid: uint32(r.UID), Gid: uint32(r.GID), Groups: []uint32{}}
	} else if me != r.UID {
		return nil, fmt.Errorf("%w: cannot run as uid %d without root", ErrRefused, r.UID)
	}
	return attr, nil
}

// Start starts a long-lived child (the LMTP listener) under the same rules
// as a worker: never root, an empty environment, only Files inherited.
// Stdin is not used; standard output and error go to the parent's
// standard error. The caller waits for it.
func Start(r Request) (*exec.Cmd, error) {
	attr, err := credential(r)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(r.Exe, r.Args...)
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.SysProcAttr = attr
	cmd.ExtraFiles = r.Files
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if r.Stderr != nil {
		cmd.Stdout, cmd.Stderr = r.Stderr, r.Stderr
	}
	if err := StartWithSlack(r.TimerSlack, cmd.Start); err != nil {
		return nil, fmt.Errorf("spawn: start: %w", err)
	}
	return cmd, nil
}

// Run starts the worker, feeds it Stdin, and waits for it.
func Run(ctx context.Context, r Request) (*Output, error) {
	attr, err := credential(r)
	if err != nil {
		return nil, err
	}
	if r.Timeout <= 0 {
		r.Timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, r.Exe, r.Args...)
	cmd.Env = []string{} // never inherit the parent's environment
	cmd.Dir = "/"
	cmd.SysProcAttr = attr
	cmd.ExtraFiles = r.Files
	cmd.Stdin = bytes.NewReader(r.Stdin)
	stdout, stderr := LimitedBuffer{Max: MaxStdout}, LimitedBuffer{Max: MaxStderr}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 2 * time.Second

	if err := StartWithSlack(r.TimerSlack, cmd.Start); err != nil {
		return nil, fmt.Errorf("spawn: start worker: %w", err)
	}
	pid := cmd.Process.Pid
	if r.Started != nil {
		r.Started(pid)
	}
	err = cmd.Wait()
	// Whatever the worker left behind in its group (a delivery program's
	// children) does not outlive it.
	_ = killGroup(pid)
	out := &Output{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: cmd.ProcessState.ExitCode()}
	if ctx.Err() == context.DeadlineExceeded {
		out.TimedOut = true
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) && !errors.Is(err, exec.ErrWaitDelay) {
		return out, fmt.Errorf("spawn: wait: %w", err)
	}
	return out, nil
}

func killGroup(pid int) error {
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// LimitedBuffer keeps the first Max bytes written to it and discards the
// rest, so that a runaway child (a worker, a delivery program, a redirect
// command) cannot grow its parent's memory.
type LimitedBuffer struct {
	bytes.Buffer
	Max int
}

func (b *LimitedBuffer) Write(p []byte) (int, error) {
	if room := b.Max - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}

var _ io.Writer = (*LimitedBuffer)(nil)
