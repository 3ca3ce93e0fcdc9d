package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lda/internal/status"
)

// TestDeliverStderrAndInput holds lda deliver to its contract with the
// MTA where the input or the log is not what it should be: standard
// error is one generic line even when the log cannot be opened (the MTA
// may put it in a bounce), a bad -max-size or -timeout is a usage error,
// a -timeout too short to start a worker is 451 4.4.7, an envelope
// address that is not UTF-8 or holds a Unicode line break is a usage
// error, and a standard input that was closed is a temporary failure,
// never an empty message delivered with exit 0.
func TestDeliverStderrAndInput(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	newMail := func() int {
		ents, _ := os.ReadDir(filepath.Join(u.Home, "Maildir", "new"))
		return len(ents)
	}
	// run runs lda with fd 0 closed before exec ("closed") or left to
	// os/exec ("devnull": /dev/null, read-only).
	run := func(stdin string, args ...string) result {
		if stdin == "closed" {
			return f.runCmd(nil, "/bin/sh", append([]string{"-c", `exec "$0" "$@" <&-`, f.bin}, args...)...)
		}
		return f.runCmd(nil, f.bin, args...)
	}
	badLog := filepath.Join(f.base, "no-such-dir", "lda.log")
	missingPolicy := filepath.Join(f.base, "no-such-policy.yaml")
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		exit  int
		line  string // all of standard error
		added int    // messages added to the user's Maildir
		log   string // in the log file, when the log is f.log
	}{
		{"unknown user, log unusable", "devnull", []string{"-log", badLog, "-d", "no-such-user-x"}, 67, "lda: " + status.UnknownUser.Reply() + "\n", 0, ""},
		{"missing policy, log unusable", "devnull", []string{"-log", badLog, "-policy", missingPolicy, "-d", u.Name}, 75, "lda: " + status.ConfigError.Reply() + "\n", 0, ""},
		{"negative max-size", "devnull", []string{"-log", f.log, "-max-size", "-1", "-d", u.Name}, 64, "", 0, ""},
		{"zero timeout", "devnull", []string{"-log", f.log, "-timeout", "0s", "-d", u.Name}, 64, "", 0, ""},
		{"negative timeout", "devnull", []string{"-log", f.log, "-timeout", "-1s", "-d", u.Name}, 64, "", 0, ""},
		// A limit too short for a worker to start is a time limit, not
		// an unknown error.
		{"timeout before the worker starts", "devnull", []string{"-log", f.log, "-timeout", "1ns", "-d", u.Name}, 75, "lda: " + status.Timeout.Reply() + "\n", 0, ""},
		// -f and -a become header lines: refused when not UTF-8, or with
		// what a Unicode reader takes for a line break.
		{"NEL in the sender", "devnull", []string{"-log", f.log, "-f", "a\u0085b@example.org", "-d", u.Name}, 64, "", 0, ""},
		{"invalid UTF-8 in the sender", "devnull", []string{"-log", f.log, "-f", "a\xffb@example.org", "-d", u.Name}, 64, "", 0, ""},
		{"line separator in the recipient", "devnull", []string{"-log", f.log, "-a", "a\u2028X-Spam: no@example.org", "-d", u.Name}, 64, "", 0, ""},
		{"UTF-8 sender and recipient", "devnull", []string{"-log", f.log, "-f", "jürgen@bücher.example", "-a", "用户@例子.example", "-d", u.Name}, 0, "", 1, ""},
		{"standard input closed", "closed", []string{"-log", f.log, "-d", u.Name}, 75, "lda: " + status.ConfigError.Reply() + "\n", 0, "standard input was closed"},
		// The control: a read-only /dev/null is an empty message, as any
		// empty input is, and is delivered.
		{"standard input /dev/null", "devnull", []string{"-log", f.log, "-d", u.Name}, 0, "", 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := newMail()
			args := []string{"deliver", "-policy", f.policy}
			r := run(tc.stdin, append(args, tc.args...)...)
			if r.exit != tc.exit {
				t.Fatalf("exit %d, want %d (stderr %q)", r.exit, tc.exit, r.stderr)
			}
			if tc.exit != 0 {
				if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "lda: ") {
					t.Fatalf("standard error is not one line: %q", r.stderr)
				}
				if strings.Contains(r.stderr, f.base) {
					t.Fatalf("standard error names a path: %q", r.stderr)
				}
			}
			if tc.exit == 64 && !strings.HasPrefix(r.stderr, "lda: "+status.Usage.Reply()) {
				t.Fatalf("usage error without the usage reply: %q", r.stderr)
			}
			if tc.line != "" && r.stderr != tc.line {
				t.Fatalf("standard error %q, want %q", r.stderr, tc.line)
			}
			if got := newMail() - before; got != tc.added {
				t.Fatalf("%d messages added, want %d", got, tc.added)
			}
			if tc.log != "" {
				b, _ := os.ReadFile(f.log)
				if !strings.Contains(string(b), tc.log) || !strings.Contains(string(b), `status="451 4.3.5"`) {
					t.Fatalf("the log does not say %q with 451 4.3.5:\n%s", tc.log, b)
				}
			}
		})
	}
}
