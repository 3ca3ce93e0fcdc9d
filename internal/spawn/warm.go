package spawn

import (
	"fmt"
	"os"
	"os/exec"

	"lda/internal/seqpacket"
)

// Proc is a long-lived worker for one user (a warm worker): the same
// binary under the same rules as Run, but talking over a SOCK_SEQPACKET
// socket on its descriptor 3 instead of standard input and output, so that
// it can serve several deliveries one after another. (The parent then
// splits the channel: seqpacket.Parent sends the worker its reply socket
// over this one.)
type Proc struct {
	Pid  int
	Conn *os.File      // the parent's end of the socketpair
	Done chan struct{} // closed once the process has been reaped

	cmd    *exec.Cmd
	stderr *LimitedBuffer
}

// StartWorker starts a warm worker as r.UID/r.GID with the socket as
// descriptor 3 and r.Files as 4, 5, ... Stdin and Stdout are /dev/null.
// When the process ends, whatever is left in its process group is killed.
func StartWorker(r Request) (*Proc, error) {
	attr, err := credential(r)
	if err != nil {
		return nil, err
	}
	mine, theirs, err := seqpacket.Pair()
	if err != nil {
		return nil, fmt.Errorf("spawn: socketpair: %w", err)
	}
	defer theirs.Close()
	cmd := exec.Command(r.Exe, r.Args...)
	cmd.Env = []string{}
	cmd.Dir = "/"
	cmd.SysProcAttr = attr
	cmd.ExtraFiles = append([]*os.File{theirs}, r.Files...)
	stderr := &LimitedBuffer{Max: MaxStderr}
	cmd.Stderr = stderr
	if err := StartWithSlack(r.TimerSlack, cmd.Start); err != nil {
		mine.Close()
		return nil, fmt.Errorf("spawn: start worker: %w", err)
	}
	p := &Proc{Pid: cmd.Process.Pid, Conn: mine, Done: make(chan struct{}), cmd: cmd, stderr: stderr}
	if r.Started != nil {
		r.Started(p.Pid)
	}
	go func() {
		cmd.Wait()
		_ = killGroup(p.Pid)
		close(p.Done)
	}()
	return p, nil
}

// Kill kills the worker's process group. It is safe to call more than once
// and after the worker has ended.
func (p *Proc) Kill() {
	select {
	case <-p.Done:
	default:
		_ = killGroup(p.Pid)
	}
}

// Stderr returns the first MaxStderr bytes the worker wrote to standard
// error; only meaningful once Done is closed.
func (p *Proc) Stderr() string {
	select {
	case <-p.Done:
		return p.stderr.String()
	default:
		return ""
	}
}
