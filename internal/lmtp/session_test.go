package lmtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lda/internal/status"
)

// recConn records every Write, to see how replies are batched.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	writes []string
}

func (c *recConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, string(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recConn) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.writes
	c.writes = nil
	return w
}

type testSession struct {
	t      *testing.T
	client net.Conn
	r      *bufio.Reader
	sess   *Session
	b      *fakeBackend
	done   chan error
}

func startSession(t *testing.T, cfg Config, wrap func(net.Conn) net.Conn) *testSession {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close() })
	if wrap != nil {
		server = wrap(server)
	}
	sp := &spooler{dir: t.TempDir()}
	ts := &testSession{t: t, client: client, r: bufio.NewReader(client), b: &fakeBackend{}, done: make(chan error, 1)}
	ts.sess = NewSession(server, cfg, ts.b, sp.spool)
	go func() { ts.done <- ts.sess.Serve() }()
	return ts
}

func (ts *testSession) send(s string) {
	ts.t.Helper()
	ts.client.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(ts.client, s); err != nil {
		ts.t.Fatalf("write %q: %v", s, err)
	}
}

// expect reads one reply line per prefix and checks it.
func (ts *testSession) expect(prefixes ...string) {
	ts.t.Helper()
	ts.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, p := range prefixes {
		l, err := ts.r.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, p) || !strings.HasSuffix(l, "\r\n") {
			ts.t.Fatalf("read %q, %v; want a line starting with %q", l, err, p)
		}
	}
}

func (ts *testSession) expectEOF() {
	ts.t.Helper()
	ts.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := ts.r.ReadString('\n'); err != io.EOF {
		ts.t.Fatalf("read %q, %v; want EOF", l, err)
	}
}

func (ts *testSession) served() error {
	ts.t.Helper()
	select {
	case err := <-ts.done:
		return err
	case <-time.After(5 * time.Second):
		ts.t.Fatal("Serve did not return")
		return nil
	}
}

var lhloReply = []string{"250-", "250-", "250-", "250-", "250-", "250-", "250-", "250 XLDA 1"}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Hostname = "lmtp.test"
	return cfg
}

// TestPipeliningFlush checks RFC 2920 batching: replies to a pipelined
// group go out in one write, flushed when the input is drained or before
// the DATA content is read.
func TestPipeliningFlush(t *testing.T) {
	var rc *recConn
	ts := startSession(t, testConfig(), func(c net.Conn) net.Conn { rc = &recConn{Conn: c}; return rc })
	ts.expect("220 ")
	ts.send("LHLO x\r\n")
	ts.expect(lhloReply...)
	rc.take()

	for _, tc := range []struct {
		name  string
		in    string
		lines []string
	}{
		{"group with DATA", "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<unknown@d.example>\r\nRCPT TO:<e@d.example>\r\nDATA\r\n",
			[]string{"250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "354 "}},
		{"body", "hello\r\n.\r\n", []string{"250 2.0.0", "250 2.0.0"}},
		{"body and next group", "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nx\r\n.\r\nNOOP\r\nRSET\r\n",
			[]string{"250 2.1.0", "250 2.1.5", "354 ", "250 2.0.0", "250 2.0.0", "250 2.0.0"}},
		{"partial line waits for nothing", "NOOP\r\nNOO", []string{"250 2.0.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.t = t
			ts.send(tc.in)
			ts.expect(tc.lines...)
			var got []int
			for _, w := range rc.take() {
				got = append(got, strings.Count(w, "\r\n"))
			}
			want := []int{len(tc.lines)}
			if tc.name == "body and next group" {
				want = []int{3, 3} // DATA is a synchronisation point
			}
			if len(got) != len(want) || got[0] != want[0] || got[len(got)-1] != want[len(want)-1] {
				t.Fatalf("writes carried %v lines, want %v", got, want)
			}
		})
	}
	ts.t = t
	ts.send("P\r\nQUIT\r\n")
	ts.expect("250 ", "221 ")
	ts.expectEOF()
	if err := ts.served(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

// blockingReset is a fakeBackend whose Reset waits until the test lets
// it go.
type blockingReset struct {
	fakeBackend
	release chan struct{}
}

func (b *blockingReset) Reset() {
	select {
	case <-b.release:
	case <-time.After(10 * time.Second):
	}
	b.fakeBackend.Reset()
}

// TestRepliesBeforeReset: the per-recipient replies to DATA and BDAT LAST
// reach the client while the backend's Reset (where the daemon logs) has
// not yet returned.
func TestRepliesBeforeReset(t *testing.T) {
	for _, tc := range []struct {
		name, body string
	}{
		{"DATA", "DATA\r\n"},
		{"BDAT LAST", "BDAT 7 LAST\r\nhello\r\n"},
		{"BDAT LAST refused", "BDAT 6 LAST\r\nhello\n"}, // a bare LF: 550 for each
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			b := &blockingReset{release: make(chan struct{})}
			sess := NewSession(server, testConfig(), b, (&spooler{dir: t.TempDir()}).spool)
			done := make(chan error, 1)
			go func() { done <- sess.Serve() }()
			ts := &testSession{t: t, client: client, r: bufio.NewReader(client), done: done}
			ts.expect("220 ")
			ts.send("LHLO x\r\n")
			ts.expect(lhloReply...)
			ts.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<e@d.example>\r\n" + tc.body)
			ts.expect("250 2.1.0", "250 2.1.5", "250 2.1.5")
			if tc.name == "DATA" {
				ts.expect("354 ")
				ts.send("hello\r\n.\r\n")
			}
			want := []string{"250 2.0.0", "250 2.0.0"}
			if tc.name == "BDAT LAST refused" {
				want = []string{"550 5.6.0", "550 5.6.0"}
			}
			ts.expect(want...) // while Reset waits
			if ev := b.Events(); len(ev) == 0 || ev[len(ev)-1] == "reset" {
				t.Fatalf("backend events %q: Reset done before the replies", ev)
			}
			close(b.release)
			ts.send("QUIT\r\n")
			ts.expect("221 ")
			if err := ts.served(); err != nil {
				t.Fatalf("Serve = %v", err)
			}
			if ev := b.Events(); ev[len(ev)-1] != "reset" {
				t.Fatalf("backend events %q: want the reset last", ev)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		ts := startSession(t, testConfig(), nil)
		ts.expect("220 ")
		ts.send("LHLO x\r\n")
		ts.expect(lhloReply...)
		start := time.Now()
		ts.sess.Shutdown()
		ts.expect("421 4.3.2 ")
		ts.expectEOF()
		if err := ts.served(); err != nil || time.Since(start) > 4*time.Second {
			t.Fatalf("Serve = %v after %v", err, time.Since(start))
		}
	})
	t.Run("before serve", func(t *testing.T) {
		client, server := net.Pipe()
		defer client.Close()
		s := NewSession(server, testConfig(), &fakeBackend{}, nil)
		s.Shutdown()
		done := make(chan error, 1)
		go func() { done <- s.Serve() }()
		r := bufio.NewReader(client)
		for _, want := range []string{"220 ", "421 4.3.2 "} {
			if l, err := r.ReadString('\n'); !strings.HasPrefix(l, want) {
				t.Fatalf("read %q, %v; want %q", l, err, want)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("transaction finishes", func(t *testing.T) {
		ts := startSession(t, testConfig(), nil)
		ts.expect("220 ")
		ts.send("LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
		ts.expect(append(lhloReply, "250 2.1.0", "250 2.1.5")...)
		ts.sess.Shutdown()
		time.Sleep(50 * time.Millisecond) // the session must not give up while in a transaction
		ts.send("RCPT TO:<e@d.example>\r\nDATA\r\n")
		ts.expect("250 2.1.5", "354 ")
		ts.send("body\r\n.\r\nNOOP\r\n")
		ts.expect("250 2.0.0 delivered", "250 2.0.0 delivered", "421 4.3.2 ")
		ts.expectEOF()
		if err := ts.served(); err != nil {
			t.Fatal(err)
		}
		if ev := ts.b.Events(); !strings.HasPrefix(ev[len(ev)-2], "data ") || ev[len(ev)-1] != "reset" {
			t.Fatalf("backend events %q", ev)
		}
	})
	t.Run("concurrent with traffic", func(t *testing.T) {
		ts := startSession(t, testConfig(), nil)
		ts.expect("220 ")
		go func() {
			time.Sleep(20 * time.Millisecond)
			ts.sess.Shutdown()
			ts.sess.Shutdown()
		}()
		// NOOPs until the 421 comes; the session must end either way.
		ts.client.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			for {
				if _, err := io.WriteString(ts.client, "NOOP\r\n"); err != nil {
					return
				}
			}
		}()
		for {
			l, err := ts.r.ReadString('\n')
			if err != nil {
				t.Fatalf("no 421 before %v", err)
			}
			if strings.HasPrefix(l, "421 4.3.2 ") {
				break
			}
		}
		if err := ts.served(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTimeouts(t *testing.T) {
	t.Run("trickled command line", func(t *testing.T) {
		cfg := testConfig()
		cfg.IdleTimeout = 300 * time.Millisecond
		ts := startSession(t, cfg, nil)
		ts.expect("220 ")
		start := time.Now()
		go func() { // one byte every 50ms: each read succeeds, the line never ends
			for i := 0; ; i++ {
				time.Sleep(50 * time.Millisecond)
				if _, err := ts.client.Write([]byte{"NOOP"[i%4]}); err != nil {
					return
				}
			}
		}()
		ts.expect("421 4.4.2 idle timeout")
		err := ts.served()
		if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > 4*time.Second {
			t.Fatalf("Serve = %v after %v", err, time.Since(start))
		}
	})
	t.Run("trickled data is not idle", func(t *testing.T) {
		cfg := testConfig()
		cfg.DataTimeout = 300 * time.Millisecond
		ts := startSession(t, cfg, nil)
		ts.expect("220 ")
		ts.send("LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
		ts.expect(append(lhloReply, "250 ", "250 ", "354 ")...)
		for i := 0; i < 8; i++ { // 800ms in all, never 300ms without a read
			time.Sleep(100 * time.Millisecond)
			ts.send("x")
		}
		ts.send("\r\n.\r\nQUIT\r\n")
		ts.expect("250 2.0.0", "221 ")
		if err := ts.served(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("client that does not read", func(t *testing.T) {
		cfg := testConfig()
		cfg.IdleTimeout = 300 * time.Millisecond
		ts := startSession(t, cfg, nil)
		// Nobody reads the greeting: the write deadline ends the session.
		if err := ts.served(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Serve = %v, want a deadline error", err)
		}
	})
	t.Run("eof within data", func(t *testing.T) {
		ts := startSession(t, testConfig(), nil)
		ts.expect("220 ")
		ts.send("LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
		ts.expect(append(lhloReply, "250 ", "250 ", "354 ")...)
		ts.send("partial\r\n")
		ts.client.Close()
		if err := ts.served(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Serve = %v, want io.ErrUnexpectedEOF", err)
		}
		if ev := ts.b.Events(); ev[len(ev)-1] != "reset" || strings.HasPrefix(ev[len(ev)-2], "data") {
			t.Fatalf("backend events %q", ev)
		}
	})
}

func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      Config
		greeting string
		check    func(*testing.T, Config)
	}{
		{"zero", Config{}, "220 localhost LMTP lda ready\r\n", func(t *testing.T, c Config) {
			if c.MaxLine != 4096 || c.MaxRecipients != 1000 || c.MaxSize != DefaultMaxSize || c.IdleTimeout != 5*time.Minute ||
				c.DataTimeout != 10*time.Minute || c.BareLF != "reject" || c.Extensions {
				t.Fatalf("defaults %+v", c)
			}
		}},
		{"DefaultConfig", DefaultConfig(), "220 localhost LMTP lda ready\r\n", func(t *testing.T, c Config) {
			if !c.Extensions {
				t.Fatal("DefaultConfig has the extension off")
			}
		}},
		{"clamped", Config{MaxLine: 100, BareLF: "bogus"}, "220 localhost LMTP lda ready\r\n", func(t *testing.T, c Config) {
			if c.MaxLine != 512 || c.BareLF != "reject" {
				t.Fatalf("MaxLine %d BareLF %q", c.MaxLine, c.BareLF)
			}
		}},
		{"hostname sanitized", Config{Hostname: "evil\r\n250 injected"}, "220 evil LMTP lda ready\r\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			s := NewSession(server, tc.cfg, &fakeBackend{}, nil)
			if tc.check != nil {
				tc.check(t, s.cfg)
			}
			go s.Serve()
			l, err := bufio.NewReader(client).ReadString('\n')
			if err != nil || l != tc.greeting {
				t.Fatalf("greeting %q, %v; want %q", l, err, tc.greeting)
			}
		})
	}
}

// recordingBackend keeps the last message, for the client test.
type recordingBackend struct {
	fakeBackend
	msg []byte
}

func (b *recordingBackend) Data(msg *os.File, size int64, rcpts []Recipient) []Reply {
	b.msg, _ = io.ReadAll(io.NewSectionReader(msg, 0, size+1))
	return b.fakeBackend.Data(msg, size, rcpts)
}

// TestTextprotoClient runs an independent client implementation
// (net/textproto: its own reply parser, dot-stuffing and CRLF conversion)
// against a session on a real Unix socket, as the daemon will.
func TestTextprotoClient(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "lmtp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	b := &recordingBackend{}
	sp := &spooler{dir: t.TempDir()}
	done := serveOne(ln, b, sp)

	c, err := textproto.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cmd := func(code int, format string, args ...any) string {
		t.Helper()
		id, err := c.Cmd(format, args...)
		if err != nil {
			t.Fatal(err)
		}
		c.StartResponse(id)
		defer c.EndResponse(id)
		_, msg, err := c.ReadResponse(code)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		return msg
	}
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	ext := cmd(250, "LHLO client.example")
	for _, want := range []string{"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "CHUNKING", "SIZE 67108864", "SMTPUTF8", "XLDA 1"} {
		if !strings.Contains(ext, "\n"+want) {
			t.Errorf("LHLO reply %q lacks %q", ext, want)
		}
	}
	cmd(250, "MAIL FROM:<sender@example.org> BODY=8BITMIME SIZE=%d", 300000)
	cmd(250, "RCPT TO:<alice@example.org>")
	cmd(550, "RCPT TO:<unknown@example.org>")
	cmd(250, "RCPT TO:<bob@example.org> XLDA-DEST=maildir:/home/bob/Maildir+23Lists")
	cmd(250, "RCPT TO:<alice@example.org>")
	cmd(354, "DATA")

	// A body with dots at line starts, bare CRs, NULs, 8-bit bytes and
	// lines longer than the session's read buffer. It avoids "\r\n",
	// which DotWriter passes through unconverted.
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("..\r\n\n\x00\xffab c")
	body := make([]byte, 0, 300000)
	for len(body) < 200000 {
		if rng.IntN(200) == 0 {
			body = append(body, bytes.Repeat([]byte{'L'}, 70000+rng.IntN(1000))...)
		}
		ch := alphabet[rng.IntN(len(alphabet))]
		if ch == '\n' && len(body) > 0 && body[len(body)-1] == '\r' {
			ch = 'x'
		}
		body = append(body, ch)
	}
	dw := c.DotWriter()
	if _, err := dw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := dw.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, _, err := c.ReadResponse(250); err != nil {
			t.Fatalf("reply %d after DATA: %v", i+1, err)
		}
	}
	if !bytes.Equal(b.msg, normalise(body)) {
		t.Fatalf("message differs: got %d bytes, want %d", len(b.msg), len(normalise(body)))
	}
	cmd(221, "QUIT")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestSpoolStatus: what a spool that cannot take the message answers,
// for the errors this package's spool writer returns (ErrWrite-wrapped).
func TestSpoolStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"file size limit", fmt.Errorf("%w: %w", ErrWrite, syscall.EFBIG), "552 5.3.4"},
		{"file system full", fmt.Errorf("%w: %w", ErrWrite, syscall.ENOSPC), "452 4.3.1"},
		{"quota", &os.PathError{Op: "write", Path: "spool", Err: syscall.EDQUOT}, "452 4.3.1"},
		{"anything else", errors.New("spool: odd"), "451 4.3.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := status.FromSpool(tc.err)
			if got := fmt.Sprintf("%d %s", st.Code, st.Enhanced); got != tc.want {
				t.Fatalf("%v: %s, want %s", tc.err, got, tc.want)
			}
			if !errors.Is(st, tc.err) {
				t.Fatalf("the cause %v is not kept for the log", tc.err)
			}
		})
	}
}

// TestSpoolErrorReported: the cause of a spool failure reaches
// Config.SpoolError (for the log) while the wire gets the generic reply.
func TestSpoolErrorReported(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	var got []*status.Status
	var mu sync.Mutex
	cfg := testConfig()
	cfg.SpoolError = func(st *status.Status) { mu.Lock(); got = append(got, st); mu.Unlock() }
	sp := &spooler{dir: t.TempDir(), mode: "full"}
	done := make(chan error, 1)
	go func() { done <- NewSession(server, cfg, &fakeBackend{}, sp.spool).Serve() }()
	r := bufio.NewReader(client)
	client.SetDeadline(time.Now().Add(10 * time.Second))
	// net.Pipe is synchronous: write while the replies are read.
	go io.WriteString(client, "LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: x\r\n\r\ny\r\n.\r\nQUIT\r\n")
	var last string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		if strings.HasPrefix(line, "452 ") {
			last = line
		}
	}
	<-done
	if !strings.HasPrefix(last, "452 4.3.1") || strings.Contains(last, "no space") {
		t.Fatalf("wire reply %q, want a generic 452 4.3.1", last)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || !errors.Is(got[0], syscall.ENOSPC) {
		t.Fatalf("SpoolError got %v, want one ENOSPC", got)
	}
}

// TestOutOfStepReplyOverTCP: a BDAT whose size cannot be read ends the
// session with input still unread. Over TCP a plain close would then send
// a reset, which can destroy the reply before the client reads it; the
// session must let the client read its reply and then see an orderly end.
func TestOutOfStepReplyOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback TCP: %v", err)
	}
	defer ln.Close()
	for i := range 2 {
		t.Run(fmt.Sprintf("round%d", i), func(t *testing.T) {
			done := serveOne(ln, &recordingBackend{}, &spooler{dir: t.TempDir()})
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			junk := strings.Repeat("MAIL FROM:<x@example.org>\r\n", 4000) // beyond the session's read buffer
			if _, err := io.WriteString(c, "LHLO mta.example\r\nBDAT many LAST\r\n"+junk); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // let the session answer and close before the client reads
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read after the refusal: %v (got %q)", err, got)
			}
			if !strings.HasSuffix(string(got), "\r\n501 5.5.4 syntax: BDAT size [LAST]\r\n") {
				t.Fatalf("replies %q", got)
			}
			if err := <-done; !errors.Is(err, errOutOfStep) {
				t.Fatalf("Serve returned %v", err)
			}
		})
	}
}

// serveOne serves the next connection on ln with a session of testConfig
// and sends what Serve returned.
func serveOne(ln net.Listener, b Backend, sp *spooler) <-chan error {
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- NewSession(conn, testConfig(), b, sp.spool).Serve()
	}()
	return done
}

// TestSpoolAfter354: the 354 is on the wire before the spool is made, so
// that the client's turn to the body hides making it. The spool function
// here returns a file only once the client has read the 354; made first,
// it would wait in vain and fail, and the recipient would get 451.
func TestSpoolAfter354(t *testing.T) {
	for _, tc := range []struct {
		name   string
		memory int64 // Config.SpoolMemory: 0 makes the disk spool at once
		memfd  bool  // a memfd can be made
	}{
		{"disk spool", 0, true},
		{"memfd refused", 1 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.memfd {
				old := memfdCreate
				memfdCreate = func(string, int) (int, error) { return -1, syscall.ENOSYS }
				t.Cleanup(func() { memfdCreate = old })
			}
			got354 := make(chan struct{})
			sp := &spooler{dir: t.TempDir()}
			made := make(chan bool, 1)
			spool := func() (*os.File, error) {
				select {
				case <-got354:
					made <- true
					return sp.spool()
				case <-time.After(2 * time.Second):
					made <- false
					return nil, errors.New("spool made before the 354 was read")
				}
			}
			client, server := net.Pipe()
			defer client.Close()
			cfg := testConfig()
			cfg.SpoolMemory = tc.memory
			ts := &testSession{t: t, client: client, r: bufio.NewReader(client), b: &fakeBackend{}, done: make(chan error, 1)}
			ts.sess = NewSession(server, cfg, ts.b, spool)
			go func() { ts.done <- ts.sess.Serve() }()
			ts.expect("220 ")
			ts.send("LHLO x\r\n")
			ts.expect(lhloReply...)
			ts.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
			ts.expect("250 2.1.0", "250 2.1.5", "354 ")
			close(got354)
			ts.send("hello\r\n.\r\n")
			ts.expect("250 2.0.0")
			if !<-made {
				t.Fatal("the spool was made before the client had the 354")
			}
			ts.send("QUIT\r\n")
			ts.expect("221 ")
			if err := ts.served(); err != nil {
				t.Fatalf("Serve = %v", err)
			}
		})
	}
}
