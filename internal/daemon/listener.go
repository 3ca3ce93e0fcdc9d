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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/affinity"
	"lda/internal/delivery"
	"lda/internal/job"
	"lda/internal/lmtp"
	"lda/internal/spawn"
	"lda/internal/status"
	"lda/internal/userdb"
	"lda/policy"
)

// Listener is the unprivileged LMTP side of `lda serve`.
type Listener struct {
	cfg   *Config
	sys   *policy.System
	peers map[int]bool
	log   *slog.Logger
	ctl   *channel
	host  string // hostName

	nextID  atomic.Uint64
	mu      sync.Mutex
	waiting map[uint64]chan reply
	conns   chan struct{}

	// direct, with warm workers on, delivers through workers root
	// started and bound for this listener, without root in the path.
	direct *delivery.Direct

	sessMu   sync.Mutex
	sessions map[*lmtp.Session]bool
	draining atomic.Bool

	// skipRcpt remembers when RCPT-time evaluation was last found unable
	// to decide anything for a user: they had no filter, or one that reads
	// the message before anything of the envelope. That evaluation, a
	// round trip to a worker, is then skipped for skipRcptTTL. Skipping it
	// is never wrong: the filter, whatever it has become since, still
	// runs after DATA.
	srMu     sync.Mutex
	skipRcpt map[string]rcptSeen
	srReset  time.Time // when skipRcpt was last emptied to bound it
}

// rcptSeen is what the jobs of one user last said about RCPT-time
// evaluation.
type rcptSeen struct {
	skip    time.Time // when a job last found it unable to decide (zero: not since cleared)
	cleared time.Time // when a job last found it able to
}

// skipRcptTTL is how long such a user is not asked again at RCPT time.
const skipRcptTTL = 2 * time.Second

// rcptUndecidable reports whether RCPT-time evaluation was found unable to
// decide for user less than skipRcptTTL ago.
func (l *Listener) rcptUndecidable(user string) bool {
	l.srMu.Lock()
	defer l.srMu.Unlock()
	st := l.skipRcpt[user]
	return !st.skip.IsZero() && time.Since(st.skip) < skipRcptTTL
}

// learnRcpt records what a reply for a default-destination job, started
// at started, said about RCPT-time evaluation for user. A job that found
// it unable to decide, but started before another found it able to (a
// delivery of the old script that waited on a lock while the user
// changed it), says nothing: it must not reopen the skip.
func (l *Listener) learnRcpt(user string, rep *job.Reply, started time.Time) {
	if !rep.Status.OK() && !rep.Decided {
		return // a failed job says nothing either way
	}
	l.srMu.Lock()
	defer l.srMu.Unlock()
	st := l.skipRcpt[user]
	if rep.SkipRcpt {
		if started.Before(st.cleared) || started.Before(l.srReset) {
			return
		}
		st.skip = time.Now()
	} else {
		st = rcptSeen{cleared: time.Now()}
	}
	if _, ok := l.skipRcpt[user]; !ok && len(l.skipRcpt) >= 10000 {
		clear(l.skipRcpt) // bounded; a miss costs one round trip
		l.srReset = time.Now()
	}
	l.skipRcpt[user] = st
}

// ListenerMain is `lda listener`, started by the parent as the listener
// user with the descriptors listed in parent.go.
//
// flush writes the log lines still waiting (see BatchedStderr); it runs
// whenever the listener exits of itself.
func ListenerMain(log *slog.Logger, flush func()) int {
	flushLog = flush
	defer flush()
	if os.Getuid() == 0 || os.Geteuid() == 0 {
		log.Error("the listener refuses to run as root")
		return 1
	}
	l, err := newListener(log)
	if err != nil {
		log.Error("listener", "error", err.Error())
		return 1
	}
	return l.run()
}

func newListener(log *slog.Logger) (*Listener, error) {
	cf := os.NewFile(fdConfig, "config")
	if cf == nil {
		return nil, errors.New("no configuration descriptor")
	}
	cfg, err := ParseConfig(cf, "lda.yaml")
	cf.Close()
	if err != nil {
		return nil, err
	}
	var sys *policy.System
	if cfg.Policy == "embedded" {
		sys = policy.Default()
	} else {
		pf := os.NewFile(fdPolicy, cfg.Policy)
		if pf == nil {
			return nil, errors.New("no policy descriptor")
		}
		sys, err = policy.ParseSystem(io.LimitReader(pf, policy.MaxFileSize), cfg.Policy)
		pf.Close()
		if err != nil {
			return nil, err
		}
	}
	peers := map[int]bool{}
	for _, p := range cfg.Peers {
		if n, err := strconv.Atoi(p); err == nil {
			peers[n] = true
			continue
		}
		u, err := userdb.Lookup(cfg.SystemDB(), p)
		if err != nil {
			log.Warn("peer user unknown; ignored", "peer", p)
			continue
		}
		peers[u.UID] = true
	}
	ctl, err := newChannel(os.NewFile(fdControl, "control"))
	if err != nil {
		return nil, fmt.Errorf("control channel: %w", err)
	}
	l := &Listener{
		cfg: cfg, sys: sys, peers: peers, log: log,
		host:     hostName(cfg, log),
		ctl:      ctl,
		skipRcpt: map[string]rcptSeen{},
		waiting:  map[uint64]chan reply{},
		conns:    make(chan struct{}, cfg.Limits.Connections),
		sessions: map[*lmtp.Session]bool{},
	}
	if w := cfg.Workers; w.MaxIdle > 0 {
		pol := cfg.Policy
		if pol == "embedded" {
			pol = ""
		}
		l.direct = &delivery.Direct{
			Pool:       delivery.NewPool(delivery.PoolConfig{MaxIdle: w.MaxIdle, IdleTime: w.IdleTime, MaxDeliveries: w.MaxDeliveries}),
			PolicyPath: pol, SieveDir: cfg.SieveDir, Headers: cfg.Headers, Timeout: cfg.DeliveryTime, Log: log,
			Start: l.startWorker, End: l.endWorker,
		}
		// Gathering needs two CPUs to choose between.
		if w.Gather && affinity.Start() > 1 {
			l.direct.Gather = &delivery.Gatherer{}
		}
	}
	return l, nil
}

// reply is one of the parent's replies, with the descriptor it carried
// (a direct worker's socket).
type reply struct {
	rep *job.Reply
	f   *os.File
}

func (l *Listener) run() int {
	go l.readReplies()
	var listeners []net.Listener
	var policyLn net.Listener
	for _, fd := range []uintptr{fdUnix, fdTCP, fdPolicySock} {
		f := os.NewFile(fd, "listen")
		if f == nil {
			continue
		}
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			continue // not passed
		}
		if fd == fdPolicySock {
			policyLn = ln
			continue
		}
		listeners = append(listeners, ln)
	}
	if len(listeners) == 0 {
		l.log.Error("no listening socket")
		return 1
	}
	var wg sync.WaitGroup
	for _, ln := range listeners {
		wg.Add(1)
		go func(ln net.Listener) {
			defer wg.Done()
			l.accept(ln, l.serveConn)
		}(ln)
	}
	if policyLn != nil {
		listeners = append(listeners, policyLn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.accept(policyLn, l.servePolicyConn)
		}()
	}
	// SIGTERM drains: stop accepting, let each session finish its
	// transaction, then 421. SIGUSR1 retires (after a reload, when a new
	// listener has taken over the sockets): stop accepting and let the
	// sessions run to their natural end; a later SIGTERM still drains.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	s := <-sig
	l.draining.Store(true)
	for _, ln := range listeners {
		ln.Close()
	}
	shutdown := func() {
		l.sessMu.Lock()
		for s := range l.sessions {
			s.Shutdown()
		}
		l.sessMu.Unlock()
	}
	if s == syscall.SIGUSR1 {
		go func() {
			for s := range sig {
				if s != syscall.SIGUSR1 {
					shutdown()
				}
			}
		}()
	} else {
		shutdown()
	}
	wg.Wait()
	// Wait for the sessions to finish their transactions.
	for i := 0; i < cap(l.conns); i++ {
		l.conns <- struct{}{}
	}
	l.log.Info("listener drained")
	return 0
}

func (l *Listener) accept(ln net.Listener, serve func(net.Conn)) {
	var sessions sync.WaitGroup
	defer sessions.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if l.draining.Load() {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warn("accept", "error", err.Error())
			time.Sleep(50 * time.Millisecond)
			continue
		}
		select {
		case l.conns <- struct{}{}:
		default:
			fmt.Fprintf(c, "421 4.3.2 %s too many connections, try again later\r\n", l.hostname())
			c.Close()
			l.log.Warn("connection refused: limit reached", "limit", cap(l.conns))
			continue
		}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			defer func() { <-l.conns }()
			serve(c)
		}()
	}
}

func (l *Listener) hostname() string { return l.host }

// osHostname is os.Hostname, replaced by tests.
var osHostname = os.Hostname

// hostName is the name the listener gives in its greeting, its refusals
// and its Received lines: lda.yaml's hostname, else the system's as it
// was when the listener started. The kernel takes any bytes for a host
// name, and one that is not a domain name (validHostname) would go into
// a reply line and a header line, where job.Validate refuses it and so
// every recipient; "localhost" stands in for it, with a warning.
func hostName(cfg *Config, log *slog.Logger) string {
	if cfg.Hostname != "" {
		return cfg.Hostname
	}
	h, err := osHostname()
	if err == nil && h != "" && validHostname(h) {
		return h
	}
	if err != nil {
		log.Warn("the system's host name is unknown; lda uses localhost (set hostname in lda.yaml)", "error", err.Error())
	} else {
		log.Warn("the system's host name is not a domain name; lda uses localhost (set hostname in lda.yaml)", "hostname", h)
	}
	return "localhost"
}

var sessionSeq atomic.Uint64

// authenticate checks a Unix peer's credentials against peers; refused is
// what to say to a refused peer.
func (l *Listener) authenticate(c net.Conn, sid, refused string) (peer string, ok bool) {
	peer = "tcp:" + c.RemoteAddr().String() + " (unauthenticated)"
	if uc, isUnix := c.(*net.UnixConn); isUnix {
		uid, pid, err := peerCred(uc)
		if err != nil || !l.peers[uid] {
			fmt.Fprint(c, refused)
			l.log.Warn("peer refused", "session", sid, "uid", uid, "pid", pid)
			return "", false
		}
		peer = fmt.Sprintf("uid=%d pid=%d", uid, pid)
	}
	l.log.Info("connect", "session", sid, "peer", peer)
	return peer, true
}

// servePolicyConn authenticates the peer and answers policy requests.
func (l *Listener) servePolicyConn(c net.Conn) {
	defer c.Close()
	sid := "p" + strconv.FormatUint(sessionSeq.Add(1), 36)
	if _, ok := l.authenticate(c, sid, "action=DEFER_IF_PERMIT 4.7.0 peer not authorized\n\n"); ok {
		l.servePolicy(c, sid)
	}
}

// serveConn authenticates the peer and runs one LMTP session.
func (l *Listener) serveConn(c net.Conn) {
	defer c.Close()
	sid := strconv.FormatUint(sessionSeq.Add(1), 36)
	peer, ok := l.authenticate(c, sid, fmt.Sprintf("530 5.7.0 %s peer not authorized\r\n", l.hostname()))
	if !ok {
		return
	}
	b := &backend{l: l, session: sid, peer: peer}
	s := lmtp.NewSession(c, lmtp.Config{
		Hostname: l.hostname(), MaxLine: l.cfg.Limits.LineLength, MaxRecipients: l.cfg.Limits.Recipients,
		MaxSize: l.cfg.Limits.MessageSize, SpoolMemory: l.cfg.Limits.SpoolMemory, IdleTimeout: l.cfg.Limits.IdleTimeout, DataTimeout: l.cfg.Limits.DataTimeout,
		BareLF: l.cfg.BareLF, Extensions: true, Chunking: l.cfg.Chunking,
		SpoolError: func(st *status.Status) {
			l.log.Error("spool", "session", sid, "peer", peer, "status", fmt.Sprintf("%d %s", st.Code, st.Enhanced), "error", st.Error())
		},
	}, b, l.spool)
	l.sessMu.Lock()
	l.sessions[s] = true
	l.sessMu.Unlock()
	err := s.Serve()
	l.sessMu.Lock()
	delete(l.sessions, s)
	l.sessMu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) {
		l.log.Info("disconnect", "session", sid, "error", err.Error())
	}
}

func peerCred(c *net.UnixConn) (uid, pid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, 0, err
	}
	var cred *unix.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return -1, 0, err
	}
	return int(cred.Uid), int(cred.Pid), nil
}

// spool makes an unlinked file in the listener's spool directory: an
// O_TMPFILE, which never has a name, or, where the file system cannot make
// one, a named file removed at once.
func (l *Listener) spool() (*os.File, error) {
	fd, err := unix.Open(l.cfg.SpoolDir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), "spool"), nil
	}
	f, err := os.CreateTemp(l.cfg.SpoolDir, "msg-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

// deliver has one recipient's job done: by a direct worker when warm
// workers are on and root will start one, else by root. u is the user
// as the listener looked it up at RCPT time, for the worker's key; root
// binds a new worker to its own lookup.
func (l *Listener) deliver(u *userdb.User, req *job.Request, msg *os.File) *job.Reply {
	rep, _ := l.deliverQuiet(u, req, msg, false)
	return rep
}

// deliverQuiet is deliver for a caller that logs the outcome in a line of
// its own when quiet is set: a direct worker's outcome then comes back as
// log attributes (where it went, the policy rule, any detail) and is not
// logged here. Through root, root logs the delivery and attrs is nil.
func (l *Listener) deliverQuiet(u *userdb.User, req *job.Request, msg *os.File, quiet bool) (rep *job.Reply, attrs []slog.Attr) {
	if l.direct != nil && u != nil {
		out, ok := l.direct.Deliver(context.Background(), delivery.Request{
			Mode: req.Op, User: u, Kind: req.Kind, Path: req.Path, Folder: req.Folder, Program: req.Program,
			Sender: req.Sender, Recipient: req.Recipient, Received: req.Received, Message: msg, Size: req.Size,
			Quiet: quiet,
		})
		if ok {
			rep := &job.Reply{Status: out.Status}
			if r := out.Result; r != nil {
				rep.Actions, rep.Decided, rep.SkipRcpt = r.Actions, r.Decided, r.SkipRcpt
			}
			if quiet {
				attrs = delivery.OutcomeAttrs(out)
			}
			return rep, attrs
		}
	}
	rep, f := l.request(req, msg)
	if f != nil {
		f.Close()
	}
	return rep, nil
}

// startWorker asks root for a direct worker of user.
func (l *Listener) startWorker(user string) (*job.Reply, *os.File) {
	return l.request(&job.Request{Op: job.OpWorker, User: user, Kind: job.KindDefault}, nil)
}

// endWorker asks root to end direct worker id and waits until it has.
func (l *Listener) endWorker(user string, id uint64) {
	if _, f := l.request(&job.Request{Op: job.OpEnd, Worker: id, User: user, Kind: job.KindDefault}, nil); f != nil {
		f.Close()
	}
}

// request sends one request (with the spool descriptor, if any) and waits
// for the parent's reply and the descriptor that came with it.
func (l *Listener) request(req *job.Request, msg *os.File) (*job.Reply, *os.File) {
	req.ID = l.nextID.Add(1)
	rec, err := req.Encode()
	if err != nil {
		// Rcpt validated the request: this is our fault, and temporary.
		return &job.Reply{Status: status.Unknown.Wrap(err)}, nil
	}
	ch := make(chan reply, 1)
	l.mu.Lock()
	l.waiting[req.ID] = ch
	l.mu.Unlock()
	if err := l.ctl.send(rec, msg); err != nil {
		l.mu.Lock()
		delete(l.waiting, req.ID)
		l.mu.Unlock()
		return &job.Reply{Status: status.Unknown.Wrap(err)}, nil
	}
	wait := 2*l.cfg.DeliveryTime + replyMargin
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.rep, r.f
	case <-t.C:
		// Root answers every request within its own time limits; one it
		// could not send must not hold the session for ever. A reply that
		// comes later finds no one waiting and is dropped.
		l.mu.Lock()
		_, pending := l.waiting[req.ID]
		delete(l.waiting, req.ID)
		l.mu.Unlock()
		if !pending { // readReplies took it just now: the reply is on its way
			r := <-ch
			return r.rep, r.f
		}
		l.log.Error("no reply from root", "request", req.ID, "op", req.Op, "user", req.User, "waited", wait.String())
		return &job.Reply{Status: status.Unknown.Wrapf("no reply from root within %s", wait)}, nil
	}
}

// brokenChannelExit ends the listener once its control channel to root
// has broken (a variable for tests).
var brokenChannelExit = func() {
	time.Sleep(time.Second)
	flushLog()
	os.Exit(1)
}

// flushLog writes the listener's waiting log lines (ListenerMain's flush).
var flushLog = func() {}

// replyMargin is how much longer than two delivery timeouts (a delivery,
// then a recovery) the listener waits for root's reply (a variable for
// tests).
var replyMargin = time.Minute

// readReplies routes the parent's replies to their waiting requests. If the
// channel breaks, every waiting request gets 451 4.3.0, and the listener
// exits a second later.
func (l *Listener) readReplies() {
	for {
		msg, f, err := l.ctl.recv()
		var rep *job.Reply
		if err == nil {
			rep, err = job.DecodeReply(msg)
		}
		if err != nil {
			if f != nil {
				f.Close()
			}
			l.log.Error("control channel broken", "error", err.Error())
			l.mu.Lock()
			for id, ch := range l.waiting {
				ch <- reply{rep: &job.Reply{Status: status.Unknown.Wrapf("control channel: %v", err)}}
				delete(l.waiting, id)
			}
			l.mu.Unlock()
			// Without root nothing more can be delivered. Give the
			// sessions that were waiting a moment to send their 451s (a
			// new request fails at once: the send breaks too), then go.
			go brokenChannelExit()
			return
		}
		l.mu.Lock()
		ch := l.waiting[rep.ID]
		delete(l.waiting, rep.ID)
		l.mu.Unlock()
		if ch != nil {
			ch <- reply{rep: rep, f: f}
		} else if f != nil {
			f.Close()
		}
	}
}

// backend is one session's view of the delivery side.
type backend struct {
	l       *Listener
	session string
	peer    string
	helo    string
	sender  string
	rcpts   []rcpt // accepted recipients, in order

	// After DATA: the recipients' log lines, written by Reset, after the
	// replies (see lmtp.Backend).
	lines []logLine
}

// logLine is one log record kept for Reset.
type logLine struct {
	level slog.Level
	attrs []slog.Attr
}

type rcpt struct {
	req    *job.Request
	user   *userdb.User // as looked up at RCPT (root looks it up again itself)
	filter bool         // XLDA-FILTER: return the actions (redirects included) to the client
}

func (b *backend) Hello(domain string) *status.Status {
	b.helo = domain
	return nil
}

func (b *backend) Mail(from string, _ lmtp.MailParams) *status.Status {
	b.sender = from
	return nil
}

// Reset ends the transaction: after DATA it writes the recipients' log
// lines, once the client has its replies.
func (b *backend) Reset() {
	for _, l := range b.lines {
		if l.attrs != nil {
			b.l.log.LogAttrs(context.Background(), l.level, "recipient", l.attrs...)
		}
	}
	b.sender, b.rcpts, b.lines = "", nil, nil
}

var (
	filterWithDest = status.New(501, "5.5.4", "XLDA-FILTER and XLDA-DEST exclude each other")
	loopDetected   = status.New(554, "5.4.6", "mail loop detected")
)

// Rcpt resolves the recipient: XLDA-USER or the local part (without its
// +detail), then the destination: XLDA-DEST, or the default (with the
// detail as a folder if detail_to_folder is set).
func (b *backend) Rcpt(r lmtp.Recipient) *status.Status {
	cfg := b.l.cfg
	if r.Filter != "" && r.Dest != "" {
		b.l.log.Info("recipient", "session", b.session, "recipient", r.Addr, "status", "501 5.5.4", "reason", "XLDA-FILTER with XLDA-DEST")
		return filterWithDest
	}
	name, detail := r.User, ""
	if name == "" {
		name = b.l.recipientUser(r.Addr)
		if local, _, ok := strings.Cut(r.Addr, "@"); ok && cfg.Delimiter != "" {
			_, detail, _ = strings.Cut(local, cfg.Delimiter)
		}
	}
	u, err := userdb.Lookup(cfg.UserDB, name)
	if err != nil {
		if errors.Is(err, userdb.ErrNotFound) {
			b.l.log.Info("recipient", "session", b.session, "recipient", r.Addr, "status", "550 5.1.1")
			return status.UnknownUser
		}
		b.l.log.Warn("recipient", "session", b.session, "recipient", r.Addr, "error", err.Error())
		return status.Unknown
	}
	if u.UID == 0 || u.UID < b.l.sys.MinUID {
		// Root and system accounts never receive: the parent refuses them
		// after DATA anyway, so say it now.
		b.l.log.Info("recipient", "session", b.session, "recipient", r.Addr, "user", u.Name, "status", "550 5.7.1", "reason", "uid below min_uid")
		return status.PolicyRefused
	}
	req := &job.Request{Op: job.ModeDeliver, User: u.Name, Kind: job.KindDefault, Sender: b.sender, Recipient: r.Addr}
	if cfg.Headers {
		// RFC 5321 4.4 trace line; every part is syntax-checked (the LHLO
		// domain by the engine, the address by the engine, the rest ours).
		req.Received = fmt.Sprintf("from %s (%s) by %s (lda) with LMTP id %s for <%s>; %s",
			b.helo, b.peer, b.l.hostname(), b.session, r.Addr, time.Now().Format(time.RFC1123Z))
	}
	if r.Dest != "" {
		d, err := policy.ParseDestination(r.Dest)
		if err != nil {
			b.l.log.Info("recipient", "session", b.session, "recipient", r.Addr, "user", u.Name, "status", "501 5.5.4", "reason", err.Error())
			return status.Usage
		}
		req.Kind, req.Path, req.Folder, req.Program = d.Kind.String(), d.Path, d.Folder, d.Program
		dec := b.l.sys.Precheck(policy.User{Name: u.Name, Home: u.Home}, d)
		if !dec.Allowed {
			b.l.log.Info("recipient", "session", b.session, "recipient", r.Addr, "user", u.Name, "dest", d.String(), "status", "550 5.7.1", "reason", dec.Reason)
			return status.PolicyRefused
		}
	} else if cfg.DetailFolder && detail != "" && policy.ValidFolder(detail) == nil {
		req.Folder = detail
	}
	if r.Filter == "only" {
		req.Op = job.ModeFilter
	}
	if err := req.Validate(); err != nil {
		// The envelope as lda would pass it on (the trace line included)
		// is too long or not well formed: the same RCPT cannot succeed.
		b.l.log.Info("recipient", "session", b.session, "recipient", r.Addr, "user", u.Name, "status", "501 5.5.4", "reason", err.Error())
		return status.Usage
	}
	// RCPT-time Sieve: where the user's filter rejects on the envelope
	// alone, refuse now instead of accepting and bouncing later.
	if req.Kind == job.KindDefault && cfg.RcptSieve && !b.l.rcptUndecidable(u.Name) {
		env := *req
		env.Op, env.Received = job.ModeEnvelope, ""
		started := time.Now()
		rep := b.l.deliver(u, &env, nil)
		b.l.learnRcpt(u.Name, rep, started)
		if rep.Decided && rep.Status.Permanent() {
			b.l.log.Info("recipient", "session", b.session, "recipient", r.Addr, "user", u.Name,
				"status", fmt.Sprintf("%d %s", rep.Status.Code, rep.Status.Enhanced), "stage", "rcpt-sieve")
			return rep.Status
		}
	}
	b.rcpts = append(b.rcpts, rcpt{req: req, user: u, filter: r.Filter != ""})
	return nil
}

// Data delivers the spooled message to every accepted recipient, at most
// cfg.Parallel at once, and answers in RCPT order.
func (b *backend) Data(msg *os.File, size int64, rcpts []lmtp.Recipient) []lmtp.Reply {
	replies := make([]lmtp.Reply, len(rcpts))
	if len(rcpts) != len(b.rcpts) {
		for i := range replies {
			replies[i] = lmtp.Reply{Status: status.Unknown}
		}
		return replies
	}
	// msg is frozen (package lmtp seals or reopens it read-only), and
	// root and the workers refuse any other (job.CheckMessage), so none
	// of the workers can change what the others deliver. A sealed memfd
	// is handed to all of them; a disk spool's read-only description is
	// not shared between recipients (lmtp.ReopenReadOnly).
	shared := len(b.rcpts) == 1 || job.Sealed(int(msg.Fd()))
	delivered := deliveredTo(msg, size)
	logs := make([]logLine, len(b.rcpts))
	b.lines = logs
	one := func(i int, req job.Request, u *userdb.User, filter bool) {
		req.Size = size
		start := time.Now()
		own := msg
		if !shared {
			var err error
			if own, err = lmtp.ReopenReadOnly(msg); err != nil {
				// One line, the recipient's, written by Reset as the others.
				replies[i] = lmtp.Reply{Status: status.Unknown}
				logs[i] = logLine{slog.LevelWarn, []slog.Attr{slog.String("session", b.session), slog.String("peer", b.peer),
					slog.String("sender", req.Sender), slog.String("recipient", req.Recipient), slog.String("user", req.User),
					slog.String("status", strconv.Itoa(status.Unknown.Code)+" "+status.Unknown.Enhanced), slog.Int64("size", size),
					slog.String("detail", err.Error())}}
				return
			}
			defer own.Close()
		}
		rep, outcome := b.l.deliverQuiet(u, &req, own, true)
		if req.Kind == job.KindDefault {
			b.l.learnRcpt(req.User, rep, start)
		}
		st := rep.Status
		var lines []string
		if filter {
			for _, a := range rep.Actions {
				lines = append(lines, "ACTION "+a)
			}
		} else if st.OK() {
			if to := job.Redirects(rep.Actions); len(to) > 0 {
				if err := b.l.redirect(msg, size, req.Sender, req.Recipient, to); err != nil {
					b.l.log.Error("redirect", "session", b.session, "recipient", req.Recipient, "error", err.Error())
					st = status.Unknown.Wrap(err)
				}
			}
		}
		replies[i] = lmtp.Reply{Status: st, Lines: lines}
		// One line per recipient: with a direct worker, its outcome
		// (where, rule, detail) is in it; through root, root logs it.
		// slog.Attr values, not ...any: a string or number costs no
		// allocation of its own to pass.
		attrs := append(make([]slog.Attr, 0, 11+len(outcome)), slog.String("session", b.session), slog.String("peer", b.peer),
			slog.String("sender", req.Sender), slog.String("recipient", req.Recipient), slog.String("user", req.User),
			slog.String("dest", req.Kind+":"+req.Path+req.Program),
			slog.String("status", strconv.Itoa(st.Code)+" "+st.Enhanced), slog.Int64("size", size),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.String("actions", strings.Join(rep.Actions, "; ")))
		attrs = append(attrs, outcome...)
		level := slog.LevelInfo
		if !st.OK() {
			level = slog.LevelWarn // as the delivery line of a worker says a failure
		}
		logs[i] = logLine{level, attrs} // written by Reset, after the reply
	}
	// At most cfg.Parallel deliveries at once: that many runners, this
	// goroutine one of them, each taking the next recipient in RCPT order
	// until none is left. A runner per recipient cost a goroutine, its
	// stack's growth and a semaphore round per recipient.
	var next atomic.Int64
	run := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(b.rcpts) {
				return
			}
			rc := b.rcpts[i]
			if delivered[strings.ToLower(rc.req.Recipient)] {
				replies[i] = lmtp.Reply{Status: loopDetected}
				logs[i] = logLine{slog.LevelWarn, []slog.Attr{slog.String("session", b.session), slog.String("peer", b.peer),
					slog.String("sender", rc.req.Sender), slog.String("recipient", rc.req.Recipient), slog.String("user", rc.req.User),
					slog.String("status", "554 5.4.6"), slog.String("reason", "Delivered-To names the recipient")}}
				continue
			}
			one(i, *rc.req, rc.user, rc.filter)
		}
	}
	var wg sync.WaitGroup
	for k := 1; k < min(b.l.cfg.Parallel, len(b.rcpts)); k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run()
		}()
	}
	run() // with one recipient, no goroutine is started or woken
	wg.Wait()
	return replies
}

// redirect submits the message to the redirect addresses through the
// configured sendmail-compatible command (argv, never a shell), as the
// listener user. A Delivered-To line for the original recipient is
// prepended, so a redirect loop comes back as 554 5.4.6.
func (l *Listener) redirect(msg *os.File, size int64, sender, rcpt string, to []string) error {
	argv := l.cfg.RedirectCmd
	if len(argv) == 0 {
		return errors.New("a filter redirects, but no redirect_command is configured")
	}
	for _, a := range to {
		if a == "" || a[0] == '-' || strings.ContainsAny(a, " \t\r\n\x00") {
			return fmt.Errorf("refusing redirect address %q", a)
		}
	}
	args := append(append([]string{}, argv[1:]...), "-f", sender, "--")
	args = append(args, to...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Stdin = io.MultiReader(strings.NewReader("Delivered-To: "+rcpt+"\n"), io.NewSectionReader(msg, 0, size))
	out := &spawn.LimitedBuffer{Max: 4 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, killed whole at the time limit; and a child
	// it leaves behind holding its output cannot keep the session waiting.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = redirectWaitDelay
	// Started spread even from a gathered listener (affinity.Spawn).
	err := affinity.Spawn(cmd.Start)
	if err == nil {
		err = cmd.Wait()
	}
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		err = nil // it exited 0: the message was submitted
	}
	if err != nil {
		return fmt.Errorf("%s: %v: %s", argv[0], err, status.Sanitize(out.String()))
	}
	return nil
}

// redirectWaitDelay bounds the wait for the redirect command's output once
// it has exited or been killed (a variable for tests).
var redirectWaitDelay = 5 * time.Second
