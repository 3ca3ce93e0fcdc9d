package sieve

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// manPage returns lda-sieve(7) and its .nf/.fi blocks, unescaped.
func manPage(t *testing.T) (string, []string) {
	t.Helper()
	data, err := os.ReadFile("../man/lda-sieve.7")
	if err != nil {
		t.Skipf("manual page: %v", err)
	}
	unescape := strings.NewReplacer(`\-`, "-", `\e`, `\`, `\(dq`, `"`).Replace
	var blocks []string
	var cur *strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case line == ".nf":
			cur = &strings.Builder{}
		case line == ".fi":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(unescape(line) + "\n")
		}
	}
	return string(data), blocks
}

// TestManPage: lda-sieve(7) lists the supported extensions, and its
// examples load and do what the page says.
func TestManPage(t *testing.T) {
	page, blocks := manPage(t)
	sec := page[strings.Index(page, ".SH EXTENSIONS"):strings.Index(page, "Any other extension")]
	var listed []string
	for _, m := range regexp.MustCompile(`(?m)^\.BR? ([^ \n]+)`).FindAllStringSubmatch(sec, -1) {
		listed = append(listed, strings.ReplaceAll(m[1], `\-`, "-"))
	}
	if !slices.Equal(listed, Extensions) {
		t.Errorf("the page lists %q, the package supports %q", listed, Extensions)
	}
	var scripts []string
	for _, b := range blocks {
		if strings.Contains(b, "require") || strings.HasPrefix(b, "if ") {
			scripts = append(scripts, b)
		}
	}
	if len(scripts) != 3 {
		t.Fatalf("%d script examples, want 3", len(scripts))
	}
	ctx := context.Background()
	// The RCPT-time example.
	rcpt := mustLoad(t, "rcpt", allExt+scripts[0])
	out, decided, err := RunEnvelope(ctx, []*Script{rcpt}, Envelope{From: "x@spam.example", To: "bob@example.org"}, Limits{})
	if err != nil || !decided || actionsString(out.Actions) != `reject "No."` {
		t.Errorf("RCPT-time example: %v %v %v", decided, out.Actions, err)
	}
	if _, decided, _ := RunEnvelope(ctx, []*Script{rcpt}, Envelope{From: "x@example.net", To: "bob@example.org"}, Limits{}); decided {
		t.Error("RCPT-time example decided without the header")
	}
	// The before script and the user script, in sequence.
	before := mustLoad(t, "before", scripts[1])
	user := mustLoad(t, "user", scripts[2])
	spam := mustParse(t, "X-Spam-Flag: YES\r\nFrom: a@example.net\r\n\r\nx\r\n")
	out, err = Run(ctx, []*Script{before, user, nil}, Envelope{From: "a@example.net", To: "bob@example.org"}, spam, Limits{})
	if err != nil || actionsString(out.Actions) != `fileinto "Junk" flags \Seen` {
		t.Errorf("before example: %v %v", out.Actions, err)
	}
	list := mustParse(t, "List-Id: Go <golang.example.org>\r\nFrom: a@example.org\r\n\r\nx\r\n")
	out, err = Run(ctx, []*Script{before, user, nil}, Envelope{From: "a@example.org", To: "bob+lists@example.org"}, list, Limits{})
	if err != nil || actionsString(out.Actions) != `fileinto "Lists.golang"` {
		t.Errorf("user example, list: %v %v", out.Actions, err)
	}
	ham := mustParse(t, "From: Carol <carol@example.net>\r\n\r\nx\r\n")
	out, err = Run(ctx, []*Script{before, user, nil}, Envelope{From: "carol@example.net", To: "bob@example.org"}, ham, Limits{})
	if err != nil || actionsString(out.Actions) != `redirect <bob@work.example>` {
		t.Errorf("user example, redirect: %v %v", out.Actions, err)
	}
	out, decided, err = RunEnvelope(ctx, []*Script{before, user, nil}, Envelope{From: "x@spam.example", To: "bob@example.org"}, Limits{})
	if err != nil || decided {
		t.Errorf("the before script reads a header, yet RCPT time decided: %v %v", out.Actions, err)
	}
	// Every allowlisted Pigeonhole difference is in the page's section.
	diff := page[strings.Index(page, ".SH PIGEONHOLE DIFFERENCES"):strings.Index(page, ".SH EXAMPLES")]
	for name, keyword := range map[string]string{
		"fileinto-slash":           `.B \(dqa/b\(dq`,
		"fileinto-nul":             "${hex:00}",
		"redirect-display-name":    "Joe <joe@example.org>",
		"redirect-quoted-space":    "a space in a quoted local part",
		"before-copy-then-reject":  "A reject after a delivery by an earlier script",
		"before-copy-then-error":   "A script error after an earlier script",
		"fileinto-duplicate-flags": "A second",
	} {
		if _, ok := pigeonholeDifferences[name]; !ok {
			t.Errorf("%s is not an allowlisted difference", name)
		}
		if !strings.Contains(diff, keyword) {
			t.Errorf("difference %s (%q) is not in PIGEONHOLE DIFFERENCES", name, keyword)
		}
	}
	if len(pigeonholeDifferences) != 7 {
		t.Errorf("%d allowlisted differences; update this test and the page", len(pigeonholeDifferences))
	}
}
