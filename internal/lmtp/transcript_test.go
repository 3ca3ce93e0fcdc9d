package lmtp

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"lda/internal/status"
)

var update = flag.Bool("update", false, "rewrite the S: and B: lines of testdata/transcripts/*.txt from the server's actual output")

// fakeBackend answers by the local part of the address and records every
// call, so that transcripts show what the backend saw.
type fakeBackend struct {
	mu     sync.Mutex
	events []string
}

func (b *fakeBackend) log(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, fmt.Sprintf(format, args...))
}

func (b *fakeBackend) Events() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.events...)
}

func localPart(addr string) string {
	l, _, _ := strings.Cut(addr, "@")
	return strings.ToLower(strings.Trim(l, `"`))
}

func (b *fakeBackend) Hello(domain string) *status.Status {
	b.log("hello %q", domain)
	if domain == "refused.example" {
		return status.New(550, "5.7.1", "not welcome")
	}
	return nil
}

func (b *fakeBackend) Mail(from string, p MailParams) *status.Status {
	b.log("mail %q size=%d body=%q smtputf8=%v ret=%q envid=%q", from, p.Size, p.Body, p.SMTPUTF8, p.Ret, p.EnvID)
	switch localPart(from) {
	case "mailfail":
		return status.New(451, "4.3.0", "sender check failed")
	case "mailok":
		return status.New(250, "2.1.0", "sender fine\r\n250 2.1.0 forged")
	}
	return nil
}

func (b *fakeBackend) Rcpt(r Recipient) *status.Status {
	b.log("rcpt %q notify=%q orcpt=%q user=%q dest=%q filter=%q", r.Addr, r.Notify, r.ORcpt, r.User, r.Dest, r.Filter)
	switch localPart(r.Addr) {
	case "unknown":
		return status.UnknownUser
	case "temp":
		return status.MailboxBusy
	case "inject":
		return &status.Status{Code: 250, Enhanced: "2.1.5", Text: "ok\r\n250 2.1.5 forged\x00"}
	case "invalid":
		return &status.Status{Code: 250, Enhanced: "5.1.1", Text: "inconsistent"}
	}
	if r.Notify != "" || r.ORcpt != "" || r.User != "" || r.Dest != "" || r.Filter != "" {
		return status.New(250, "2.1.5", fmt.Sprintf("ok notify=%q orcpt=%q user=%q dest=%q filter=%q",
			r.Notify, r.ORcpt, r.User, r.Dest, r.Filter))
	}
	return nil
}

func (b *fakeBackend) Data(msg *os.File, size int64, rcpts []Recipient) []Reply {
	body, err := io.ReadAll(io.NewSectionReader(msg, 0, size+1))
	if err != nil || int64(len(body)) != size {
		b.log("data: read %d of %d bytes: %v", len(body), size, err)
		return nil
	}
	var addrs []string
	for _, r := range rcpts {
		addrs = append(addrs, r.Addr)
	}
	q := strconv.Quote(string(body))
	if len(q) > 400 {
		q = q[:400] + "..."
	}
	b.log("data size=%d rcpts=%q body=%s", size, addrs, q)
	replies := make([]Reply, 0, len(rcpts))
	short := false
	for _, r := range rcpts {
		switch localPart(r.Addr) {
		case "full":
			replies = append(replies, Reply{Status: status.QuotaExceeded})
		case "filter":
			replies = append(replies, Reply{Status: status.Delivered, Lines: []string{
				`sieve: fileinto "Lists.go"`, "sieve: addflag \\Seen\r\n250 2.0.0 forged", "sieve: keep"}})
		case "echo":
			var lines []string
			for q := strconv.Quote(string(body)); q != ""; {
				n := min(len(q), 120)
				lines = append(lines, "body "+q[:n])
				q = q[n:]
			}
			replies = append(replies, Reply{Status: status.New(250, "2.0.0", fmt.Sprintf("delivered %d bytes", size)), Lines: lines})
		case "nostatus":
			replies = append(replies, Reply{})
		case "short":
			short = true
			replies = append(replies, Reply{Status: status.Delivered})
		default:
			replies = append(replies, Reply{Status: status.Delivered})
		}
	}
	if short {
		replies = replies[:len(replies)-1]
	}
	return replies
}

func (b *fakeBackend) Reset() { b.log("reset") }

// spooler hands out unlinked temporary files and remembers them, so that a
// test can check the session closed them.
type spooler struct {
	dir   string
	mode  string // "", "fail", "broken" or "full"
	mu    sync.Mutex
	files []*os.File
}

func (s *spooler) spool() (*os.File, error) {
	switch s.mode {
	case "fail":
		return nil, errors.New("spool: no space left (test)")
	case "full": // every write fails with ENOSPC
		f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
		s.track(f)
		return f, err
	case "broken": // a read-only descriptor: every write fails
		f, err := os.Open(os.DevNull)
		s.track(f)
		return f, err
	}
	f, err := os.CreateTemp(s.dir, "spool")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	s.track(f)
	return f, nil
}

func (s *spooler) track(f *os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files = append(s.files, f)
}

func (s *spooler) checkClosed(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.files {
		if err := f.Close(); !errors.Is(err, os.ErrClosed) {
			t.Errorf("spool file %s was not closed by the session", f.Name())
		}
	}
}

// transcript is a parsed testdata/transcripts file:
//
//	# comment; "# config: key=value ..." sets Config fields (see applyConfig)
//	C: a command line, sent with CRLF appended
//	C! "a Go-quoted string sent as is"
//	S: an expected server line (without CRLF)
//	B: an expected backend event (all at the end, in call order)
//
// In C: and C! lines, {{N:text}} stands for text repeated N times.
// Consecutive C lines are sent in one write (pipelining); the S lines after
// them are the replies they produce.
type transcript struct {
	config string
	blocks []*block
	events []string
}

type block struct {
	pre    []string // comment lines before the block
	cmds   []string // C: and C! lines as written
	expect []string
}

func parseTranscript(data string) (*transcript, error) {
	tr := &transcript{}
	cur := &block{}
	tr.blocks = append(tr.blocks, cur)
	var pre []string
	for i, line := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# config:"):
			tr.config = strings.TrimSpace(strings.TrimPrefix(line, "# config:"))
			pre = append(pre, line)
		case line == "" || strings.HasPrefix(line, "#"):
			pre = append(pre, line)
		case strings.HasPrefix(line, "C: ") || strings.HasPrefix(line, "C! ") || line == "C:":
			// A C line continues the current block (one write) unless
			// replies or comments came between.
			if len(cur.cmds) == 0 || len(cur.expect) > 0 || len(pre) > 0 {
				cur = &block{}
				tr.blocks = append(tr.blocks, cur)
			}
			cur.pre, pre = append(cur.pre, pre...), nil
			cur.cmds = append(cur.cmds, line)
		case strings.HasPrefix(line, "S: "):
			if len(cur.cmds) == 0 && len(cur.expect) == 0 {
				cur.pre, pre = append(cur.pre, pre...), nil
			}
			cur.expect = append(cur.expect, line[3:])
		case strings.HasPrefix(line, "B: "):
			tr.events = append(tr.events, line[3:])
		default:
			return nil, fmt.Errorf("line %d: unknown line %q", i+1, line)
		}
	}
	if len(pre) > 0 {
		cur = &block{pre: pre}
		tr.blocks = append(tr.blocks, cur)
	}
	return tr, nil
}

var repeatMacro = regexp.MustCompile(`\{\{(\d+):([^}]*)\}\}`)

// wire returns the bytes a C: or C! line sends.
func wire(line string) (string, error) {
	expand := repeatMacro.ReplaceAllStringFunc(line, func(m string) string {
		sub := repeatMacro.FindStringSubmatch(m)
		n, _ := strconv.Atoi(sub[1])
		return strings.Repeat(sub[2], n)
	})
	switch {
	case expand == "C:":
		return "\r\n", nil
	case strings.HasPrefix(expand, "C: "):
		return expand[3:] + "\r\n", nil
	}
	return strconv.Unquote(expand[3:])
}

func (tr *transcript) format() string {
	var b strings.Builder
	for _, bl := range tr.blocks {
		for _, l := range bl.pre {
			b.WriteString(l + "\n")
		}
		for _, l := range bl.cmds {
			b.WriteString(l + "\n")
		}
		for _, l := range bl.expect {
			b.WriteString("S: " + l + "\n")
		}
	}
	for _, e := range tr.events {
		b.WriteString("B: " + e + "\n")
	}
	return b.String()
}

// applyConfig sets the fields named in a "# config:" line.
func applyConfig(cfg *Config, sp *spooler, spec string) error {
	for _, kv := range strings.Fields(spec) {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "idle":
			cfg.IdleTimeout, err = time.ParseDuration(v)
		case "data":
			cfg.DataTimeout, err = time.ParseDuration(v)
		case "maxline":
			cfg.MaxLine, err = strconv.Atoi(v)
		case "maxrcpt":
			cfg.MaxRecipients, err = strconv.Atoi(v)
		case "maxsize":
			cfg.MaxSize, err = strconv.ParseInt(v, 10, 64)
		case "barelf":
			cfg.BareLF = v
		case "ext":
			cfg.Extensions, err = strconv.ParseBool(v)
		case "chunking":
			cfg.Chunking, err = strconv.ParseBool(v)
		case "host":
			cfg.Hostname = v
		case "spool":
			sp.mode = v
		default:
			err = errors.New("unknown key")
		}
		if err != nil {
			return fmt.Errorf("config %q: %v", kv, err)
		}
	}
	return nil
}

// replyLine is the shape of every server line: a reply code, "-" or " ",
// then printable text; the CRLF was stripped by the reader.
var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9]([ -][^\x00-\x1f\x7f]*)?$`)

func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/transcripts/*.txt")
	if err != nil || len(files) < 15 {
		t.Fatalf("transcripts: %d files, %v", len(files), err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			t.Parallel()
			runTranscript(t, file)
		})
	}
}

func runTranscript(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := parseTranscript(string(data))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	cfg := DefaultConfig()
	cfg.Hostname = "lmtp.test"
	cfg.IdleTimeout, cfg.DataTimeout = 5*time.Second, 5*time.Second
	sp := &spooler{dir: t.TempDir()}
	if err := applyConfig(&cfg, sp, tr.config); err != nil {
		t.Fatal(err)
	}
	client, server := net.Pipe()
	defer client.Close()
	b := &fakeBackend{}
	served := make(chan error, 1)
	go func() { served <- NewSession(server, cfg, b, sp.spool).Serve() }()

	lines := make(chan string, 4096)
	go func() {
		defer close(lines)
		br := bufio.NewReader(client)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				if l != "" {
					lines <- "UNTERMINATED " + strconv.Quote(l)
				}
				return
			}
			if !strings.HasSuffix(l, "\r\n") {
				l = "BARE-LF " + strconv.Quote(l)
			}
			lines <- strings.TrimSuffix(l, "\r\n")
		}
	}()
	eof := false
	next := func(wait time.Duration) (string, bool) {
		if eof {
			return "", false
		}
		select {
		case l, ok := <-lines:
			eof = !ok
			return l, ok
		case <-time.After(wait):
			return "", false
		}
	}

	var got [][]string
	for i, bl := range tr.blocks {
		var out []byte
		for _, c := range bl.cmds {
			w, err := wire(c)
			if err != nil {
				t.Fatalf("%s: %q: %v", file, c, err)
			}
			out = append(out, w...)
		}
		if len(out) > 0 {
			client.SetWriteDeadline(time.Now().Add(10 * time.Second))
			client.Write(out) // fails once the server has closed: that shows in the replies
		}
		var blockGot []string
		last := i == len(tr.blocks)-1
		switch {
		case last:
			for {
				l, ok := next(10 * time.Second)
				if !ok {
					break
				}
				blockGot = append(blockGot, l)
			}
			if !eof {
				t.Errorf("the server did not close the connection")
			}
		case *update:
			// Lines that arrive before a quiet period belong to this
			// block; the period stays well below the session timeouts.
			quiet := min(300*time.Millisecond, cfg.IdleTimeout/3, cfg.DataTimeout/3)
			for {
				l, ok := next(quiet)
				if !ok {
					break
				}
				blockGot = append(blockGot, l)
			}
		default:
			for range bl.expect {
				l, ok := next(10 * time.Second)
				if !ok {
					break
				}
				blockGot = append(blockGot, l)
			}
		}
		got = append(got, blockGot)
	}
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	sp.checkClosed(t)

	var want, have []string
	for i, bl := range tr.blocks {
		want = append(want, bl.expect...)
		have = append(have, got[i]...)
	}
	for _, l := range have {
		if !replyLine.MatchString(l) {
			t.Errorf("malformed server line %q", l)
		}
	}
	events := b.Events()
	if *update {
		for i, bl := range tr.blocks {
			bl.expect = got[i]
		}
		tr.events = events
		if err := os.WriteFile(file, []byte(tr.format()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if len(want) == 0 {
		t.Fatalf("%s has no S: lines", file)
	}
	compare(t, "server lines", want, have)
	compare(t, "backend events", tr.events, events)
}

func compare(t *testing.T, what string, want, got []string) {
	t.Helper()
	for i := 0; i < max(len(want), len(got)); i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			t.Errorf("%s differ at %d:\n want %q\n got  %q\n(all got: %q)", what, i+1, w, g, got)
			return
		}
	}
}
