package lmtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"lda/internal/status"
)

// Defaults of Config.
const (
	DefaultMaxLine       = 4096
	MinMaxLine           = 512 // RFC 5321 section 4.5.3.1.4
	MaxMaxLine           = 1 << 20
	DefaultMaxRecipients = 1000
	DefaultMaxSize       = 64 << 20
	DefaultIdleTimeout   = 5 * time.Minute
	DefaultDataTimeout   = 10 * time.Minute
	maxReplyLines        = 64 // extra lines of one per-recipient reply
	readBufferSize       = 64 << 10
	spoolBufferSize      = 64 << 10
)

// Config tunes a Session. Zero values select the defaults, except for
// Extensions: start from DefaultConfig.
type Config struct {
	Hostname      string        // for the greeting and LHLO ("localhost" if empty)
	MaxLine       int           // command line limit in bytes incl. CRLF (default 4096, raised to 512, capped at 1 MiB)
	MaxRecipients int           // accepted recipients per transaction (default 1000)
	MaxSize       int64         // message size limit in bytes as spooled (LF line ends), advertised as SIZE (default 64 MiB)
	IdleTimeout   time.Duration // for each command line to arrive, and for each reply write (default 5m)
	DataTimeout   time.Duration // between reads within DATA or a BDAT chunk (default 10m)
	// BareLF is the policy for an LF not preceded by CR. "reject" (the
	// default, also for any unknown value): in DATA the message is refused
	// with 550 5.6.0 for every recipient after the whole body has been read;
	// in a command line the command is refused with 500 5.5.2. "accept": in
	// DATA the LF is kept as data (it reads as a line end in the spooled
	// message), in a command line it ends the line. Either way a bare LF
	// never ends a wire line of DATA, so it can never end DATA early
	// (see ReadData). A bare CR is always data.
	BareLF string
	// Extensions advertises "XLDA 1" and accepts the XLDA-USER, XLDA-DEST
	// and XLDA-FILTER parameters of RCPT; without it they are unknown
	// parameters (555). A zero bool cannot mean "unset", so the default
	// (true) comes from DefaultConfig; the zero Config leaves it off.
	Extensions bool
	// Chunking advertises CHUNKING and accepts BDAT (RFC 3030, RFC 2033
	// section 4.3); without it BDAT is an unknown command (500), and the
	// session ends after the reply, since a chunk may follow. On in
	// DefaultConfig.
	Chunking bool
	// SpoolMemory: a message is spooled in memory (a memfd) up to this
	// many bytes and moves to the spool function's file beyond; 0 spools
	// every message to that file.
	SpoolMemory int64
	// SpoolError, if set, is told why the spool could not take a message
	// (the wire carries only the generic reply), so it can be logged.
	SpoolError func(st *status.Status)
}

// DefaultConfig returns the defaults, with the lda extension on.
func DefaultConfig() Config {
	return Config{
		MaxLine: DefaultMaxLine, MaxRecipients: DefaultMaxRecipients, MaxSize: DefaultMaxSize,
		IdleTimeout: DefaultIdleTimeout, DataTimeout: DefaultDataTimeout, BareLF: BareLFReject,
		Extensions: true, Chunking: true,
	}
}

// Backend does the work behind a Session. Its methods are called from the
// goroutine running Serve, one at a time. A returned *status.Status is
// sent as its Reply(); one that fails Validate is replaced by 451 4.3.0.
type Backend interface {
	// Hello is called for LHLO with the client's domain (syntax-checked,
	// never echoed). nil or a 2xx accepts it; anything else is sent as the
	// reply and the client is not greeted.
	Hello(domain string) *status.Status
	// Mail is called for a syntactically valid MAIL FROM ("" is the null
	// sender). nil = 250 2.1.0; a non-nil 2xx is sent as is and starts the
	// transaction; anything else refuses the sender.
	Mail(from string, p MailParams) *status.Status
	// Rcpt is called for a syntactically valid RCPT TO within the recipient
	// limit. nil = 250 2.1.5; a non-nil 2xx is sent as is and accepts the
	// recipient; anything else refuses it.
	Rcpt(r Recipient) *status.Status
	// Data is called once per transaction with the spooled, dot-unstuffed
	// message (LF line endings, size bytes, frozen: a sealed memfd
	// (Sealed), or a read-only descriptor of the spool function's file,
	// which should be one only its owner may write; read it at offsets,
	// ReadAt or io.SectionReader, its file offset is not specified; give
	// each reader of a file that is not Sealed a descriptor of its own,
	// ReopenReadOnly) and the accepted recipients in order, duplicates included. It must return
	// exactly one Reply per accepted recipient, in order; a missing Reply
	// or one without a Status becomes 451 4.3.0, extra ones are dropped.
	// msg is closed by the session when Data returns.
	Data(msg *os.File, size int64, rcpts []Recipient) []Reply
	// Reset ends the current transaction, if any: it is called for RSET,
	// for LHLO during a transaction, after every DATA and every BDAT LAST
	// that ends a transaction, whatever the outcome (also when Data was
	// not called), and when the session ends with a transaction open.
	// After DATA and BDAT LAST it runs once the replies have been written
	// (or, with more pipelined commands buffered, queued behind them), so
	// work the client need not wait for, such as logging, belongs here.
	Reset()
}

// Reply is the outcome for one recipient after DATA.
type Reply struct {
	Status *status.Status
	// Lines are optional extra lines sent before the final line as a
	// multi-line reply ("250-2.0.0 ..." then "250 2.0.0 ..."), e.g. filter
	// actions. Each is sanitized (status.Sanitize); at most 64 are sent.
	Lines []string
}

// Replies of the session; see also command.go.
var (
	replyOK            = status.New(250, "2.0.0", "ok")
	replyMailOK        = status.New(250, "2.1.0", "ok")
	replyRcptOK        = status.New(250, "2.1.5", "ok")
	replyVRFY          = status.New(252, "2.5.0", "cannot verify, will attempt delivery")
	replyHelp          = status.New(214, "2.0.0", "commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY (RFC 2033)")
	replyBye           = status.New(221, "2.0.0", "bye")
	replyNeedLHLO      = status.New(503, "5.5.1", "send LHLO first")
	replyNestedMail    = status.New(503, "5.5.1", "nested MAIL command")
	replyNeedMail      = status.New(503, "5.5.1", "need MAIL command")
	replyNoRcpts       = status.New(503, "5.5.1", "no valid recipients")
	replyTooManyRcpts  = status.New(452, "4.5.3", "too many recipients")
	replyTooBig        = status.New(552, "5.3.4", "message size exceeds fixed maximum message size")
	replyNeedUTF8      = status.New(553, "5.6.7", "non-ASCII address requires SMTPUTF8")
	replyBareLF        = status.New(550, "5.6.0", "bare LF in message; use CRLF line endings")
	replySpool         = status.Unknown // 451 4.3.0
	replyIdle          = status.New(421, "4.4.2", "idle timeout")
	replyDataTimeout   = status.New(421, "4.4.2", "timeout")
	replyShutdown      = status.New(421, "4.3.2", "shutting down")
	replyChunkFailed   = status.New(503, "5.5.1", "a previous chunk failed; send RSET")
	replyDataAfterBDAT = status.New(503, "5.5.1", "DATA after BDAT")
	replyRcptAfterBDAT = status.New(503, "5.5.1", "RCPT after BDAT")
	replyHelpChunking  = status.New(214, "2.0.0", "commands: LHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY (RFC 2033, RFC 3030)")
)

// errOutOfStep ends a session after a BDAT command that could not be
// read (or was not offered), so that where its chunk ends is unknown: the
// chunk's bytes must never be read as commands.
var errOutOfStep = errors.New("lmtp: a BDAT command could not be framed; the session is out of step")

// Session is one LMTP connection.
type Session struct {
	conn  net.Conn
	cfg   Config
	b     Backend
	spool func() (*os.File, error)
	dr    *deadlineReader
	br    *bufio.Reader
	bw    *bufio.Writer
	sw    *bufio.Writer // spool writer, reused
	line  []byte        // buffer for lines longer than one read

	greeted bool
	inTx    bool
	utf8    bool // MAIL had SMTPUTF8
	rcpts   []Recipient

	// A BDAT transaction: the body so far; its spool (nil if none could
	// be made, with the reason in bodyErr, and closed as soon as the body
	// has failed); and the failure of an earlier chunk, which the LAST
	// chunk then reports for every recipient.
	body      *Chunks
	bodySpool *spill
	bodyErr   error
	failed    *status.Status

	mu       sync.Mutex
	shutdown bool
	idle     bool // blocked reading a command outside a transaction
}

// NewSession prepares a session on conn, which must support deadlines (a
// *net.UnixConn, *net.TCPConn or one end of net.Pipe). spool is called
// at most once per DATA or BDAT transaction, for a file to hold a message
// that outgrows Config.SpoolMemory; it should return a file that is
// already unlinked (or remove it itself), because the session only closes
// it. Serve closes conn when it returns.
func NewSession(conn net.Conn, cfg Config, b Backend, spool func() (*os.File, error)) *Session {
	if cfg.MaxLine == 0 {
		cfg.MaxLine = DefaultMaxLine
	}
	cfg.MaxLine = min(max(cfg.MaxLine, MinMaxLine), MaxMaxLine)
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = DefaultMaxRecipients
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.DataTimeout <= 0 {
		cfg.DataTimeout = DefaultDataTimeout
	}
	if cfg.BareLF != BareLFAccept {
		cfg.BareLF = BareLFReject
	}
	cfg.Hostname = sanitizeHost(cfg.Hostname)
	s := &Session{conn: conn, cfg: cfg, b: b, spool: spool}
	s.dr = &deadlineReader{conn: conn}
	s.br = bufio.NewReaderSize(s.dr, readBufferSize)
	s.bw = bufio.NewWriter(&deadlineWriter{conn: conn, timeout: cfg.IdleTimeout})
	return s
}

func sanitizeHost(h string) string {
	f := strings.Fields(status.Sanitize(h))
	if len(f) == 0 {
		return "localhost"
	}
	return f[0]
}

// deadlineReader sets a read deadline before every read while perRead is
// set (DATA); otherwise the caller sets one deadline per command line.
type deadlineReader struct {
	conn    net.Conn
	perRead time.Duration
}

// A failure to set a deadline is left to the read or write itself to
// report: on a socket it fails only when the descriptor is closed, while
// net.Pipe fails it once the peer has gone, which would hide the EOF.
func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.perRead > 0 {
		d.conn.SetReadDeadline(time.Now().Add(d.perRead))
	}
	return d.conn.Read(p)
}

// deadlineWriter bounds every write, so a client that stops reading cannot
// hold the session forever.
type deadlineWriter struct {
	conn    net.Conn
	timeout time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.conn.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.conn.Write(p)
}

// Shutdown asks the session to end: a transaction in progress (after MAIL)
// is finished, then the session sends "421 4.3.2 shutting down" instead of
// reading the next command, and closes. A session waiting for a command
// outside a transaction is woken at once. It is safe to call from any
// goroutine, more than once, and after Serve has returned.
func (s *Session) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdown = true
	if s.idle {
		s.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// Serve runs the session until QUIT, end of input, a timeout, Shutdown or
// a fatal I/O error, and closes the connection. It returns nil after QUIT,
// Shutdown or a client hang-up between commands, and an error otherwise
// (timeouts wrap os.ErrDeadlineExceeded).
func (s *Session) Serve() (err error) {
	defer func() {
		if s.inTx {
			s.endTx()
		}
		if ferr := s.bw.Flush(); err == nil && ferr != nil && !errors.Is(ferr, net.ErrClosed) {
			err = ferr
		}
		s.conn.Close()
	}()
	s.send(nil, fmt.Sprintf("220 %s LMTP lda ready", s.cfg.Hostname))
	for {
		if !s.lineBuffered() {
			if err := s.bw.Flush(); err != nil {
				return err
			}
		}
		s.mu.Lock()
		if s.shutdown && !s.inTx {
			s.mu.Unlock()
			s.send(replyShutdown)
			return nil
		}
		s.idle = !s.inTx
		s.conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		s.mu.Unlock()

		line, st, bdat, err := s.readLine()

		s.mu.Lock()
		s.idle = false
		shutdown := s.shutdown
		s.mu.Unlock()
		if err != nil {
			switch {
			case isTimeout(err) && shutdown && !s.inTx:
				s.send(replyShutdown)
				return nil
			case isTimeout(err):
				s.send(replyIdle)
				return fmt.Errorf("lmtp: idle timeout: %w", err)
			case err == io.EOF:
				return nil
			}
			return err
		}
		if st != nil {
			s.send(st)
			if bdat {
				s.linger()
				return errOutOfStep
			}
			continue
		}
		quit, err := s.handle(line)
		if errors.Is(err, errOutOfStep) {
			s.linger()
		}
		if err != nil || quit {
			return err
		}
	}
}

// linger ends a session that is out of step: the last reply is flushed
// and the sending side shut, then whatever the client has sent is read and
// dropped for up to a second (at most 1 MiB), so that closing with input
// unread does not reset a TCP connection and lose the reply.
func (s *Session) linger() {
	s.bw.Flush()
	if cw, ok := s.conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	s.conn.SetReadDeadline(time.Now().Add(time.Second))
	io.CopyN(io.Discard, s.br, 1<<20)
}

// bdatLine reports whether a command line is a BDAT command, well formed
// or not: after any spaces, "BDAT" in any case, then the end of the line,
// a space, a tab or a digit. A chunk may follow such a line, so one that
// cannot be read must end the session.
func bdatLine(line []byte) bool {
	line = bytes.TrimLeft(line, " ")
	if len(line) < 4 || !equalFoldASCII(string(line[:4]), "BDAT") {
		return false
	}
	if len(line) == 4 {
		return true
	}
	c := line[4]
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c >= '0' && c <= '9'
}

// lineBuffered reports whether a whole command line is already buffered,
// so that replies can wait (pipelining, RFC 2920).
func (s *Session) lineBuffered() bool {
	n := s.br.Buffered()
	if n == 0 {
		return false
	}
	buf, _ := s.br.Peek(n)
	return bytes.IndexByte(buf, '\n') >= 0
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// readLine reads one command line of at most MaxLine bytes including its
// terminator and returns it without the terminator. A longer line is read
// to its end and discarded (500 5.5.2); a line ended by a bare LF is
// refused under the reject policy (500 5.5.2). bdat reports that a refused
// line is a BDAT line (bdatLine), so that a chunk may follow it.
func (s *Session) readLine() (line []byte, st *status.Status, bdat bool, err error) {
	tooLong := false
	s.line = s.line[:0]
	for first := true; ; first = false {
		frag, err := s.br.ReadSlice('\n')
		if first && err != nil {
			// A line longer than the buffer: its start is gone once
			// the rest is read. (A whole line is looked at only if
			// it is refused.)
			bdat = bdatLine(frag)
		}
		if err == nil && len(s.line) == 0 && !tooLong {
			line = frag // the common case: no copy
			break
		}
		if len(s.line)+len(frag) > s.cfg.MaxLine {
			tooLong = true
			s.line = s.line[:0]
		} else if !tooLong {
			s.line = append(s.line, frag...)
		}
		if err == nil {
			line = s.line
			break
		}
		if err != bufio.ErrBufferFull {
			return nil, nil, false, err // a partial line at EOF is dropped
		}
	}
	if tooLong || len(line) > s.cfg.MaxLine {
		return nil, replyLineTooLong, bdat || bdatLine(line), nil
	}
	if len(line) >= 2 && line[len(line)-2] == '\r' {
		return line[:len(line)-2], nil, false, nil
	}
	if s.cfg.BareLF != BareLFAccept {
		return nil, replyBareLFCommand, bdatLine(line), nil
	}
	return line[:len(line)-1], nil, false, nil
}

// send queues a reply: st's line, or the given lines (the last one final).
func (s *Session) send(st *status.Status, lines ...string) {
	if st != nil {
		lines = append(lines, st.Reply())
	}
	for _, l := range lines {
		s.bw.WriteString(l)
		s.bw.WriteString("\r\n")
	}
}

// checked returns st, or 451 4.3.0 if st is not a valid status.
func checked(st *status.Status) *status.Status {
	if st == nil || st.Validate() != nil {
		return replySpool
	}
	return st
}

// orChecked returns def for a nil backend status, and replaces one that
// fails Validate by 451 4.3.0 before the caller decides on its class.
func orChecked(st, def *status.Status) *status.Status {
	if st == nil {
		return def
	}
	return checked(st)
}

// endTx ends the transaction, if any: its state and BDAT spool go, and
// the backend is reset.
func (s *Session) endTx() {
	s.inTx, s.utf8, s.rcpts = false, false, s.rcpts[:0]
	if s.bodySpool != nil {
		s.bodySpool.Close()
	}
	s.body, s.bodySpool, s.bodyErr, s.failed = nil, nil, nil, nil
	s.b.Reset()
}

// handle executes one command line.
func (s *Session) handle(line []byte) (quit bool, err error) {
	cmd, perr := ParseCommand(line)
	var st *status.Status
	if perr != nil && !errors.As(perr, &st) {
		st = status.Unknown.Wrap(perr) // ParseCommand returns a Status; never trust that blindly
	}
	if (st != nil || !s.cfg.Chunking && cmd.Verb == "BDAT") && bdatLine(line) {
		// A BDAT that cannot be read (or is not offered): where its
		// chunk ends is unknown.
		s.send(or(st, replyUnrecognized))
		return false, errOutOfStep
	}
	switch cmd.Verb {
	case "":
		s.send(st)
	case "HELO", "EHLO":
		s.send(replyUseLHLO)
	case "LHLO":
		if st != nil {
			s.send(st)
			break
		}
		if s.inTx {
			s.endTx()
		}
		if hs := orChecked(s.b.Hello(cmd.Arg), replyOK); !hs.OK() {
			s.greeted = false
			s.send(hs)
			break
		}
		s.greeted = true
		lines := []string{"250-" + s.cfg.Hostname, "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-8BITMIME"}
		if s.cfg.Chunking {
			lines = append(lines, "250-CHUNKING")
		}
		lines = append(lines, "250-SIZE "+strconv.FormatInt(s.cfg.MaxSize, 10), "250-SMTPUTF8")
		if s.cfg.Extensions {
			lines = append(lines, "250-XLDA 1")
		}
		lines[len(lines)-1] = "250 " + lines[len(lines)-1][4:]
		s.send(nil, lines...)
	case "MAIL":
		s.send(s.mail(cmd, st))
	case "RCPT":
		s.send(s.rcpt(cmd, st))
	case "DATA":
		switch {
		case !s.inTx:
			s.send(replyNeedMail)
		case len(s.rcpts) == 0:
			s.send(replyNoRcpts)
		case st != nil:
			s.send(st)
		case s.body != nil:
			s.send(replyDataAfterBDAT) // RFC 3030 section 3: the transaction goes on
		default:
			return false, s.data()
		}
	case "BDAT":
		return false, s.bdat(cmd)
	case "RSET":
		if st != nil {
			s.send(st)
			break
		}
		s.endTx() // for every RSET, in a transaction or not
		s.send(replyOK)
	case "NOOP":
		s.send(or(st, replyOK))
	case "VRFY":
		s.send(or(st, replyVRFY))
	case "HELP":
		help := replyHelp
		if s.cfg.Chunking {
			help = replyHelpChunking
		}
		s.send(or(st, help))
	case "QUIT":
		if st != nil {
			s.send(st)
			break
		}
		s.send(replyBye)
		return true, nil
	default:
		s.send(replyUnrecognized)
	}
	return false, nil
}

func or(a, b *status.Status) *status.Status {
	if a != nil {
		return a
	}
	return b
}

// mail checks MAIL in this order: sequence (503), syntax of the address
// (501 5.1.3) and parameters (501 5.5.4), parameter names (555) and values
// (501 5.5.4) in the order given, SMTPUTF8 (553 5.6.7), SIZE (552 5.3.4),
// then the backend.
func (s *Session) mail(cmd Command, st *status.Status) *status.Status {
	switch {
	case !s.greeted:
		return replyNeedLHLO
	case s.inTx:
		return replyNestedMail
	case st != nil:
		return st
	}
	mp, st := parseMailParams(cmd.Params)
	switch {
	case st != nil:
		return st
	case !mp.SMTPUTF8 && !isASCII(cmd.Arg):
		return replyNeedUTF8
	case mp.Size > s.cfg.MaxSize:
		return replyTooBig
	}
	st = orChecked(s.b.Mail(cmd.Arg, mp), replyMailOK)
	if st.OK() {
		s.inTx, s.utf8, s.rcpts = true, mp.SMTPUTF8, s.rcpts[:0]
	}
	return st
}

// rcpt checks RCPT like mail, then the recipient limit (452 4.5.3).
func (s *Session) rcpt(cmd Command, st *status.Status) *status.Status {
	switch {
	case !s.greeted:
		return replyNeedLHLO
	case !s.inTx:
		return replyNeedMail
	case s.body != nil:
		return replyRcptAfterBDAT
	case st != nil:
		return st
	}
	r, st := parseRcptParams(cmd.Arg, cmd.Params, s.cfg.Extensions)
	switch {
	case st != nil:
		return st
	case !s.utf8 && !isASCII(r.Addr):
		return replyNeedUTF8
	case len(s.rcpts) >= s.cfg.MaxRecipients:
		return replyTooManyRcpts
	}
	st = orChecked(s.b.Rcpt(r), replyRcptOK)
	if st.OK() {
		s.rcpts = append(s.rcpts, r)
	}
	return st
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// data runs DATA after the sequence checks: 354, the body into the spool
// file, then one reply per accepted recipient. It returns an error only
// when the connection is unusable.
func (s *Session) data() error {
	defer s.endTx()
	// The 354 goes out before the spool is made: the client's turn to
	// the body hides making it (a memfd_create and the file's wrapper),
	// which used to delay the 354 and with it every pipelined message.
	// A spool that cannot be made fails each recipient after the body,
	// as it did before, and the body is read and thrown away.
	s.send(nil, "354 go ahead")
	if err := s.bw.Flush(); err != nil {
		return err
	}
	sp, spoolErr := newSpill(s.cfg.SpoolMemory, s.spool)
	if sp != nil {
		defer sp.Close()
	}
	var w io.Writer = io.Discard
	if spoolErr == nil {
		s.sw = resetWriter(s.sw, sp)
		w = s.sw
	}
	s.dr.perRead = s.cfg.DataTimeout
	n, err := ReadData(s.br, w, s.cfg.MaxSize, s.cfg.BareLF)
	s.dr.perRead = 0
	if err != nil && !errors.Is(err, ErrTooBig) && !errors.Is(err, ErrBareLF) && !errors.Is(err, ErrWrite) {
		if isTimeout(err) {
			s.send(replyDataTimeout)
			return fmt.Errorf("lmtp: data timeout: %w", err)
		}
		return err // EOF within DATA or a read error
	}
	s.deliver(n, err, sp, spoolErr)
	return nil
}

// deliver ends a body read in full (by DATA or BDAT LAST), n bytes in sp
// through s.sw, or spoolErr if no spool could be made, and bodyErr the
// body's own error (ErrTooBig, ErrBareLF, ErrWrite): one reply per
// accepted recipient, from the backend or for the error.
func (s *Session) deliver(n int64, bodyErr error, sp *spill, spoolErr error) {
	var st *status.Status
	var f *os.File
	switch {
	case bodyErr == nil && spoolErr != nil:
		st = status.FromSpool(spoolErr)
	case bodyErr == nil:
		err := s.sw.Flush()
		if err == nil {
			f, err = sp.file()
		}
		if err != nil {
			st = status.FromSpool(err)
		}
	case errors.Is(bodyErr, ErrTooBig):
		st = replyTooBig
	case errors.Is(bodyErr, ErrBareLF):
		st = replyBareLF
	default: // ErrWrite
		st = status.FromSpool(bodyErr)
	}
	if st != nil {
		s.spoolError(st)
		for range s.rcpts {
			s.send(st)
		}
	} else {
		replies := s.b.Data(f, n, s.rcpts)
		for i := range s.rcpts {
			var r Reply
			if i < len(replies) {
				r = replies[i]
			}
			s.sendReply(r)
		}
	}
	// The replies go out now, before the transaction ends, so that what
	// ending it does (the backend's Reset, closing the spool) is not in
	// the client's wait. As after any command, they wait instead while
	// more pipelined commands are buffered. A write error stays in s.bw
	// for Serve's next Flush.
	if !s.lineBuffered() {
		s.bw.Flush()
	}
}

// spoolError tells Config.SpoolError why the spool failed; a refusal of
// the message itself (size, bare LF) is not a spool failure.
func (s *Session) spoolError(st *status.Status) {
	if s.cfg.SpoolError != nil && st != replyTooBig && st != replyBareLF {
		s.cfg.SpoolError(st)
	}
}

// bdat runs one well-formed BDAT command (RFC 3030; RFC 2033 section
// 4.3); handle has ended the session for one that is not. Its chunk is
// read whatever the outcome, so the next command is read in step. A chunk
// refused by the sequence (no LHLO, no MAIL, no accepted recipient) gets
// one 503 and leaves the transaction as it was. A chunk that passes the
// size limit, or that the spool cannot take, fails the transaction with
// one reply; after it, every chunk but the LAST gets 503, and the LAST
// gets that failure once per accepted recipient and ends the transaction.
// The LAST chunk of a sound transaction gets one reply per accepted
// recipient, as DATA does.
func (s *Session) bdat(cmd Command) error {
	var refuse *status.Status
	switch {
	case !s.greeted:
		refuse = replyNeedLHLO
	case !s.inTx:
		refuse = replyNeedMail
	case len(s.rcpts) == 0:
		refuse = replyNoRcpts
	case s.failed != nil && !cmd.Last:
		refuse = replyChunkFailed
	}
	if refuse != nil || s.failed != nil {
		if err := s.readChunk(nil, cmd.Chunk); err != nil {
			return err
		}
		if refuse != nil {
			s.send(refuse)
			return nil
		}
		for range s.rcpts {
			s.send(s.failed)
		}
		s.endTx()
		return nil
	}
	if s.body == nil {
		s.bodySpool, s.bodyErr = newSpill(s.cfg.SpoolMemory, s.spool)
		var w io.Writer = io.Discard
		if s.bodyErr == nil {
			s.sw = resetWriter(s.sw, s.bodySpool)
			w = s.sw
		}
		s.body = NewChunks(w, s.cfg.MaxSize, s.cfg.BareLF)
	}
	if err := s.readChunk(s.body, cmd.Chunk); err != nil {
		return err
	}
	if s.body.Err() != nil && s.bodySpool != nil {
		// The outcome is settled and nothing more is written: the spool
		// need not be held until the LAST chunk or RSET.
		s.bodySpool.Close()
		s.bodySpool = nil
	}
	if cmd.Last {
		defer s.endTx()
		n, err := s.body.End()
		s.deliver(n, err, s.bodySpool, s.bodyErr)
		return nil
	}
	var st *status.Status
	switch err := s.body.Err(); {
	case s.bodyErr != nil:
		st = status.FromSpool(s.bodyErr)
	case errors.Is(err, ErrTooBig):
		st = replyTooBig
	case errors.Is(err, ErrWrite):
		st = status.FromSpool(err)
	default: // nothing yet, or a bare LF: refused at the LAST chunk
		s.send(status.New(250, "2.0.0", strconv.FormatInt(cmd.Chunk, 10)+" octets received"))
		return nil
	}
	s.failed = st
	s.spoolError(st)
	s.send(st)
	return nil
}

// readChunk reads a chunk of size bytes into body, or discards it if body
// is nil, each read bounded by DataTimeout. An error means the connection
// is unusable.
func (s *Session) readChunk(body *Chunks, size int64) (err error) {
	s.dr.perRead = s.cfg.DataTimeout
	if body != nil {
		err = body.Read(s.br, size)
	} else {
		for size > 0 && err == nil {
			var k int
			k, err = s.br.Discard(int(min(size, 1<<30)))
			size -= int64(k)
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	s.dr.perRead = 0
	if isTimeout(err) {
		s.send(replyDataTimeout)
		return fmt.Errorf("lmtp: data timeout: %w", err)
	}
	return err
}

func resetWriter(w *bufio.Writer, f io.Writer) *bufio.Writer {
	if w == nil {
		return bufio.NewWriterSize(f, spoolBufferSize)
	}
	w.Reset(f)
	return w
}

// sendReply sends one per-recipient reply, multi-line if it has Lines
// (RFC 2034: every line carries the enhanced code).
func (s *Session) sendReply(r Reply) {
	st := checked(r.Status)
	extra := r.Lines
	if len(extra) > maxReplyLines {
		extra = extra[:maxReplyLines]
	}
	lines := make([]string, 0, len(extra))
	for _, l := range extra {
		lines = append(lines, fmt.Sprintf("%d-%s %s", st.Code, st.Enhanced, status.Sanitize(l)))
	}
	s.send(st, lines...)
}

// equalFoldASCII is strings.EqualFold for a keyword: s matches t (ASCII)
// in any case, and only in ASCII. strings.EqualFold folds Unicode too, so
// "LA\u017fT" (U+017F, long s) would equal "LAST" and "po\u017ftmaster"
// "postmaster".
func equalFoldASCII(s, t string) bool {
	return len(s) == len(t) && isASCII(s) && strings.EqualFold(s, t)
}
