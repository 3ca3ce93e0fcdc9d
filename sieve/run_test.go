package sieve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"lda/internal/status"
)

func TestRunActions(t *testing.T) {
	long := strings.Repeat("x", 256)
	for _, tc := range []struct {
		name   string
		script string
		env    *Envelope
		lim    Limits
		want   string // actionsString
		errSub string // substring of ScriptError; "" for none
	}{
		// keep
		{name: "implicit keep", script: "# nothing\n", want: "keep"},
		{name: "explicit keep", script: "keep;", want: "keep"},
		{name: "keep with flags", script: `keep :flags "\\Seen";`, want: `keep flags \Seen`},
		{name: "stop keeps", script: "stop; discard;", want: "keep"},
		{name: "false test", script: `if false { discard; }`, want: "keep"},

		// fileinto and its validation
		{name: "fileinto", script: `fileinto "Work";`, want: `fileinto "Work"`},
		{name: "fileinto nested", script: `fileinto "Lists.golang";`, want: `fileinto "Lists.golang"`},
		{name: "fileinto slash maps to dot", script: `fileinto "Lists/golang";`, want: `fileinto "Lists.golang"`},
		{name: "fileinto INBOX is keep", script: `fileinto "INBOX";`, want: "keep"},
		{name: "fileinto inbox any case", script: `fileinto "iNbOx";`, want: "keep"},
		{name: "fileinto INBOX.child is a folder", script: `fileinto "INBOX.Junk";`, want: `fileinto "INBOX.Junk"`},
		{name: "fileinto copy", script: `fileinto :copy "Archive";`, want: `fileinto "Archive" :copy; keep`},
		{name: "fileinto twice same", script: `fileinto "A"; fileinto "A";`, want: `fileinto "A"`},
		{name: "fileinto and keep", script: `fileinto "A"; keep;`, want: `fileinto "A"; keep`},
		{name: "fileinto unicode", script: `fileinto "Entwürfe";`, want: `fileinto "Entwürfe"`},
		{name: "fileinto dotdot", script: `fileinto "../../x";`, want: "keep", errSub: `".."`},
		{name: "fileinto dotdot inside", script: `fileinto "a/../b";`, want: "keep", errSub: `".."`},
		{name: "fileinto empty", script: `fileinto "";`, want: "keep", errSub: "empty folder name"},
		{name: "fileinto empty variable", script: `set "f" ""; fileinto "${f}";`, want: "keep", errSub: "empty folder name"},
		{name: "fileinto NUL", script: `fileinto "a${hex:00}b";`, want: "keep", errSub: "control character"},
		{name: "fileinto control", script: `fileinto "a${hex:07}b";`, want: "keep", errSub: "control character"},
		{name: "fileinto newline", script: `fileinto "a${hex:0a}b";`, want: "keep", errSub: "control character"},
		{name: "fileinto invalid UTF-8", script: `fileinto "a${hex:ff}b";`, want: "keep", errSub: "invalid UTF-8"},
		{name: "fileinto leading dot", script: `fileinto ".hidden";`, want: "keep", errSub: "empty part"},
		{name: "fileinto trailing slash", script: `fileinto "a/";`, want: "keep", errSub: "empty part"},
		{name: "fileinto absolute", script: `fileinto "/etc/passwd";`, want: "keep", errSub: "empty part"},
		{name: "fileinto too long", script: `fileinto "` + long + `";`, want: "keep", errSub: "longer than 255"},
		{name: "error discards earlier actions", script: `fileinto "A"; redirect "a@example.org"; fileinto "../x";`, want: "keep", errSub: `".."`},

		// redirect and its validation
		{name: "redirect", script: `redirect "a@example.org";`, want: `redirect <a@example.org>`},
		{name: "redirect domain lower-cased", script: `redirect "A@Example.ORG";`, want: `redirect <A@example.org>`},
		{name: "redirect copy", script: `redirect :copy "a@example.org";`, want: `redirect <a@example.org> :copy; keep`},
		{name: "redirect duplicates merged", script: `redirect "a@example.org"; redirect "a@EXAMPLE.org";`, want: `redirect <a@example.org>`},
		{name: "redirect quoted local part", script: `redirect "\"a.b\"@example.org";`, want: `redirect <"a.b"@example.org>`},
		{name: "redirect IPv4 literal", script: `redirect "a@[192.0.2.1]";`, want: `redirect <a@[192.0.2.1]>`},
		{name: "redirect IPv6 literal", script: `redirect "a@[IPv6:2001:db8::1]";`, want: `redirect <a@[IPv6:2001:db8::1]>`},
		{name: "redirect CRLF via hex", script: `redirect "a@example.org${hex:0d 0a}RCPT TO:<b@example.org>";`, want: "keep", errSub: "control character"},
		{name: "redirect CRLF via variable", script: `set "x" "${hex:0d 0a}"; redirect "a${x}@example.org";`, want: "keep", errSub: "control character"},
		{name: "redirect empty", script: `set "a" ""; redirect "${a}";`, want: "keep", errSub: "empty address"},
		{name: "redirect no domain", script: `set "a" "user"; redirect "${a}";`, want: "keep", errSub: "missing @"},
		{name: "redirect NUL", script: `redirect "a${hex:00}@example.org";`, want: "keep", errSub: "control character"},
		{name: "redirect NEL", script: `redirect "a${hex:c2 85}b@example.org";`, want: "keep", errSub: "control character"},
		{name: "redirect line separator", script: `redirect "a${hex:e2 80 a8}b@example.org";`, want: "keep", errSub: "line break"},
		{name: "redirect UTF-8", script: `redirect "jörg@exämple.org";`, want: `redirect <jörg@exämple.org>`},
		{name: "redirect space", script: `redirect "a b@example.org";`, want: "keep", errSub: "space"},
		{name: "redirect leading dash", script: `redirect "-oQ/tmp/x@example.org";`, want: "keep", errSub: "begins with -"},
		{name: "redirect double dot", script: `redirect "a..b@example.org";`, want: "keep", errSub: "empty atom"},
		{name: "redirect bad domain", script: `redirect "a@-example.org";`, want: "keep", errSub: "begins or ends with -"},
		{name: "redirect name-addr", script: `redirect "Joe <j@example.org>";`, want: "keep", errSub: "space"},
		{name: "redirect angle brackets", script: `redirect "<j@example.org>";`, want: "keep", errSub: "not allowed"},
		{name: "redirect bad literal", script: `redirect "a@[300.1.1.1]";`, want: "keep", errSub: "IPv4"},
		{name: "redirect too long", script: `redirect "` + strings.Repeat("a", 60) + "@" + strings.Repeat("b.", 130) + `org";`, want: "keep", errSub: "longer than 320"},
		{name: "redirect long local part", script: `redirect "` + strings.Repeat("a", 65) + `@example.org";`, want: "keep", errSub: "longer than 64"},
		{name: "four redirects", script: `redirect "a1@example.org"; redirect "a2@example.org"; redirect "a3@example.org"; redirect "a4@example.org";`,
			want: "redirect <a1@example.org>; redirect <a2@example.org>; redirect <a3@example.org>; redirect <a4@example.org>"},
		{name: "too many redirects", script: `redirect "a1@example.org"; redirect "a2@example.org"; redirect "a3@example.org"; redirect "a4@example.org"; redirect "a5@example.org";`,
			want: "keep", errSub: "more than 4 distinct redirect"},
		{name: "many identical redirects", script: strings.Repeat(`redirect "a@example.org";`, 10), want: "redirect <a@example.org>"},
		{name: "redirect limit 1", lim: Limits{MaxRedirects: 1}, script: `redirect "a1@example.org"; redirect "a2@example.org";`, want: "keep", errSub: "more than 1 distinct"},
		{name: "redirect forbidden", lim: Limits{MaxRedirects: -1}, script: `redirect "a1@example.org";`, want: "keep", errSub: "more than 0 distinct"},

		// reject (RFC 5429)
		{name: "reject", script: `reject "Go away";`, want: `reject "Go away"`},
		{name: "reject reason one line", script: "reject text:\nGo away\r\nand stay away\n.\n;", want: `reject "Go away  and stay away"`},
		{name: "reject reason control", script: `reject "a${hex:00 1b}b";`, want: `reject "a??b"`},
		{name: "reject reason length", script: `reject "` + strings.Repeat("é", 150) + `";`, want: `reject "` + strings.Repeat("é", 100) + `"`},
		{name: "ereject", script: `ereject "No";`, want: `ereject "No"`},
		{name: "reject then fileinto", script: `reject "no"; fileinto "A";`, want: "keep", errSub: "not allowed together with reject"},
		{name: "fileinto then reject", script: `fileinto "A"; reject "no";`, want: "keep", errSub: "not allowed together with keep, fileinto or redirect"},
		{name: "fileinto copy then reject", script: `fileinto :copy "A"; reject "no";`, want: "keep", errSub: "RFC 5429"},
		{name: "keep then reject", script: `keep; reject "no";`, want: "keep", errSub: "RFC 5429"},
		{name: "reject then keep", script: `reject "no"; keep;`, want: "keep", errSub: "RFC 5429"},
		{name: "redirect then reject", script: `redirect :copy "a@example.org"; reject "no";`, want: "keep", errSub: "RFC 5429"},
		{name: "reject twice", script: `reject "one"; reject "two";`, want: "keep", errSub: "second reject"},
		{name: "reject and ereject", script: `reject "one"; ereject "two";`, want: "keep", errSub: "second reject"},
		{name: "discard then reject", script: `discard; reject "no";`, want: `reject "no"`},
		{name: "reject then discard", script: `reject "no"; discard;`, want: `reject "no"`},
		{name: "reject then stop", script: `reject "no"; stop; fileinto "A";`, want: `reject "no"`},

		// discard
		{name: "discard", script: `discard;`, want: "discard"},
		{name: "discard and fileinto", script: `discard; fileinto "A";`, want: `fileinto "A"`},
		{name: "keep and discard", script: `keep; discard;`, want: "keep"},
		{name: "discard clears flags", script: `addflag "\\Seen"; discard; keep;`, want: "keep"},

		// imap4flags
		{name: "addflag implicit keep", script: `addflag "\\Seen";`, want: `keep flags \Seen`},
		{name: "flags sorted and split", script: `addflag ["\\Flagged \\Seen", "$label1", "\\Answered"];`, want: `keep flags $label1 \Answered \Flagged \Seen`},
		{name: "system flags case-insensitive", script: `addflag "\\SEEN"; removeflag "\\seen"; addflag "\\flagged";`, want: `keep flags \Flagged`},
		{name: "fileinto flags", script: `fileinto :flags "\\Deleted" "Trash";`, want: `fileinto "Trash" flags \Deleted`},
		{name: "fileinto internal flags", script: `setflag "\\Draft"; fileinto "Drafts";`, want: `fileinto "Drafts" flags \Draft`},
		// go-sieve drops a second fileinto into the same folder before lda
		// sees it; Pigeonhole would use the later flags (man page).
		{name: "duplicate fileinto first flags", script: `fileinto :flags "\\Seen" "A"; fileinto :flags "\\Flagged" "A";`, want: `fileinto "A" flags \Seen`},
		{name: "duplicate keep later flags", script: `keep :flags "\\Seen"; keep :flags "\\Flagged";`, want: `keep flags \Flagged`},
		{name: "fileinto INBOX then keep", script: `fileinto :flags "\\Seen" "INBOX"; keep;`, want: `keep`},
		{name: "invalid flags dropped", script: `addflag ["a(b", "ok", "a\\b"];`, want: `keep flags ok`},
		{name: "hasflag", script: `addflag "\\Seen"; if hasflag "\\seen" { fileinto "Read"; }`, want: `fileinto "Read" flags \Seen`},

		// tests
		{name: "envelope detail", script: `if envelope :detail "to" "lists" { fileinto "Lists"; }`, want: `fileinto "Lists"`},
		{name: "envelope user", script: `if envelope :user "to" "user" { fileinto "U"; }`, want: `fileinto "U"`},
		{name: "envelope from domain", script: `if envelope :domain "from" "example.org" { fileinto "Org"; }`, want: `fileinto "Org"`},
		{name: "envelope null sender", env: &Envelope{From: "<>", To: "user@example.com"},
			script: `if envelope :is "from" "" { fileinto "Bounces"; }`, want: `fileinto "Bounces"`},
		{name: "header folded", script: `if header :is "subject" "Meeting tomorrow" { fileinto "M"; }`, want: `fileinto "M"`},
		{name: "address detail", script: `if address :detail "to" "golang" { fileinto "Go"; }`, want: `fileinto "Go"`},
		{name: "relational count", script: `if header :count "eq" :comparator "i;ascii-numeric" "received" "2" { fileinto "Two"; }`, want: `fileinto "Two"`},
		{name: "size", script: `if size :under 1K { fileinto "Small"; }`, want: `fileinto "Small"`},
		{name: "body", script: `if body :contains "tomorrow" { fileinto "B"; }`, want: `fileinto "B"`},
		{name: "exists", script: `if exists "x-spam-flag" { fileinto "S"; }`, want: `fileinto "S"`},
		{name: "variables from match", script: `if header :matches "from" "*<*@*>" { fileinto "From.${3}"; }`, want: `fileinto "From.example.net"`},
		{name: "environment", script: `if environment :is "name" "lda" { fileinto "E"; }`, want: `fileinto "E"`},
		{name: "error text is one line", script: "if envelope \"x${hex:0a}y\" \"\" { keep; }", want: "keep", errSub: "x?y"},
		{name: "environment unknown item", script: `if environment :is "host" "" { fileinto "E"; }`, want: "keep"},

		// limits
		{name: "too many actions", lim: Limits{MaxActions: 3}, script: `fileinto "A"; fileinto "B"; fileinto "C"; fileinto "D";`, want: "keep", errSub: "more than 3 distinct actions"},
		{name: "actions at limit", lim: Limits{MaxActions: 3}, script: `fileinto "A"; fileinto "B"; fileinto "C";`, want: `fileinto "A"; fileinto "B"; fileinto "C"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := testEnv
			if tc.env != nil {
				env = *tc.env
			}
			out, err := runOne(t, allExt+tc.script, env, testMessage, tc.lim)
			if err != nil {
				t.Fatalf("Run: unexpected error %v", err)
			}
			if got := actionsString(out.Actions); got != tc.want {
				t.Errorf("actions = %s, want %s", got, tc.want)
			}
			switch {
			case tc.errSub == "" && out.ScriptError != nil:
				t.Errorf("unexpected script error: %v", out.ScriptError)
			case tc.errSub != "" && out.ScriptError == nil:
				t.Errorf("no script error, want one containing %q", tc.errSub)
			case tc.errSub != "" && !strings.Contains(out.ScriptError.Error(), tc.errSub):
				t.Errorf("script error %q does not contain %q", out.ScriptError, tc.errSub)
			}
			if out.ScriptError != nil {
				if len(out.Actions) != 1 || out.Actions[0].Kind != Keep || len(out.Actions[0].Flags) != 0 {
					t.Errorf("a script error must give exactly [Keep], got %v", out.Actions)
				}
				if msg := out.ScriptError.Error(); strings.ContainsAny(msg, "\r\n\x00") {
					t.Errorf("script error is not one line: %q", msg)
				}
				var se *ScriptError
				if !errors.As(out.ScriptError, &se) || se.Name != "test" {
					t.Errorf("script error %#v does not name the script", out.ScriptError)
				}
			}
			if out.EnvelopeOnly {
				t.Error("Run set EnvelopeOnly")
			}
		})
	}
}

func TestRunSequence(t *testing.T) {
	spam := strings.Replace(testMessage, "X-Spam-Flag: NO", "X-Spam-Flag: YES", 1)
	junk := `require "fileinto"; if header :is "x-spam-flag" "YES" { fileinto "Junk"; }`
	for _, tc := range []struct {
		name    string
		scripts []string // "" is a nil script
		msg     string
		want    string
		errSub  string
	}{
		{name: "before fileinto ends the sequence", scripts: []string{junk, `require "fileinto"; fileinto "Work";`}, msg: spam, want: `fileinto "Junk"`},
		{name: "before keeps, user runs", scripts: []string{junk, `require "fileinto"; fileinto "Work";`}, msg: testMessage, want: `fileinto "Work"`},
		{name: "before stop only ends the before script", scripts: []string{`stop;`, `require "fileinto"; fileinto "Work";`}, msg: testMessage, want: `fileinto "Work"`},
		{name: "nil scripts skipped", scripts: []string{"", `require "fileinto"; fileinto "Work";`, ""}, msg: testMessage, want: `fileinto "Work"`},
		{name: "no scripts keeps", scripts: nil, msg: testMessage, want: "keep"},
		{name: "explicit keep deferred and cancelled by discard", scripts: []string{`keep;`, `discard;`}, msg: testMessage, want: "discard"},
		{name: "explicit keep flags survive implicit keep", scripts: []string{`require "imap4flags"; keep :flags "\\Seen";`, `require "imap4flags"; addflag "\\Flagged";`}, msg: testMessage, want: `keep flags \Seen`},
		{name: "later explicit keep wins", scripts: []string{`require "imap4flags"; keep :flags "\\Seen";`, `require "imap4flags"; keep :flags "\\Flagged";`}, msg: testMessage, want: `keep flags \Flagged`},
		{name: "internal flags carry over", scripts: []string{`require "imap4flags"; addflag "\\Flagged";`, `require "fileinto"; fileinto "Work";`}, msg: testMessage, want: `fileinto "Work" flags \Flagged`},
		{name: "variables do not carry over", scripts: []string{`require "variables"; set "a" "x";`, `require ["variables", "fileinto"]; if string :is "${a}" "" { fileinto "Empty"; }`}, msg: testMessage, want: `fileinto "Empty"`},
		{name: "copy then fileinto", scripts: []string{`require ["fileinto", "copy"]; fileinto :copy "Junk";`, `require "fileinto"; fileinto "Work";`}, msg: testMessage, want: `fileinto "Junk" :copy; fileinto "Work"`},
		{name: "delivery not repeated", scripts: []string{`require ["fileinto", "copy", "imap4flags"]; fileinto :copy :flags "\\Seen" "A";`, `require ["fileinto", "imap4flags"]; fileinto :flags "\\Flagged" "A";`}, msg: testMessage, want: `fileinto "A" :copy flags \Seen`},
		{name: "after script runs after user keep", scripts: []string{"", `keep;`, `require "fileinto"; fileinto "After";`}, msg: testMessage, want: `fileinto "After"`},
		{name: "error in before script", scripts: []string{`require "fileinto"; fileinto "";`, `discard;`}, msg: testMessage, want: "keep", errSub: `script "s0"`},
		{name: "error in user script discards before actions", scripts: []string{`require ["fileinto", "copy"]; fileinto :copy "Junk";`, `require "fileinto"; fileinto "../x";`}, msg: testMessage, want: "keep", errSub: `script "s1"`},
		{name: "delivery then reject across scripts", scripts: []string{`require ["fileinto", "copy"]; fileinto :copy "Junk";`, `require "reject"; reject "no";`}, msg: testMessage, want: "keep", errSub: "earlier script"},
		{name: "deferred keep then reject", scripts: []string{`keep;`, `require "reject"; reject "no";`}, msg: testMessage, want: `reject "no"`},
		{name: "redirect limit spans scripts", scripts: []string{`require "copy"; redirect :copy "a1@example.org"; redirect :copy "a2@example.org"; redirect :copy "a3@example.org";`, `redirect "a4@example.org"; redirect "a5@example.org";`}, msg: testMessage, want: "keep", errSub: "more than 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var scripts []*Script
			for i, src := range tc.scripts {
				if src == "" {
					scripts = append(scripts, nil)
					continue
				}
				scripts = append(scripts, mustLoad(t, fmt.Sprintf("s%d", i), src))
			}
			out, err := Run(context.Background(), scripts, testEnv, mustParse(t, tc.msg), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got := actionsString(out.Actions); got != tc.want {
				t.Errorf("actions = %s, want %s", got, tc.want)
			}
			switch {
			case tc.errSub == "" && out.ScriptError != nil:
				t.Errorf("unexpected script error: %v", out.ScriptError)
			case tc.errSub != "" && (out.ScriptError == nil || !strings.Contains(out.ScriptError.Error(), tc.errSub)):
				t.Errorf("script error %v, want one containing %q", out.ScriptError, tc.errSub)
			}
		})
	}
}

// slowReaderAt blocks body reads until its delay has passed.
type slowReaderAt struct {
	data  string
	delay time.Duration
	limit int64 // reads beyond this offset are slow or fail
	fail  error
}

func (s slowReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.limit {
		if s.fail != nil {
			return 0, s.fail
		}
		time.Sleep(s.delay)
	}
	return strings.NewReader(s.data).ReadAt(p, off)
}

func TestRunTemporaryFailures(t *testing.T) {
	bodyAt := int64(strings.Index(testMessage, "\r\n\r\n") + 4)
	s := mustLoad(t, "body", `require ["body", "fileinto"]; if body :contains "x" { fileinto "X"; }`)
	check := func(t *testing.T, out Outcome, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("no error; outcome %v", out.Actions)
		}
		var st *status.Status
		if !errors.As(err, &st) || !st.Temporary() {
			t.Errorf("error %v is not a temporary status", err)
		}
		var te *TempError
		if !errors.As(err, &te) {
			t.Errorf("error %v is not a TempError", err)
		}
		if len(out.Actions) != 0 {
			t.Errorf("a temporary failure has actions %v; the caller must not keep", out.Actions)
		}
	}
	t.Run("read error", func(t *testing.T) {
		r := slowReaderAt{data: testMessage, limit: bodyAt, fail: errors.New("EIO")}
		m, err := ParseMessage(r, int64(len(testMessage)), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		out, err := Run(context.Background(), []*Script{s}, testEnv, m, Limits{})
		check(t, out, err)
	})
	t.Run("deadline", func(t *testing.T) {
		// The body read takes 3 s; a Run that honours its 20 ms limit
		// returns long before, even on a loaded machine under -race.
		r := slowReaderAt{data: testMessage, limit: bodyAt, delay: 3 * time.Second}
		m, err := ParseMessage(r, int64(len(testMessage)), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out, err := Run(context.Background(), []*Script{s}, testEnv, m, Limits{Timeout: 20 * time.Millisecond})
		check(t, out, err)
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Errorf("Run took %v despite a 20ms limit", d)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		out, err := Run(ctx, []*Script{s}, testEnv, mustParse(t, testMessage), Limits{})
		check(t, out, err)
		_, decided, err := RunEnvelope(ctx, []*Script{mustLoad(t, "e", `discard;`)}, testEnv, Limits{})
		if err == nil || decided {
			t.Errorf("RunEnvelope with a cancelled context: decided=%v err=%v", decided, err)
		}
	})
	t.Run("header read error", func(t *testing.T) {
		r := slowReaderAt{data: testMessage, limit: 0, fail: errors.New("EIO")}
		if _, err := ParseMessage(r, int64(len(testMessage)), Limits{}); err == nil {
			t.Error("ParseMessage ignored a read error")
		}
	})
	t.Run("nil message", func(t *testing.T) {
		out, err := Run(context.Background(), []*Script{s}, testEnv, nil, Limits{})
		check(t, out, err)
	})
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		lim       Limits
		sub       string
		line      int
	}{
		{name: "vacation", src: "require \"fileinto\";\nrequire [\"vacation\"];\nvacation \"away\";", sub: `unsupported extension "vacation"`, line: 2},
		{name: "include", src: `require "include";`, sub: `unsupported extension "include"`, line: 1},
		{name: "testsuite", src: `require "vnd.dovecot.testsuite";`, sub: "unsupported extension", line: 1},
		{name: "regex", src: `require "regex";`, sub: "unsupported extension", line: 1},
		{name: "syntax", src: "keep;\nif true {\n  keep;\n", sub: "", line: 0},
		{name: "unknown command", src: "keep;\n\nfrobnicate;", sub: "unsupported command", line: 3},
		{name: "missing require", src: `fileinto "x";`, sub: "", line: 0},
		{name: "invalid UTF-8", src: "keep;\n# \xff\n", sub: "not valid UTF-8", line: 2},
		{name: "too large", src: "# " + strings.Repeat("x", 10<<20) + "\nkeep;", sub: "larger than 1048576 bytes"},
		{name: "size limit", src: "keep; keep; keep;", lim: Limits{MaxScriptSize: 10}, sub: "larger than 10 bytes"},
		{name: "big literal", src: `require "fileinto"; fileinto "` + strings.Repeat("x", 2<<20) + `";`, sub: "larger than"},
		{name: "too many variables", src: `require "variables";` + func() string {
			var b strings.Builder
			for i := 0; i <= MaxVariables; i++ {
				fmt.Fprintf(&b, "set \"v%d\" \"x\";\n", i)
			}
			return b.String()
		}(), sub: "more than 128 variables"},
		{name: "nesting", src: strings.Repeat("if true {", 20) + strings.Repeat("}", 20), sub: "nesting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.src), "user.sieve", tc.lim)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !strings.Contains(err.Error(), `"user.sieve"`) {
				t.Errorf("error %q does not name the script", err)
			}
			if tc.sub != "" && !strings.Contains(err.Error(), tc.sub) {
				t.Errorf("error %q does not contain %q", err, tc.sub)
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error %T is not a *LoadError", err)
			}
			if tc.line != 0 && le.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", le.Line, tc.line, err)
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		_, err := Load(io.MultiReader(strings.NewReader("keep;"), errReader{}), "x", Limits{})
		if err == nil || !errors.Is(err, errBoom) {
			t.Errorf("err = %v, want errBoom wrapped", err)
		}
	})
	t.Run("at the size limit", func(t *testing.T) {
		if _, err := Load(strings.NewReader("keep;"), "x", Limits{MaxScriptSize: 5}); err != nil {
			t.Error(err)
		}
	})
	t.Run("variables at the limit", func(t *testing.T) {
		var b strings.Builder
		b.WriteString(`require "variables";`)
		for i := 0; i < MaxVariables; i++ {
			fmt.Fprintf(&b, "set \"v%d\" \"x\"; set \"V%d\" \"y\";\n", i, i)
		}
		if _, err := Load(strings.NewReader(b.String()), "x", Limits{}); err != nil {
			t.Error(err)
		}
	})
	t.Run("extensions sorted", func(t *testing.T) {
		for i := 1; i < len(Extensions); i++ {
			if Extensions[i-1] >= Extensions[i] {
				t.Errorf("Extensions not sorted at %q", Extensions[i])
			}
		}
	})
}

var errBoom = errors.New("boom")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBoom }

func TestMaildirFlags(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{`\Seen`}, "S"},
		{[]string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`}, "DFRST"},
		{[]string{`\seen`, `\SEEN`, `\Flagged`}, "FS"},
		{[]string{`$Label1`, `\Recent`, `Junk`, `\Unknown`}, ""},
	} {
		t.Run(fmt.Sprintf("%q", tc.in), func(t *testing.T) {
			if got := MaildirFlags(tc.in); got != tc.want {
				t.Errorf("MaildirFlags(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestValidAddress(t *testing.T) {
	good := map[string]string{
		"a@example.org":                "a@example.org",
		"A.B+c@Sub.Example.ORG":        "A.B+c@sub.example.org",
		`"a@b"@example.org`:            `"a@b"@example.org`,
		`"a\"b"@example.org`:           `"a\"b"@example.org`,
		"user@localhost":               "user@localhost",
		"a@[127.0.0.1]":                "a@[127.0.0.1]",
		"a@[IPv6:::1]":                 "a@[IPv6:::1]",
		"a@[x-tag:abc]":                "a@[x-tag:abc]",
		"jürgen@exämple.org":           "jürgen@exämple.org",
		"!#$%&'*+/=?^_`{|}~@x.org":     "!#$%&'*+/=?^_`{|}~@x.org",
		strings.Repeat("a", 64) + "@x": strings.Repeat("a", 64) + "@x",
	}
	for in, want := range good {
		t.Run("good "+caseName(in), func(t *testing.T) {
			got, err := ValidAddress(in)
			if err != nil || got != want {
				t.Errorf("ValidAddress(%q) = %q, %v; want %q", in, got, err, want)
			}
		})
	}
	for _, in := range []string{
		"", "a", "@example.org", "a@", "a@@example.org", "a@b@c", ".a@x.org", "a.@x.org",
		"a b@x.org", "a\r\n@x.org", "a@x.org\r\n", "a\x00@x.org", "a@x..org", "a@.x.org", "a@x.org.",
		"a@-x.org", "a@x-.org", "a@x_y.org", "<a@x.org>", "Joe <a@x.org>", `"a b"@x.org`, `""@x.org`,
		`"a@x.org`, "a@[1.2.3]", "a@[IPv6:1.2.3.4]", "a@[1.2.3.4", "-a@x.org", "a@x.org\t",
		"a(comment)@x.org", "a@" + strings.Repeat("b", 64) + ".org", "a\xff@x.org",
		strings.Repeat("a", 65) + "@x",
	} {
		t.Run("bad "+caseName(in), func(t *testing.T) {
			if got, err := ValidAddress(in); err == nil {
				t.Errorf("ValidAddress(%q) = %q, want an error", in, got)
			}
		})
	}
}

// caseName names a subtest after its input: quoted, and shortened if long.
func caseName(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q...%d_bytes", s[:20], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// TestConcurrentRuns: one loaded Script and one Message may be used by
// several runs at once (a persistent worker, the daemon).
func TestConcurrentRuns(t *testing.T) {
	s := mustLoad(t, "typical", typicalScript)
	m := mustParse(t, testMessage)
	done := make(chan string, 8)
	for i := 0; i < 8; i++ {
		go func() {
			var last string
			for j := 0; j < 20; j++ {
				out, err := Run(context.Background(), []*Script{s}, testEnv, m, Limits{})
				if err != nil {
					last = err.Error()
					break
				}
				last = actionsString(out.Actions)
				if _, _, err := RunEnvelope(context.Background(), []*Script{s}, testEnv, Limits{}); err != nil {
					last = err.Error()
					break
				}
			}
			done <- last
		}()
	}
	for i := 0; i < 8; i++ {
		if got := <-done; got != `fileinto "Work"` {
			t.Errorf("run %d: %s", i, got)
		}
	}
}
