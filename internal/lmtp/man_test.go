package lmtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"lda/internal/status"
)

// The protocol manual, whose EXAMPLES are replayed here so that the page
// cannot drift from the engine.
const manPage = "../../man/lda-lmtp.7"

// manTranscript is one example of the manual: a .nf/.fi block made of
// "C: " and "S: " lines only. Blocks without such lines (grammar, LHLO
// listing) are not transcripts.
type manTranscript struct {
	line int      // of the .nf request
	send []byte   // every C: line with CRLF appended; <CR> and <LF> expanded
	want []string // the S: lines
}

// parseManTranscripts extracts the transcripts from the roff source. A
// block that mixes transcript lines with anything else, an unknown roff
// escape or an unterminated block is an error, so that a transcript can
// never be skipped silently.
func parseManTranscripts(page string) ([]manTranscript, error) {
	var out []manTranscript
	var cur *manTranscript
	var other int // a non-transcript line of the current block
	for i, raw := range strings.Split(page, "\n") {
		n := i + 1
		switch {
		case raw == ".nf":
			if cur != nil {
				return nil, fmt.Errorf("line %d: .nf inside the block of line %d", n, cur.line)
			}
			cur, other = &manTranscript{line: n}, 0
			continue
		case raw == ".fi":
			if cur == nil {
				return nil, fmt.Errorf("line %d: .fi without .nf", n)
			}
			isTranscript := len(cur.send) > 0 || len(cur.want) > 0
			if isTranscript && other != 0 {
				return nil, fmt.Errorf("line %d: a transcript (block of line %d) holds a line that is neither C: nor S:", other, cur.line)
			}
			if isTranscript {
				out = append(out, *cur)
			}
			cur = nil
			continue
		}
		if cur == nil || strings.HasPrefix(raw, `.\"`) {
			continue
		}
		if !strings.HasPrefix(raw, "C:") && !strings.HasPrefix(raw, "S:") {
			if other == 0 {
				other = n
			}
			continue
		}
		text, err := unroff(raw)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n, err)
		}
		switch {
		case text == "C:" || strings.HasPrefix(text, "C: "):
			c := strings.TrimPrefix(strings.TrimPrefix(text, "C:"), " ")
			c = strings.NewReplacer("<CR>", "\r", "<LF>", "\n").Replace(c)
			cur.send = append(cur.send, c+"\r\n"...)
		case strings.HasPrefix(text, "S: "):
			cur.want = append(cur.want, text[3:])
		default:
			return nil, fmt.Errorf("line %d: malformed transcript line %q", n, raw)
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: .nf without .fi", cur.line)
	}
	return out, nil
}

// unroff turns the roff escapes the transcripts may use into text and
// refuses every other escape.
func unroff(s string) (string, error) {
	named := map[string]string{"aq": "'", "dq": `"`, "ga": "`", "ti": "~", "ha": "^"}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i == len(s) {
			return "", errors.New("backslash at the end of a line")
		}
		switch s[i] {
		case '-':
			b.WriteByte('-')
		case 'e':
			b.WriteByte('\\')
		case '&':
		case '(':
			if i+2 >= len(s) {
				return "", errors.New(`incomplete \( escape`)
			}
			r, ok := named[s[i+1:i+3]]
			if !ok {
				return "", fmt.Errorf(`unsupported escape \(%s`, s[i+1:i+3])
			}
			b.WriteString(r)
			i += 2
		default:
			return "", fmt.Errorf(`unsupported escape \%c`, s[i])
		}
	}
	return b.String(), nil
}

// manBackend plays the daemon's backend (internal/daemon/listener.go) for
// the world the manual's EXAMPLES describe: the users alice and bob exist;
// the policy allows a user /var/mail/USER, anything under /home/USER and
// the program procmail. It answers with the daemon's statuses.
type manBackend struct{}

var manFilterWithDest = status.New(501, "5.5.4", "XLDA-FILTER and XLDA-DEST exclude each other")

func (manBackend) Hello(string) *status.Status            { return nil }
func (manBackend) Mail(string, MailParams) *status.Status { return nil }
func (manBackend) Reset()                                 {}

func (manBackend) Rcpt(r Recipient) *status.Status {
	if r.Filter != "" && r.Dest != "" {
		return manFilterWithDest
	}
	name := r.User
	if name == "" {
		local := r.Addr
		if i := strings.LastIndexByte(local, '@'); i >= 0 {
			local = local[:i]
		}
		local, _, _ = strings.Cut(local, "+") // recipient_delimiter
		name = strings.ToLower(local)
	}
	if name != "alice" && name != "bob" {
		return status.UnknownUser
	}
	if r.Dest != "" && !manAllowed(name, r.Dest) {
		return status.PolicyRefused
	}
	return nil
}

func manAllowed(user, dest string) bool {
	home := "/home/" + user + "/"
	return dest == "mbox:/var/mail/"+user || dest == "program:procmail" ||
		strings.HasPrefix(dest, "mbox:"+home) || strings.HasPrefix(dest, "maildir:"+home)
}

func (manBackend) Data(msg *os.File, size int64, rcpts []Recipient) []Reply {
	replies := make([]Reply, len(rcpts))
	for i := range replies {
		replies[i] = Reply{Status: status.Delivered}
		if rcpts[i].Filter == "only" {
			// The daemon's answer for the example's script (a redirect).
			replies[i] = Reply{Status: status.New(250, "2.0.0", "filtered, nothing delivered"),
				Lines: []string{"ACTION redirect elsewhere@example.net"}}
		}
	}
	return replies
}

// TestManPageDaemonFacts checks that what manBackend and the session
// configuration below copy from the daemon is still what the daemon does.
func TestManPageDaemonFacts(t *testing.T) {
	for file, needles := range map[string][]string{
		"../daemon/listener.go": {
			`status.New(501, "5.5.4", "XLDA-FILTER and XLDA-DEST exclude each other")`,
			"return status.UnknownUser",
			"return status.PolicyRefused",
			"Extensions: true, Chunking: l.cfg.Chunking",
			`"ACTION "+a`,
		},
		"../worker/filter.go": {
			`status.New(250, "2.0.0", "filtered, nothing delivered")`,
		},
		"../daemon/config.go": {
			"MessageSize: 100 << 20",
			`Delimiter: "+"`,
			`BareLF: "reject"`,
			"Chunking: true",
		},
	} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range needles {
			if !strings.Contains(string(src), n) {
				t.Errorf("%s no longer contains %q: update manBackend, the EXAMPLES of %s and this test", file, n, manPage)
			}
		}
	}
}

func TestManPageExamples(t *testing.T) {
	page, err := os.ReadFile(manPage)
	if err != nil {
		t.Fatal(err)
	}
	trs, err := parseManTranscripts(string(page))
	if err != nil {
		t.Fatalf("%s: %v", manPage, err)
	}
	if len(trs) < 4 {
		t.Fatalf("%s: %d example transcripts, want at least 4", manPage, len(trs))
	}
	for _, tr := range trs {
		t.Run("line"+strconv.Itoa(tr.line), func(t *testing.T) {
			t.Parallel()
			replayManTranscript(t, tr)
		})
	}
}

// replayManTranscript sends every C: line in one go, reads the server's
// lines until it closes the connection (every example ends with QUIT) and
// compares them with the S: lines. The engine answers commands strictly in
// order, so the replies do not depend on how the client batches its
// writes.
func replayManTranscript(t *testing.T, tr manTranscript) {
	cfg := DefaultConfig() // XLDA on, bare LF rejected, as the daemon
	cfg.Hostname = "mail.example.org"
	cfg.MaxSize = 100 << 20 // lda.yaml limits.message_size default
	cfg.IdleTimeout, cfg.DataTimeout = 5*time.Second, 5*time.Second
	client, server := net.Pipe()
	defer client.Close()
	sp := &spooler{dir: t.TempDir()}
	served := make(chan error, 1)
	go func() { served <- NewSession(server, cfg, manBackend{}, sp.spool).Serve() }()
	go func() {
		client.SetWriteDeadline(time.Now().Add(10 * time.Second))
		client.Write(tr.send) // a failure shows in the replies
	}()

	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(client)
	var got []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			if l != "" {
				got = append(got, "UNTERMINATED "+strconv.Quote(l))
			}
			if !errors.Is(err, io.EOF) {
				t.Errorf("reading the replies: %v", err)
			}
			break
		}
		if !strings.HasSuffix(l, "\r\n") {
			l = "BARE-LF " + strconv.Quote(l)
		}
		got = append(got, strings.TrimSuffix(l, "\r\n"))
	}
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	sp.checkClosed(t)
	for i := 0; i < max(len(tr.want), len(got)); i++ {
		var w, g string
		if i < len(tr.want) {
			w = tr.want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			t.Fatalf("%s, example at line %d: server line %d differs:\n page %q\n got  %q\nall server lines:\n%s",
				manPage, tr.line, i+1, w, g, strings.Join(got, "\n"))
		}
	}
}

func TestManPageParser(t *testing.T) {
	page := ".nf\nS: 250\\-x \\(dqy\\(dq\nC: a\\eb<CR><LF>\nC:\n.fi\n.nf\nxtext = *( xchar )\n.fi\n"
	trs, err := parseManTranscripts(page)
	if err != nil || len(trs) != 1 {
		t.Fatalf("got %v, %v", trs, err)
	}
	if string(trs[0].send) != "a\\b\r\n\r\n\r\n" || len(trs[0].want) != 1 || trs[0].want[0] != `250-x "y"` {
		t.Fatalf("parsed %q %q", trs[0].send, trs[0].want)
	}
	for _, bad := range []string{
		".nf\nS: 250 ok\nstray\n.fi\n", // mixed block
		".nf\nS: 250 \\fBok\n.fi\n",    // font escape in a transcript
		".nf\nS: 250 ok\n",             // unterminated
		".nf\nS: 250 \\(xx\n.fi\n",     // unknown named character
	} {
		if _, err := parseManTranscripts(bad); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}
