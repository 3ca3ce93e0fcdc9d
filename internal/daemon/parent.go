package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/delivery"
	"lda/internal/job"
	"lda/internal/spawn"
	"lda/internal/status"
	"lda/internal/userdb"
	"lda/policy"
)

// Descriptors of the listener.
const (
	fdControl    = 3
	fdConfig     = 4
	fdPolicy     = 5
	fdUnix       = 6
	fdTCP        = 7
	fdPolicySock = 8
)

// Parent is the root process of `lda serve`.
type Parent struct {
	Exe string
	Log *slog.Logger
	// LogFile is the log file, when the log goes to one; the listener
	// writes its lines to it too (as its standard error). LogSyslog tells
	// the listener to log to syslog itself, LogNone to log nothing.
	LogFile   *os.File
	LogSyslog bool
	LogNone   bool

	mu       sync.Mutex
	cfg      *Config
	agent    *delivery.Agent
	unixL    *os.File
	tcpL     *os.File
	policyL  *os.File
	listener *exec.Cmd
	retired  []retiredListener // replaced by a reload, still serving their sessions
	ctl      *channel
}

type retiredListener struct {
	cmd  *exec.Cmd
	done chan error
}

// Serve runs the parent until SIGTERM (drain and exit) or the listener's
// death. SIGHUP reloads: a new configuration that loads replaces the
// listener (the old one drains); one that does not is logged and ignored.
func (p *Parent) Serve(cfgPath string) error {
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	if me := os.Getuid(); me != 0 {
		// Single-user mode: without root nothing can change credentials,
		// so the listener and every worker run as the invoking user, and
		// only that user's mail can be delivered (spawn refuses others).
		lu, err := userdb.Lookup(cfg.SystemDB(), cfg.ListenerUser)
		if err != nil || lu.UID != me {
			return fmt.Errorf("%s: started without root, lda serve runs as the invoking user only: listener_user must be that user (uid %d)", cfg.File, me)
		}
	}
	if err := p.configure(cfg); err != nil {
		return err
	}
	if err := p.bind(); err != nil {
		return err
	}
	done, err := p.startListener()
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				p.reload(cfgPath, &done)
				continue
			}
			p.Log.Info("draining", "signal", s.String())
			p.mu.Lock()
			all := append([]retiredListener{{p.listener, done}}, p.retired...)
			p.mu.Unlock()
			for _, r := range all {
				r.cmd.Process.Signal(syscall.SIGTERM)
			}
			deadline := time.After(p.cfg.DeliveryTime + time.Minute)
			for _, r := range all {
				select {
				case <-r.done:
				case <-deadline:
					r.cmd.Process.Kill()
				}
			}
			p.cleanup()
			p.closePool()
			return nil
		case err := <-done:
			p.closePool()
			p.cleanup()
			return fmt.Errorf("listener exited: %v", err)
		}
	}
}

// configure checks cfg and builds the delivery agent from it.
func (p *Parent) configure(cfg *Config) error {
	var sys *policy.System
	polPath := cfg.Policy
	if polPath == "embedded" {
		sys, polPath = policy.Default(), ""
	} else {
		var err error
		if sys, err = policy.LoadSystem(polPath); err != nil {
			return err
		}
	}
	if _, err := userdb.Lookup(cfg.SystemDB(), cfg.ListenerUser); err != nil {
		return fmt.Errorf("%s: listener_user %q: %v", cfg.File, cfg.ListenerUser, err)
	}
	agent := &delivery.Agent{Exe: p.Exe, PolicyPath: polPath, SieveDir: cfg.SieveDir, MinUID: sys.MinUID, Timeout: cfg.DeliveryTime,
		TimerSlack: cfg.WorkerSlack(), Log: p.Log}
	if cfg.Workers.MaxIdle > 0 {
		agent.Pool = delivery.NewPool(delivery.PoolConfig{
			MaxIdle: cfg.Workers.MaxIdle, IdleTime: cfg.Workers.IdleTime, MaxDeliveries: cfg.Workers.MaxDeliveries,
		})
	}
	p.mu.Lock()
	old := p.agent
	p.cfg, p.agent = cfg, agent
	p.mu.Unlock()
	if old != nil && old.Pool != nil {
		// A reload restarts the workers: idle ones stop now, busy ones
		// when their job ends (a closed pool keeps nothing).
		old.Pool.Close()
	}
	return nil
}

// keepRestartOnly copies into next the settings that were applied once, at
// start-up, and that a reload therefore cannot change: the sockets (bound
// by root before the first listener), the listener user and its spool
// directory (made for that user then), and the log (opened then). It
// returns the keys whose values differed, for the log.
func keepRestartOnly(running, next *Config) (kept []string) {
	if running == nil {
		return nil
	}
	keep := func(key string, changed bool) {
		if changed {
			kept = append(kept, key)
		}
	}
	keep("socket", next.Socket != running.Socket)
	keep("socket_mode", next.SocketMode != running.SocketMode)
	keep("socket_group", next.SocketGroup != running.SocketGroup)
	keep("tcp", next.TCP != running.TCP)
	keep("policy_socket", next.PolicySocket != running.PolicySocket)
	keep("listener_user", next.ListenerUser != running.ListenerUser)
	keep("spool_dir", next.SpoolDir != running.SpoolDir)
	keep("log", next.Log != running.Log)
	next.Socket, next.SocketMode, next.SocketGroup = running.Socket, running.SocketMode, running.SocketGroup
	next.TCP, next.PolicySocket = running.TCP, running.PolicySocket
	next.ListenerUser, next.SpoolDir, next.Log = running.ListenerUser, running.SpoolDir, running.Log
	return kept
}

// bind creates the sockets (or takes the Unix socket from systemd) and the
// listener's spool directory.
func (p *Parent) bind() error {
	cfg := p.cfg
	lu, err := userdb.Lookup(cfg.SystemDB(), cfg.ListenerUser)
	if err != nil {
		return err
	}
	if err := makeOwnedDir(cfg.SpoolDir, lu.UID, lu.GID); err != nil {
		return fmt.Errorf("spool_dir: %w", err)
	}
	if f := systemdSocket(); f != nil {
		p.unixL = f
		p.Log.Info("listening", "socket", "systemd")
	} else if cfg.Socket != "" {
		if p.unixL, err = bindUnix(cfg, cfg.Socket); err != nil {
			return err
		}
		p.Log.Info("listening", "socket", cfg.Socket, "mode", cfg.SocketMode, "group", cfg.SocketGroup)
	}
	if cfg.PolicySocket != "" {
		if p.policyL, err = bindUnix(cfg, cfg.PolicySocket); err != nil {
			return err
		}
		p.Log.Info("policy service listening", "socket", cfg.PolicySocket)
	}
	if cfg.TCP != "" {
		l, err := net.Listen("tcp", cfg.TCP)
		if err != nil {
			return err
		}
		if p.tcpL, err = l.(*net.TCPListener).File(); err != nil {
			return err
		}
		l.Close()
		p.Log.Warn("listening on TCP: peers are NOT authenticated", "tcp", cfg.TCP)
	}
	return nil
}

// bindUnix creates the Unix socket path with the configured mode and
// group (the owner is root, or the invoking user in single-user mode).
func bindUnix(cfg *Config, path string) (*os.File, error) {
	os.MkdirAll(filepath.Dir(path), 0o755)
	var st unix.Stat_t
	if unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		os.Remove(path)
	}
	old := syscall.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	l.SetUnlinkOnClose(false)
	mode, _ := cfg.Mode()
	gid := -1
	if cfg.SocketGroup != "" {
		if gid, err = lookupGroup(cfg.SocketGroup); err != nil {
			return nil, fmt.Errorf("socket_group: %w", err)
		}
	}
	owner := 0
	if os.Getuid() != 0 {
		owner = -1 // single-user mode: the socket stays the invoker's
	}
	if err := os.Chown(path, owner, gid); err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		return nil, err
	}
	return l.File()
}

// startListener re-executes lda as the listener user and serves its
// requests until it exits; the returned channel reports that exit.
func (p *Parent) startListener() (chan error, error) {
	cfg := p.cfg
	lu, err := userdb.Lookup(cfg.SystemDB(), cfg.ListenerUser)
	if err != nil {
		return nil, err
	}
	cf, err := os.Open(cfg.File)
	if err != nil {
		return nil, err
	}
	defer cf.Close()
	var pf *os.File
	if cfg.Policy != "embedded" {
		if pf, err = os.Open(cfg.Policy); err != nil {
			return nil, err
		}
		defer pf.Close()
	}
	mine, theirs, err := socketPair()
	if err != nil {
		return nil, err
	}
	defer theirs.Close()
	files := []*os.File{theirs, cf, pf, p.unixL, p.tcpL, p.policyL}
	logArg := "stderr"
	switch {
	case p.LogSyslog:
		logArg = "syslog"
	case p.LogNone:
		logArg = "none"
	}
	cmd, err := spawn.Start(spawn.Request{Exe: p.Exe, Args: []string{"listener", logArg}, UID: lu.UID, GID: lu.GID, MinUID: 1, Files: files, Stderr: p.LogFile,
		TimerSlack: cfg.ListenerSlack()})
	if err != nil {
		mine.Close()
		return nil, err
	}
	ctl, err := newChannel(mine)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	p.mu.Lock()
	p.listener, p.ctl = cmd, ctl
	agent := p.agent
	p.mu.Unlock()
	p.Log.Info("listener started", "pid", cmd.Process.Pid, "user", lu.Name, "uid", lu.UID)
	done := make(chan error, 1)
	go func() {
		p.serveRequests(ctl, agent, cfg)
		done <- cmd.Wait()
	}()
	return done, nil
}

// reload validates the configuration again and, if it loads, replaces the
// listener; the old one finishes its transactions and exits.
func (p *Parent) reload(cfgPath string, done *chan error) {
	cfg, err := LoadConfig(cfgPath)
	if err == nil {
		p.mu.Lock()
		running := p.cfg
		p.mu.Unlock()
		if kept := keepRestartOnly(running, cfg); len(kept) > 0 {
			p.Log.Warn("reload: these settings change only on restart; keeping the running values", "keys", strings.Join(kept, ","))
		}
		err = p.configure(cfg)
	}
	if err != nil {
		p.Log.Error("reload failed; keeping the running configuration", "error", err.Error())
		return
	}
	p.mu.Lock()
	old := p.listener
	p.mu.Unlock()
	newDone, err := p.startListener()
	if err != nil {
		p.Log.Error("reload: cannot start a new listener; keeping the old one", "error", err.Error())
		return
	}
	oldDone := *done
	*done = newDone
	// The old listener stops accepting and serves its sessions to their
	// end; on SIGTERM of the daemon it is drained like the new one.
	old.Process.Signal(syscall.SIGUSR1)
	p.mu.Lock()
	live := p.retired[:0]
	for _, r := range p.retired {
		select {
		case <-r.done: // exited since
		default:
			live = append(live, r)
		}
	}
	p.retired = append(live, retiredListener{old, oldDone})
	p.mu.Unlock()
	p.Log.Info("reloaded", "config", cfgPath)
}

// serveRequests answers the listener's requests, each in its own goroutine
// (bounded), until the channel closes or a request does not decode. The
// direct workers started for this listener are killed when it goes.
func (p *Parent) serveRequests(ctl *channel, agent *delivery.Agent, cfg *Config) {
	defer ctl.close()
	ds := &directSet{live: map[uint64]*delivery.DirectWorker{}, max: cfg.Workers.MaxIdle + cfg.Parallel*8}
	defer ds.killAll()
	sem := make(chan struct{}, cfg.Parallel*8)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		msg, f, err := ctl.recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				p.Log.Error("control channel", "error", err.Error())
			}
			return
		}
		req, err := job.DecodeRequest(msg)
		if err != nil {
			if f != nil {
				f.Close()
			}
			p.Log.Error("listener sent an invalid request; closing its channel", "error", err.Error())
			return
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rep, sock := p.handle(agent, cfg, ds, req, f)
			rep.ID = req.ID
			if err := ctl.send(rep.Encode(), sock); err != nil {
				p.Log.Error("control channel", "error", err.Error())
			}
			if sock != nil {
				sock.Close() // the listener's now (or, if the send failed, nobody's: the worker sees EOF)
			}
		}()
	}
}

// directSet is the direct workers root started for one listener.
type directSet struct {
	mu   sync.Mutex
	next uint64
	live map[uint64]*delivery.DirectWorker
	max  int
}

// start starts a direct worker for u, unless max are running.
func (ds *directSet) start(agent *delivery.Agent, u *userdb.User) (*job.Reply, *os.File) {
	ds.mu.Lock()
	if len(ds.live) >= ds.max {
		ds.mu.Unlock()
		return &job.Reply{Status: status.Busy}, nil
	}
	ds.next++
	id := ds.next
	ds.live[id] = nil // reserved
	ds.mu.Unlock()
	w, sock, err := agent.StartDirect(u)
	if err != nil {
		ds.mu.Lock()
		delete(ds.live, id)
		ds.mu.Unlock()
		var st *status.Status
		if !errors.As(err, &st) {
			st = status.Unknown.Wrap(err)
		}
		agent.Log.Warn("direct worker not started", "user", u.Name, "status", fmt.Sprintf("%d %s", st.Code, st.Enhanced), "detail", err.Error())
		return &job.Reply{Status: st}, nil
	}
	ds.mu.Lock()
	ds.live[id] = w
	ds.mu.Unlock()
	go func() {
		<-w.Ended()
		ds.mu.Lock()
		delete(ds.live, id)
		ds.mu.Unlock()
	}()
	return &job.Reply{Status: status.New(250, "2.0.0", "worker started"), Worker: id, Pid: w.Pid, Bind: w.Bind, Stamp: w.Stamp}, sock
}

// end kills worker id (if it still runs) and returns once it has been
// reaped and any partial mbox append it recorded has been cut off. An id
// no longer live has already ended, recovery included.
func (ds *directSet) end(id uint64) *job.Reply {
	ds.mu.Lock()
	w := ds.live[id]
	ds.mu.Unlock()
	if w != nil {
		w.Kill()
		<-w.Ended()
	}
	return &job.Reply{Status: status.New(250, "2.0.0", "worker ended")}
}

// killAll kills every live worker and waits for each to be dealt with.
func (ds *directSet) killAll() {
	ds.mu.Lock()
	var all []*delivery.DirectWorker
	for _, w := range ds.live {
		if w != nil {
			all = append(all, w)
		}
	}
	ds.mu.Unlock()
	for _, w := range all {
		w.Kill()
		<-w.Ended()
	}
}

// handle performs one request. The user is looked up here, by root, from
// the name alone. A direct worker's socket is returned alongside the reply.
func (p *Parent) handle(agent *delivery.Agent, cfg *Config, ds *directSet, req *job.Request, f *os.File) (*job.Reply, *os.File) {
	fail := func(st *status.Status) (*job.Reply, *os.File) { return &job.Reply{Status: st}, nil }
	if f != nil {
		defer f.Close()
		if req.Op == job.OpWorker || req.Op == job.OpEnd {
			return fail(status.Unknown.Wrapf("request %d: a %s request carries no descriptor", req.ID, req.Op))
		}
		// Workers of different users share this descriptor: it must not
		// let one of them change what the others read.
		if err := job.CheckMessage(int(f.Fd())); err != nil {
			return fail(status.Unknown.Wrapf("request %d: %v", req.ID, err))
		}
	} else if req.Op != job.ModeEnvelope && req.Op != job.OpWorker && req.Op != job.OpEnd {
		return fail(status.Unknown.Wrapf("request %d without a message descriptor", req.ID))
	}
	if req.Op == job.OpEnd {
		return ds.end(req.Worker), nil
	}
	u, err := userdb.Lookup(cfg.UserDB, req.User)
	if errors.Is(err, userdb.ErrNotFound) {
		return fail(status.UnknownUser.Wrap(err))
	}
	if err != nil {
		return fail(status.Unknown.Wrap(err))
	}
	if req.Op == job.OpWorker {
		if cfg.Workers.MaxIdle <= 0 {
			return fail(status.Busy) // one-shot workers only: every job goes through root
		}
		return ds.start(agent, u)
	}
	out := agent.Deliver(context.Background(), delivery.Request{
		Mode: req.Op, User: u, Kind: req.Kind, Path: req.Path, Folder: req.Folder, Program: req.Program,
		Sender: req.Sender, Recipient: req.Recipient, Headers: cfg.Headers, Received: req.Received, Message: f, Size: req.Size,
	})
	rep := &job.Reply{Status: out.Status}
	if out.Result != nil {
		rep.Actions, rep.Decided, rep.SkipRcpt = out.Result.Actions, out.Result.Decided, out.Result.SkipRcpt
	}
	return rep, nil
}

// closePool stops the warm workers.
func (p *Parent) closePool() {
	p.mu.Lock()
	a := p.agent
	p.mu.Unlock()
	if a != nil && a.Pool != nil {
		a.Pool.Close()
	}
}

func (p *Parent) cleanup() {
	if p.cfg != nil && p.cfg.Socket != "" && systemdSocket() == nil {
		os.Remove(p.cfg.Socket)
	}
	if p.cfg != nil && p.cfg.PolicySocket != "" {
		os.Remove(p.cfg.PolicySocket)
	}
}

// systemdSocket returns the first socket passed by systemd socket
// activation (LISTEN_PID, LISTEN_FDS), if any.
func systemdSocket() *os.File {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil
	}
	if n, err := strconv.Atoi(os.Getenv("LISTEN_FDS")); err != nil || n < 1 {
		return nil
	}
	return os.NewFile(3, "systemd-socket")
}

// makeOwnedDir creates dir (0700) for uid, or checks that an existing one
// is a real directory, and gives it to uid.
func makeOwnedDir(dir string, uid, gid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// lookupGroup resolves a group name or number from /etc/group.
func lookupGroup(name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	data, err := os.ReadFile("/etc/group")
	if err != nil {
		return -1, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 3 && f[0] == name {
			return strconv.Atoi(f[2])
		}
	}
	return -1, fmt.Errorf("no group %q", name)
}
