package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/job"
	"lda/internal/lmtp"
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

	nextID  atomic.Uint64
	mu      sync.Mutex
	waiting map[uint64]chan *status.Status
	conns   chan struct{}

	sessMu   sync.Mutex
	sessions map[*lmtp.Session]bool
	draining atomic.Bool
}

// ListenerMain is `lda listener`, started by the parent as the listener
// user with the descriptors listed in parent.go.
func ListenerMain(log *slog.Logger) int {
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
	return &Listener{
		cfg: cfg, sys: sys, peers: peers, log: log,
		ctl:      newChannel(os.NewFile(fdControl, "control")),
		waiting:  map[uint64]chan *status.Status{},
		conns:    make(chan struct{}, cfg.Limits.Connections),
		sessions: map[*lmtp.Session]bool{},
	}, nil
}

func (l *Listener) run() int {
	go l.readReplies()
	var listeners []net.Listener
	for _, fd := range []uintptr{fdUnix, fdTCP} {
		f := os.NewFile(fd, "listen")
		if f == nil {
			continue
		}
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			continue // not passed
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
			l.accept(ln)
		}(ln)
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

func (l *Listener) accept(ln net.Listener) {
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
			l.serveConn(c)
		}()
	}
}

func (l *Listener) hostname() string {
	if l.cfg.Hostname != "" {
		return l.cfg.Hostname
	}
	h, _ := os.Hostname()
	return h
}

var sessionSeq atomic.Uint64

// serveConn authenticates the peer and runs one LMTP session.
func (l *Listener) serveConn(c net.Conn) {
	defer c.Close()
	sid := strconv.FormatUint(sessionSeq.Add(1), 36)
	peer := "tcp:" + c.RemoteAddr().String() + " (unauthenticated)"
	if uc, ok := c.(*net.UnixConn); ok {
		uid, pid, err := peerCred(uc)
		if err != nil || !l.peers[uid] {
			fmt.Fprintf(c, "530 5.7.0 %s peer not authorized\r\n", l.hostname())
			l.log.Warn("peer refused", "session", sid, "uid", uid, "pid", pid)
			return
		}
		peer = fmt.Sprintf("uid=%d pid=%d", uid, pid)
	}
	l.log.Info("connect", "session", sid, "peer", peer)
	b := &backend{l: l, session: sid, peer: peer}
	s := lmtp.NewSession(c, lmtp.Config{
		Hostname: l.hostname(), MaxLine: l.cfg.Limits.LineLength, MaxRecipients: l.cfg.Limits.Recipients,
		MaxSize: l.cfg.Limits.MessageSize, IdleTimeout: l.cfg.Limits.IdleTimeout, DataTimeout: l.cfg.Limits.DataTimeout,
		BareLF: l.cfg.BareLF, Extensions: true,
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

// spool makes an unlinked file in the listener's spool directory.
func (l *Listener) spool() (*os.File, error) {
	f, err := os.CreateTemp(l.cfg.SpoolDir, "msg-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

// deliver sends one request with the spool descriptor and waits for the
// parent's reply.
func (l *Listener) deliver(req *job.Request, msg *os.File) *status.Status {
	req.ID = l.nextID.Add(1)
	rec, err := req.Encode()
	if err != nil {
		return status.Usage.Wrap(err)
	}
	ch := make(chan *status.Status, 1)
	l.mu.Lock()
	l.waiting[req.ID] = ch
	l.mu.Unlock()
	if err := l.ctl.send(rec, msg); err != nil {
		l.mu.Lock()
		delete(l.waiting, req.ID)
		l.mu.Unlock()
		return status.Unknown.Wrap(err)
	}
	return <-ch
}

// readReplies routes the parent's replies to their waiting requests. If the
// channel breaks, every waiting request gets 451 4.3.0.
func (l *Listener) readReplies() {
	for {
		msg, f, err := l.ctl.recv()
		if f != nil {
			f.Close()
		}
		var rep *job.Reply
		if err == nil {
			rep, err = job.DecodeReply(msg)
		}
		if err != nil {
			l.log.Error("control channel broken", "error", err.Error())
			l.mu.Lock()
			for id, ch := range l.waiting {
				ch <- status.Unknown.Wrapf("control channel: %v", err)
				delete(l.waiting, id)
			}
			l.mu.Unlock()
			os.Exit(1)
		}
		l.mu.Lock()
		ch := l.waiting[rep.ID]
		delete(l.waiting, rep.ID)
		l.mu.Unlock()
		if ch != nil {
			ch <- rep.Status
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
	rcpts   []*job.Request // accepted recipients, in order
}

func (b *backend) Hello(domain string) *status.Status {
	b.helo = domain
	return nil
}

func (b *backend) Mail(from string, _ lmtp.MailParams) *status.Status {
	b.sender = from
	return nil
}

func (b *backend) Reset() {
	b.sender, b.rcpts = "", nil
}

var (
	filterUnsupported = status.New(555, "5.5.4", "XLDA-FILTER is not available on this server")
	loopDetected      = status.New(554, "5.4.6", "mail loop detected")
)

// Rcpt resolves the recipient: XLDA-USER or the local part (without its
// +detail), then the destination: XLDA-DEST, or the default (with the
// detail as a folder if detail_to_folder is set).
func (b *backend) Rcpt(r lmtp.Recipient) *status.Status {
	cfg := b.l.cfg
	if r.Filter != "" {
		return filterUnsupported
	}
	name, detail := r.User, ""
	if name == "" {
		local, domain := r.Addr, ""
		if i := strings.LastIndexByte(local, '@'); i >= 0 {
			local, domain = local[:i], local[i:]
		}
		if cfg.Delimiter != "" {
			local, detail, _ = strings.Cut(local, cfg.Delimiter)
		}
		name = strings.ToLower(local)
		if strings.HasPrefix(cfg.UserDB, "yaml:") {
			// Virtual users are keyed by their whole address.
			name = strings.ToLower(local + domain)
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
	req := &job.Request{User: u.Name, Kind: job.KindDefault, Sender: b.sender, Recipient: r.Addr}
	if cfg.Headers {
		// RFC 5321 4.4 trace line; every part is syntax-checked (the LHLO
		// domain by the engine, the address by the engine, the rest ours).
		req.Received = fmt.Sprintf("from %s (%s) by %s (lda) with LMTP id %s for <%s>; %s",
			b.helo, b.peer, b.l.hostname(), b.session, r.Addr, time.Now().Format(time.RFC1123Z))
	}
	if r.Dest != "" {
		d, err := parseDest(r.Dest)
		if err != nil {
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
	if err := req.Validate(); err != nil {
		return status.Usage
	}
	b.rcpts = append(b.rcpts, req)
	return nil
}

// parseDest parses XLDA-DEST: mbox:PATH, maildir:PATH[#FOLDER], program:NAME.
func parseDest(s string) (policy.Destination, error) {
	k, v, ok := strings.Cut(s, ":")
	if !ok {
		return policy.Destination{}, errors.New("no kind")
	}
	kind, err := policy.ParseKind(k)
	if err != nil {
		return policy.Destination{}, err
	}
	d := policy.Destination{Kind: kind}
	switch kind {
	case policy.Program:
		d.Program = v
	case policy.Maildir:
		d.Path, d.Folder, _ = strings.Cut(v, "#")
	default:
		d.Path = v
	}
	if kind != policy.Program {
		if err := policy.ValidPath(d.Path); err != nil {
			return d, err
		}
	}
	if d.Folder != "" {
		if err := policy.ValidFolder(d.Folder); err != nil {
			return d, err
		}
	}
	return d, nil
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
	delivered := deliveredTo(msg)
	sem := make(chan struct{}, b.l.cfg.Parallel)
	var wg sync.WaitGroup
	for i, req := range b.rcpts {
		if delivered[strings.ToLower(req.Recipient)] {
			replies[i] = lmtp.Reply{Status: loopDetected}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, req job.Request) {
			defer wg.Done()
			defer func() { <-sem }()
			req.Size = size
			start := time.Now()
			st := b.l.deliver(&req, msg)
			replies[i] = lmtp.Reply{Status: st}
			b.l.log.Info("recipient", "session", b.session, "peer", b.peer, "sender", req.Sender,
				"recipient", req.Recipient, "user", req.User, "dest", req.Kind+":"+req.Path+req.Program,
				"status", fmt.Sprintf("%d %s", st.Code, st.Enhanced), "size", size,
				"duration_ms", float64(time.Since(start).Microseconds())/1000)
		}(i, *req)
	}
	wg.Wait()
	return replies
}

// deliveredTo returns the lower-cased Delivered-To values of the message's
// header, for loop detection.
func deliveredTo(f *os.File) map[string]bool {
	seen := map[string]bool{}
	r := bufio.NewReader(io.NewSectionReader(f, 0, 1<<20))
	for {
		line, err := r.ReadBytes('\n')
		t := bytes.TrimRight(line, "\r\n")
		if len(t) == 0 {
			return seen
		}
		if k, v, ok := bytes.Cut(t, []byte(":")); ok && strings.EqualFold(string(k), "Delivered-To") {
			seen[strings.ToLower(strings.TrimSpace(string(v)))] = true
		}
		if err != nil {
			return seen
		}
	}
}
