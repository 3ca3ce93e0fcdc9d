package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lda/internal/status"
)

// TestDeliverBasics covers the normal paths and the exit code of each
// outcome class, against the real binary.
func TestDeliverBasics(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	f.mkdirAs(u, filepath.Join(u.Home, "mail"))
	spool := filepath.Join(f.base, "spool")
	os.Mkdir(spool, 0o1777)
	os.Chmod(spool, 0o1777)

	t.Run("default maildir", func(t *testing.T) {
		r := f.deliver(u, message("one", "body one\n"), "-a", "rcpt@example.org")
		if r.exit != 0 {
			t.Fatalf("exit %d: %s", r.exit, r.stderr)
		}
		ents, _ := os.ReadDir(filepath.Join(u.Home, "Maildir", "new"))
		if len(ents) != 1 {
			t.Fatalf("new/ holds %d entries, want 1", len(ents))
		}
		b := snapshot(t, filepath.Join(u.Home, "Maildir", "new", ents[0].Name()))
		want := "Return-Path: <sender@example.org>\nDelivered-To: rcpt@example.org\n" + string(message("one", "body one\n"))
		if string(b) != want {
			t.Fatalf("content:\n%q\nwant\n%q", b, want)
		}
		fi, _ := os.Stat(filepath.Join(u.Home, "Maildir", "new", ents[0].Name()))
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
		}
	})
	t.Run("maildir folder", func(t *testing.T) {
		r := f.deliver(u, message("two", "x\n"), "-folder", "Lists.go")
		if r.exit != 0 {
			t.Fatalf("exit %d: %s", r.exit, r.stderr)
		}
		ents, _ := os.ReadDir(filepath.Join(u.Home, "Maildir", ".Lists.go", "new"))
		if len(ents) != 1 {
			t.Fatalf("folder new/ holds %d entries", len(ents))
		}
	})
	t.Run("spool mbox created", func(t *testing.T) {
		r := f.deliver(u, message("three", "From here\n"), "-dest", "mbox:"+filepath.Join(spool, u.Name))
		if r.exit != 0 {
			t.Fatalf("exit %d: %s", r.exit, r.stderr)
		}
		fi, err := os.Stat(filepath.Join(spool, u.Name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("mbox: %v %v", fi, err)
		}
		b := snapshot(t, filepath.Join(spool, u.Name))
		if !strings.HasPrefix(string(b), "From sender@example.org ") || !strings.Contains(string(b), "\n>From here\n") || !strings.HasSuffix(string(b), "\n\n") {
			t.Fatalf("mbox content:\n%s", b)
		}
	})
	for _, tc := range []struct {
		name string
		user string
		args []string
		exit int
		line string
	}{
		{"unknown user", "no-such-user-x", nil, 67, "550 5.1.1"},
		{"policy refusal", "", []string{"-dest", "mbox:/etc/passwd"}, 77, "550 5.7.1"},
		{"other user's spool", "", []string{"-dest", "mbox:" + filepath.Join(spool, "root")}, 77, "550 5.7.1"},
		{"denied by system deny", "", []string{"-dest", "mbox:" + filepath.Join(u.Home, "mail", "private", "x")}, 77, "550 5.7.1"},
		{"relative destination", "", []string{"-dest", "mbox:mail/inbox"}, 64, ""},
		{"dotdot destination", "", []string{"-dest", "mbox:" + u.Home + "/mail/../x"}, 64, ""},
		{"bad kind", "", []string{"-dest", "pipe:/bin/sh"}, 64, ""},
		{"shell metacharacters in program", "", []string{"-dest", "program:probe;id"}, 64, ""},
		{"newline in sender", "", []string{"-f", "a\nX-Injected: 1"}, 64, "501 5.5.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.user
			if name == "" {
				name = u.Name
			}
			args := append([]string{"deliver", "-policy", f.policy, "-log", f.log, "-d", name}, tc.args...)
			r := f.run(message("x", "y\n"), args...)
			if r.exit != tc.exit {
				t.Fatalf("exit %d, want %d (%s)", r.exit, tc.exit, r.stderr)
			}
			if tc.line != "" && !strings.Contains(r.stderr, tc.line) {
				t.Fatalf("stderr %q lacks %q", r.stderr, tc.line)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Fatalf("more than one line on stderr: %q", r.stderr)
			}
			if strings.Contains(r.stderr, "/etc/passwd") || strings.Contains(r.stderr, f.base) {
				t.Fatalf("stderr leaks a path: %q", r.stderr)
			}
		})
	}
	t.Run("one structured log line per delivery", func(t *testing.T) {
		for _, l := range f.logLines() {
			if !strings.Contains(l, "msg=delivery") || !strings.Contains(l, "status=") || !strings.Contains(l, "user=") {
				t.Fatalf("log line without the structured fields: %q", l)
			}
		}
		if n := len(f.logLines()); n < 8 {
			t.Fatalf("only %d log lines for the deliveries above", n)
		}
	})
	t.Run("explain names the rule", func(t *testing.T) {
		r := f.run(nil, "explain", "-policy", f.policy, u.Name, "mbox:"+filepath.Join(u.Home, "mail", "private", "x"))
		if r.exit != 77 || !strings.Contains(r.stdout, "decision: refused") || !strings.Contains(r.stdout, f.policy+":") {
			t.Fatalf("exit %d:\n%s%s", r.exit, r.stdout, r.stderr)
		}
		r = f.run(nil, "explain", "-policy", f.policy, u.Name)
		if r.exit != 0 || !strings.Contains(r.stdout, "decision: allowed") || !strings.Contains(r.stdout, "allow maildir ~/Maildir") {
			t.Fatalf("exit %d:\n%s%s", r.exit, r.stdout, r.stderr)
		}
	})
	t.Run("check", func(t *testing.T) {
		if r := f.run(nil, "check", "-policy", f.policy, "-u", u.Name); r.exit != 0 {
			t.Fatalf("check: exit %d\n%s%s", r.exit, r.stdout, r.stderr)
		}
		bad := filepath.Join(f.base, "bad.yaml")
		os.WriteFile(bad, []byte("version: 1\nmin_uid: 1000\nallow:\n  - {mbox: /x/%u}\nfrobnicate: 1\n"), 0o644)
		r := f.run(nil, "check", "-policy", bad)
		if r.exit != 78 || !strings.Contains(r.stderr, bad+":") {
			t.Fatalf("bad policy: exit %d, stderr %q", r.exit, r.stderr)
		}
		// deliver with a broken policy defers: mail waits.
		r = f.run(message("x", "y\n"), "deliver", "-policy", bad, "-log", f.log, "-d", u.Name)
		if r.exit != 75 {
			t.Fatalf("deliver with a bad policy: exit %d, want 75", r.exit)
		}
		// One line for the MTA, without the path; the detail is logged.
		if r.stderr != "lda: "+status.ConfigError.Reply()+"\n" {
			t.Fatalf("deliver with a bad policy: stderr %q, want one line with the generic reply", r.stderr)
		}
		if b, _ := os.ReadFile(f.log); !strings.Contains(string(b), "status=\"451 4.3.5\"") || !strings.Contains(string(b), bad+":") {
			t.Fatalf("deliver with a bad policy: the log does not name the file:\n%s", b)
		}
	})
}
