// Command lmtpload is an LMTP load generator: it delivers generated
// messages over a Unix socket on one or more connections and reports
// deliveries per second, messages per second and latency percentiles.
//
//	lmtpload -socket PATH -users u1,u2 [-c N] [-n N] [-size BYTES] [-rcpts N]
//	         [-dest USER=KIND:PATH]... [-pipelining] [-chunking] [-lhlo NAME]
//	         [-sender ADDR] [-ack FILE] [-id PREFIX] [-json] [-timeout D] [-bodies N]
//
// See bench/README.md.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"lda/bench/lmtpload/lmtpbench"
	"lda/internal/xtext"
)

type destFlag map[string]string

func (d destFlag) String() string { return fmt.Sprint(map[string]string(d)) }

func (d destFlag) Set(v string) error {
	user, dest, ok := strings.Cut(v, "=")
	if !ok || user == "" || !strings.Contains(dest, ":") {
		return errors.New("want USER=KIND:PATH")
	}
	if _, dup := d[user]; dup {
		return fmt.Errorf("a second -dest for %s", user)
	}
	d[user] = dest
	return nil
}

type config struct {
	socket     string
	conns      int
	messages   int
	size       int
	rcpts      int
	users      []string
	dest       destFlag
	pipelining bool
	chunking   bool
	lhlo       string
	sender     string // MAIL FROM
	prefix     string
	timeout    time.Duration
	ack        *ackWriter
	nbodies    int               // -bodies
	bodies     *lmtpbench.Bodies // nil: every message generated whole
}

// maxPooled is the largest -size whose messages take their bodies from a
// pool: a pool of larger ones would hold too much memory, and a message
// that large is rarely sent often enough for its making to matter.
const maxPooled = 1 << 20

func main() {
	cfg := config{dest: destFlag{}}
	var users, ackPath string
	var asJSON bool
	flag.StringVar(&cfg.socket, "socket", "", "LMTP Unix socket (required)")
	flag.IntVar(&cfg.conns, "c", 1, "concurrent connections")
	flag.IntVar(&cfg.messages, "n", 2000, "total messages, split over the connections")
	flag.IntVar(&cfg.size, "size", 1024, "message size in bytes (approximate for tiny sizes)")
	flag.IntVar(&cfg.rcpts, "rcpts", 1, "recipients per message")
	flag.StringVar(&users, "users", "", "comma-separated recipient users (user@"+lmtpbench.Domain+"), taken round-robin (required)")
	flag.Var(cfg.dest, "dest", "USER=KIND:PATH: add XLDA-DEST=<xtext of KIND:PATH> to USER's RCPT (repeatable; lda only)")
	flag.BoolVar(&cfg.pipelining, "pipelining", false, "send MAIL, every RCPT and DATA in one write")
	flag.BoolVar(&cfg.chunking, "chunking", false, "send the message with BDAT LAST (RFC 3030) instead of DATA; the server must offer CHUNKING")
	flag.StringVar(&cfg.lhlo, "lhlo", "lmtpload."+lmtpbench.Domain, "LHLO name")
	flag.StringVar(&cfg.sender, "sender", lmtpbench.Sender, "envelope sender (MAIL FROM); its length sets the mbox From_ line's")
	flag.StringVar(&ackPath, "ack", "", "write one line per recipient reply to FILE")
	flag.StringVar(&cfg.prefix, "id", "", "run id, the prefix of every bench id (default from the time)")
	flag.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	flag.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "time limit for each reply")
	flag.IntVar(&cfg.nbodies, "bodies", 32, "distinct bodies made before the run, which the messages take in turn (0: every message made whole while the run goes; -size above 1 MiB always does)")
	flag.Parse()
	if flag.NArg() > 0 {
		usage("unexpected arguments: %q", flag.Args())
	}
	if cfg.socket == "" {
		usage("-socket is required")
	}
	for _, u := range strings.Split(users, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.users = append(cfg.users, u)
		}
	}
	if len(cfg.users) == 0 {
		usage("-users is required")
	}
	if cfg.conns < 1 || cfg.messages < 0 || cfg.rcpts < 1 || cfg.size < 0 || cfg.timeout <= 0 || cfg.nbodies < 0 {
		usage("-c and -rcpts must be at least 1, -n, -size and -bodies not negative, -timeout positive")
	}
	if cfg.sender != "" && (strings.ContainsAny(cfg.sender, " \t\r\n<>") || !strings.Contains(cfg.sender, "@")) {
		usage("-sender is an address (local@domain) without spaces or angle brackets, or empty for the null sender")
	}
	if cfg.prefix == "" {
		cfg.prefix = "lmtpload" + time.Now().UTC().Format("20060102T150405")
	}
	if strings.ContainsAny(cfg.prefix, " \t\r\n<>@") {
		usage("-id must not contain white space, <, > or @")
	}
	for u := range cfg.dest {
		found := false
		for _, v := range cfg.users {
			found = found || u == v
		}
		if !found {
			usage("-dest for %s, which is not in -users", u)
		}
	}
	if ackPath != "" {
		f, err := os.Create(ackPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lmtpload:", err)
			os.Exit(1)
		}
		cfg.ack = &ackWriter{w: bufio.NewWriter(f), f: f}
	}

	if cfg.nbodies > 0 && cfg.size <= maxPooled {
		first := lmtpbench.Recipients(cfg.users, 0, cfg.rcpts)
		for i, u := range first {
			first[i] = u + "@" + lmtpbench.Domain
		}
		cfg.bodies = lmtpbench.NewBodies(cfg.prefix, cfg.size, first, min(cfg.nbodies, max(cfg.messages, 1)))
	}
	res := run(&cfg)

	if cfg.ack != nil {
		if err := cfg.ack.close(); err != nil {
			fmt.Fprintln(os.Stderr, "lmtpload: ack file:", err)
			os.Exit(1)
		}
	}
	if err := res.Write(os.Stdout, asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "lmtpload:", err)
		os.Exit(1)
	}
}

func usage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "lmtpload: "+format+"\n", args...)
	flag.Usage()
	os.Exit(2)
}

// ackWriter serialises the ack lines of all connections.
type ackWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
	f  *os.File
}

func (a *ackWriter) line(id, rcpt, code, enh string) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	fmt.Fprintf(a.w, "%s %s %s %s\n", id, rcpt, code, enh)
}

func (a *ackWriter) close() error {
	err := a.w.Flush()
	if err2 := a.f.Close(); err == nil {
		err = err2
	}
	return err
}

// tally is one connection's share of the result.
type tally struct {
	ok, temp, perm, dropped, done int
	lat                           []time.Duration
}

func (t *tally) add(o *tally) {
	t.ok += o.ok
	t.temp += o.temp
	t.perm += o.perm
	t.dropped += o.dropped
	t.done += o.done
	t.lat = append(t.lat, o.lat...)
}

// count records one final reply code for a recipient.
func (t *tally) count(code string) {
	switch code[0] {
	case '2':
		t.ok++
	case '4':
		t.temp++
	default:
		t.perm++
	}
}

func run(cfg *config) *lmtpbench.Result {
	var next atomic.Int64
	var wg sync.WaitGroup
	tallies := make([]tally, cfg.conns)
	cpu0 := lmtpbench.ProcessCPU()
	start := time.Now()
	for i := range cfg.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker(cfg, &next, &tallies[i])
		}()
	}
	wg.Wait()
	wall := time.Since(start)

	var all tally
	for i := range tallies {
		all.add(&tallies[i])
	}
	mode := "lockstep"
	if cfg.pipelining {
		mode = "pipelining"
	}
	if cfg.chunking {
		mode += "+chunking"
	}
	res := &lmtpbench.Result{
		Tool: "lmtpload", ID: cfg.prefix, Mode: mode,
		Conns: cfg.conns, Messages: cfg.messages, Size: cfg.size, Rcpts: cfg.rcpts,
		OK: all.ok, Tempfail: all.temp, Permfail: all.perm, Dropped: all.dropped, MessagesDone: all.done,
	}
	res.Finish(wall, all.lat)
	res.SetCPU(cpu0)
	return res
}

// worker takes messages from next until there are none left, on one
// connection that it reopens whenever it breaks. Its feed prepares each
// message while the one before it is on its way. A message is taken
// before the connection for it is made; connecting is retried (with a
// growing pause), so a refused or backlogged connect costs no message.
// Only when no connection can be had for -timeout are that message and
// the rest counted as dropped (if other connections still work, the one
// or two messages this one holds are dropped, not passed to them).
func worker(cfg *config, next *atomic.Int64, t *tally) {
	feed := lmtpbench.NewFeed(next, cfg.messages, cfg.prepare)
	var s *session
	for {
		_, m, ok := feed.Next()
		if !ok {
			break
		}
		if s == nil {
			var err error
			if s, err = dialRetry(cfg); err != nil {
				fmt.Fprintf(os.Stderr, "lmtpload: no connection for %v (%v); dropping the rest\n", cfg.timeout, err)
				for ok := true; ok; _, m, ok = feed.Next() {
					dropAll(cfg, t, m.id, m.addrs)
				}
				return
			}
		}
		if err := s.deliver(m, t); err != nil {
			fmt.Fprintf(os.Stderr, "lmtpload: message %s: %v; reconnecting\n", m.id, err)
			s.c.Close()
			s = nil
		}
	}
	if s != nil {
		s.quit()
	}
}

// dialRetry connects, retrying for up to -timeout.
func dialRetry(cfg *config) (*session, error) {
	start := time.Now()
	pause := 10 * time.Millisecond
	for {
		s, err := dial(cfg)
		if err == nil {
			return s, nil
		}
		if time.Since(start) > cfg.timeout {
			return nil, err
		}
		time.Sleep(pause)
		pause = min(2*pause, time.Second)
	}
}

func dropAll(cfg *config, t *tally, id string, addrs []string) {
	for _, a := range addrs {
		cfg.ack.line(id, a, "DROPPED", "-")
		t.dropped++
	}
}

// session is one LMTP connection after a successful LHLO.
type session struct {
	cfg *config
	c   net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
}

// reply is one complete (possibly multi-line) server reply.
type reply struct {
	code string // three digits
	enh  string // enhanced status code, or "-"
	text string // the last line
	// lines holds every line of a multi-line reply (nil for one line).
	lines []string
}

func (r reply) ok() bool { return r.code[0] == '2' }

// offers reports whether a multi-line LHLO reply lists the keyword.
func (r reply) offers(keyword string) bool {
	for _, l := range r.lines {
		if f := strings.Fields(l[min(4, len(l)):]); len(f) > 0 && strings.EqualFold(f[0], keyword) {
			return true
		}
	}
	return false
}

func dial(cfg *config) (*session, error) {
	c, err := net.DialTimeout("unix", cfg.socket, cfg.timeout)
	if err != nil {
		return nil, err
	}
	s := &session{cfg: cfg, c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 64<<10)}
	if r, err := s.read(); err != nil || r.code != "220" {
		c.Close()
		return nil, fmt.Errorf("greeting: %q %v", r.text, err)
	}
	if err := s.send("LHLO " + cfg.lhlo + "\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	r, err := s.read()
	if err != nil || !r.ok() {
		c.Close()
		return nil, fmt.Errorf("LHLO: %q %v", r.text, err)
	}
	if cfg.chunking && !r.offers("CHUNKING") {
		c.Close()
		return nil, errors.New("-chunking: the server does not offer CHUNKING")
	}
	return s, nil
}

// read reads one reply up to its last line.
func (s *session) read() (reply, error) {
	s.c.SetReadDeadline(time.Now().Add(s.cfg.timeout))
	var lines []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return reply{code: "000", text: line}, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' || len(line) > 3 && line[3] != ' ' && line[3] != '-' {
			return reply{code: "000", text: line}, fmt.Errorf("malformed reply %q", line)
		}
		if len(line) > 3 && line[3] == '-' {
			lines = append(lines, line)
			continue
		}
		if lines != nil { // a multi-line reply: keep every line
			lines = append(lines, line)
		}
		r := reply{code: line[:3], enh: "-", text: line, lines: lines}
		if f := strings.Fields(line[min(4, len(line)):]); len(f) > 0 && isEnhanced(f[0]) {
			r.enh = f[0]
		}
		return r, nil
	}
}

// isEnhanced reports whether s looks like an RFC 3463 status code.
func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || parts[0][0] < '2' || parts[0][0] > '5' {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for _, c := range []byte(p) {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// send writes and flushes.
func (s *session) send(data string) error {
	return s.sendBytes([]byte(data))
}

func (s *session) sendBytes(data []byte) error {
	s.c.SetWriteDeadline(time.Now().Add(s.cfg.timeout))
	if _, err := s.w.Write(data); err != nil {
		return err
	}
	return s.w.Flush()
}

func (s *session) quit() {
	if s.send("QUIT\r\n") == nil {
		s.read()
	}
	s.c.Close()
}

// message is one message of the run, ready to be sent.
type message struct {
	id      string
	addrs   []string // the recipients' addresses
	rcptCmd []string // the RCPT commands, with their CRLF
	wire    []byte   // what follows DATA's 354, or the whole BDAT command
}

// prepare generates message k of the run.
func (cfg *config) prepare(k int) message {
	users := lmtpbench.Recipients(cfg.users, k, cfg.rcpts)
	m := message{id: lmtpbench.ID(cfg.prefix, k), addrs: make([]string, len(users)), rcptCmd: make([]string, len(users))}
	for i, u := range users {
		m.addrs[i] = u + "@" + lmtpbench.Domain
		m.rcptCmd[i] = "RCPT TO:<" + m.addrs[i] + ">"
		if d, ok := cfg.dest[u]; ok {
			m.rcptCmd[i] += " XLDA-DEST=" + xtext.Encode(d)
		}
		m.rcptCmd[i] += "\r\n"
	}
	var msg lmtpbench.Message
	if cfg.bodies != nil {
		msg, m.wire = cfg.bodies.Message(k, m.addrs)
	} else {
		msg = lmtpbench.NewMessage(cfg.prefix, k, cfg.size, m.addrs)
	}
	switch {
	case cfg.chunking:
		m.wire = append(fmt.Appendf(nil, "BDAT %d LAST\r\n", len(msg.Data)), msg.Data...)
	case cfg.bodies == nil:
		m.wire = lmtpbench.DotStuff(msg.Data)
	}
	return m
}

// deliver runs one transaction for message m. An error means the
// connection is no longer usable; the recipients still waiting for a
// reply have been counted as dropped.
func (s *session) deliver(m message, t *tally) error {
	cfg := s.cfg
	id, addrs, rcptCmd, wire := m.id, m.addrs, m.rcptCmd, m.wire
	mail := "MAIL FROM:<" + cfg.sender + ">\r\n"

	// pending holds the recipients that have no final reply yet.
	pending := make([]bool, len(addrs))
	for i := range pending {
		pending[i] = true
	}
	final := func(i int, r reply) {
		pending[i] = false
		cfg.ack.line(id, addrs[i], r.code, r.enh)
		t.count(r.code)
	}
	fail := func(err error) error {
		for i, p := range pending {
			if p {
				cfg.ack.line(id, addrs[i], "DROPPED", "-")
				t.dropped++
			}
		}
		return err
	}

	start := time.Now()
	complete := func() { // every recipient has its final reply
		t.lat = append(t.lat, time.Since(start))
		t.done++
	}
	var accepted []int
	var dataReply reply
	if cfg.pipelining {
		var b strings.Builder
		b.WriteString(mail)
		for _, c := range rcptCmd {
			b.WriteString(c)
		}
		if cfg.chunking {
			b.Write(wire)
		} else {
			b.WriteString("DATA\r\n")
		}
		if err := s.send(b.String()); err != nil {
			return fail(err)
		}
		mr, err := s.read()
		if err != nil {
			return fail(err)
		}
		for i := range addrs {
			r, err := s.read()
			if err != nil {
				return fail(err)
			}
			switch {
			case !mr.ok():
				final(i, mr)
			case r.ok():
				accepted = append(accepted, i)
			default:
				final(i, r)
			}
		}
		if cfg.chunking {
			return s.chunked(accepted, true, wire, final, complete, fail)
		}
		if dataReply, err = s.read(); err != nil {
			return fail(err)
		}
	} else {
		if err := s.send(mail); err != nil {
			return fail(err)
		}
		mr, err := s.read()
		if err != nil {
			return fail(err)
		}
		if !mr.ok() {
			for i := range addrs {
				final(i, mr)
			}
		} else {
			for i := range addrs {
				if err := s.send(rcptCmd[i]); err != nil {
					return fail(err)
				}
				r, err := s.read()
				if err != nil {
					return fail(err)
				}
				if r.ok() {
					accepted = append(accepted, i)
				} else {
					final(i, r)
				}
			}
		}
		if cfg.chunking {
			return s.chunked(accepted, false, wire, final, complete, fail)
		}
		if len(accepted) > 0 {
			if err := s.send("DATA\r\n"); err != nil {
				return fail(err)
			}
			if dataReply, err = s.read(); err != nil {
				return fail(err)
			}
		}
	}

	switch {
	case len(accepted) > 0 && dataReply.code == "354":
		if err := s.sendBytes(wire); err != nil {
			return fail(err)
		}
		return s.replies(accepted, final, complete, fail)
	case len(accepted) == 0 && dataReply.code == "354":
		// Pipelined DATA accepted without a recipient: a server bug;
		// end the data and take whatever it says.
		complete()
		if err := s.send(".\r\n"); err != nil {
			return fail(err)
		}
		if _, err := s.read(); err != nil {
			return fail(err)
		}
	default:
		// No message sent: DATA refused, or no recipient accepted.
		for _, i := range accepted {
			final(i, dataReply)
		}
		complete()
		return s.reset(fail)
	}
	return nil
}

// replies reads the final reply of each accepted recipient, in order.
func (s *session) replies(accepted []int, final func(int, reply), complete func(), fail func(error) error) error {
	for _, i := range accepted {
		r, err := s.read()
		if err != nil {
			return fail(err)
		}
		final(i, r)
	}
	complete()
	return nil
}

// reset ends a transaction that sent no message.
func (s *session) reset(fail func(error) error) error {
	if err := s.send("RSET\r\n"); err != nil {
		return fail(err)
	}
	if _, err := s.read(); err != nil {
		return fail(err)
	}
	return nil
}

// chunked ends a BDAT transaction after the MAIL and RCPT replies: wire
// (the BDAT LAST command and the message) has been sent if sent, else it
// is sent now if a recipient was accepted. Then one reply per accepted
// recipient (RFC 2033 section 4.3); with none accepted, a pipelined BDAT
// gets one refusal (as lda and Dovecot answer it) and the transaction is
// reset.
func (s *session) chunked(accepted []int, sent bool, wire []byte, final func(int, reply), complete func(), fail func(error) error) error {
	if len(accepted) == 0 {
		complete()
		if sent {
			if _, err := s.read(); err != nil {
				return fail(err)
			}
		}
		return s.reset(fail)
	}
	if !sent {
		if err := s.sendBytes(wire); err != nil {
			return fail(err)
		}
	}
	return s.replies(accepted, final, complete, fail)
}
