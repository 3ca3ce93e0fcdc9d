package policy

import (
	"os"
	"strings"
	"testing"
)

// manExamples returns the .nf/.fi blocks of the manual page, unescaped.
func manExamples(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../man/lda-policy.5")
	if err != nil {
		t.Skipf("manual page: %v", err)
	}
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
			cur.WriteString(strings.ReplaceAll(line, `\-`, "-") + "\n")
		}
	}
	return blocks
}

// TestManExamples: the examples of lda-policy(5) parse and mean what the
// page says.
func TestManExamples(t *testing.T) {
	blocks := manExamples(t)
	if len(blocks) != 2 {
		t.Fatalf("%d example blocks, want 2", len(blocks))
	}
	sys, err := ParseSystem(strings.NewReader(blocks[0]), "policy.yaml")
	if err != nil {
		t.Fatalf("system example: %v", err)
	}
	up, err := ParseUser(strings.NewReader(blocks[1]), ".lda.yaml", sys, alice)
	if err != nil {
		t.Fatalf("user example: %v", err)
	}
	p := &Policy{Sys: sys, User: up}
	if d, dec := p.Default(alice); d != mbox("/home/alice/inbox") || !dec.Allowed {
		t.Errorf("user example default: %v %s", d, dec.Reason)
	}
	if dec := p.Check(alice, mbox("/var/mail/alice")); dec.Allowed {
		t.Errorf("user example allows the spool: %s", dec.Reason)
	}
	for _, bad := range []string{
		"allow: [{mbox: /**}]",
		"allow: [{mbox: /home/*/inbox}]",
		"allow: [{mbox: ~/.profile}]",
		"allow: [{program: procmail}]",
		"deny: [{maildir: ~/Maildir}]",
	} {
		t.Run(quote(bad), func(t *testing.T) {
			if _, err := ParseUser(strings.NewReader("version: 1\n"+bad+"\n"), "u.yaml", sys, alice); err == nil {
				t.Errorf("man page says %q is an error; it parsed", bad)
			}
		})
	}
	// The built-in policy is the example plus one deny rule.
	if got, want := len(Default().Rules()), len(sys.Rules())+1; got != want {
		t.Errorf("built-in policy has %d rules, the example %d+1", got, want-1)
	}
}
