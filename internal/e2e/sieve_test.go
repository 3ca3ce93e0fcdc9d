package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lda/internal/testutil"
)

const userScript = `require ["fileinto", "reject", "envelope", "imap4flags"];
if envelope :is "from" "spam@bad.example" {
  reject "we do not want this";
} elsif header :contains "subject" "work" {
  fileinto :flags "\\Flagged" "Work";
} elsif header :contains "subject" "forward me" {
  redirect "elsewhere@example.net";
} elsif header :contains "subject" "drop" {
  discard;
}
`

func countNew(t *testing.T, dir string) int {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	return len(ents)
}

// TestSieveDeliver runs a user's script, as the user, for lda deliver.
func TestSieveDeliver(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	testutil.WriteFile(t, filepath.Join(u.Home, ".lda.sieve"), []byte(userScript), 0o600, u.UID, u.GID)
	md := filepath.Join(u.Home, "Maildir")

	if r := f.deliver(u, message("hello", "x\n")); r.exit != 0 {
		t.Fatalf("keep: exit %d %s", r.exit, r.stderr)
	}
	if n := countNew(t, filepath.Join(md, "new")); n != 1 {
		t.Fatalf("inbox holds %d", n)
	}
	if r := f.deliver(u, message("about work", "x\n")); r.exit != 0 {
		t.Fatalf("fileinto: exit %d %s", r.exit, r.stderr)
	}
	ents, _ := os.ReadDir(filepath.Join(md, ".Work", "cur"))
	if len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), ":2,F") {
		t.Fatalf("fileinto :flags: .Work/cur holds %v", ents)
	}
	r := f.run(message("x", "y\n"), "deliver", "-policy", f.policy, "-log", f.log, "-f", "spam@bad.example", "-d", u.Name)
	if r.exit != 77 || !strings.Contains(r.stderr, "550 5.7.1 we do not want this") {
		t.Fatalf("reject: exit %d %q", r.exit, r.stderr)
	}
	if r := f.deliver(u, message("please drop", "x\n")); r.exit != 0 || countNew(t, filepath.Join(md, "new")) != 1 {
		t.Fatalf("discard: exit %d, inbox %d", r.exit, countNew(t, filepath.Join(md, "new")))
	}
	// A broken script: implicit keep, and the user is told in ~/.lda-sieve.log.
	testutil.WriteFile(t, filepath.Join(u.Home, ".lda.sieve"), []byte("if true { keep\n"), 0o600, u.UID, u.GID)
	if r := f.deliver(u, message("broken", "x\n")); r.exit != 0 {
		t.Fatalf("broken script: exit %d %s", r.exit, r.stderr)
	}
	if n := countNew(t, filepath.Join(md, "new")); n != 2 {
		t.Fatalf("broken script: inbox holds %d, want 2 (implicit keep)", n)
	}
	if log := string(snapshot(t, filepath.Join(u.Home, ".lda-sieve.log"))); !strings.Contains(log, "kept") {
		t.Fatalf("user log: %q", log)
	}
	// ~/.dovecot.sieve is accepted for migrators.
	os.Remove(filepath.Join(u.Home, ".lda.sieve"))
	testutil.WriteFile(t, filepath.Join(u.Home, ".dovecot.sieve"), []byte("discard;\n"), 0o600, u.UID, u.GID)
	if r := f.deliver(u, message("dovecot", "x\n")); r.exit != 0 || countNew(t, filepath.Join(md, "new")) != 2 {
		t.Fatalf(".dovecot.sieve not used: exit %d", r.exit)
	}
}

// TestSieveServe: RCPT-time refusal, XLDA-FILTER replies, and the policy
// service, through the daemon.
func TestSieveServe(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	testutil.WriteFile(t, filepath.Join(u.Home, ".lda.sieve"), []byte(userScript), 0o600, u.UID, u.GID)
	psock := filepath.Join(f.base, "run", "policy.sock")
	d := startDaemon(t, f, "policy_socket: "+psock+"\nredirect_command: [/bin/true]\n")
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.stderr)
		}
	}()
	cl := dialLMTP(t, d.socket)
	cl.cmd("LHLO mta.test", "250")

	t.Run("rejected at RCPT time", func(t *testing.T) {
		cl.cmd("MAIL FROM:<spam@bad.example>", "250")
		cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "550 5.7.1 we do not want this")
		cl.cmd("RCPT TO:<"+f.u2.Name+"@example.org>", "250") // no script: accepted
		cl.cmd("RSET", "250")
	})
	t.Run("a script installed since is still applied", func(t *testing.T) {
		// u2 was just seen without a filter, so for a short while its
		// RCPT skips the round trip to a worker; the script must then
		// still reject after DATA, and at RCPT time once that has passed.
		script := filepath.Join(f.u2.Home, ".lda.sieve")
		testutil.WriteFile(t, script, []byte(userScript), 0o600, f.u2.UID, f.u2.GID)
		defer os.Remove(script)
		cl.cmd("MAIL FROM:<spam@bad.example>", "250")
		cl.cmd("RCPT TO:<"+f.u2.Name+"@example.org>", "250")
		cl.cmd("DATA", "354")
		fmt.Fprintf(cl.c, "Subject: hello\r\n\r\nx\r\n.\r\n")
		cl.expect("550 5.7.1 we do not want this")
		time.Sleep(2200 * time.Millisecond)
		cl.cmd("MAIL FROM:<spam@bad.example>", "250")
		cl.cmd("RCPT TO:<"+f.u2.Name+"@example.org>", "550 5.7.1 we do not want this")
		cl.cmd("RSET", "250")
	})
	t.Run("an edit reaches the next message, though the worker keeps its parse", func(t *testing.T) {
		// Once the script has been left alone for longer than the worker's
		// settle time (3 s), the warm worker keeps what it parsed. An edit
		// in place, to the same inode and the same size, that only the
		// file's times tell apart, must still be seen at once.
		script := filepath.Join(u.Home, ".lda.sieve")
		if err := os.WriteFile(script, []byte(userScript), 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3300 * time.Millisecond)
		for range 2 {
			cl.cmd("MAIL FROM:<spam@bad.example>", "250")
			cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "550 5.7.1 we do not want this")
			cl.cmd("RSET", "250")
		}
		edited := strings.Replace(userScript, "spam@bad.example", "spam@bax.example", 1)
		if err := os.WriteFile(script, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := os.WriteFile(script, []byte(userScript), 0o600); err != nil {
				t.Fatal(err)
			}
		}()
		cl.cmd("MAIL FROM:<spam@bad.example>", "250")
		cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "250")
		cl.cmd("RSET", "250")
		cl.cmd("MAIL FROM:<spam@bax.example>", "250")
		cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "550 5.7.1 we do not want this")
		cl.cmd("RSET", "250")
	})
	t.Run("header-dependent script waits for DATA", func(t *testing.T) {
		cl.cmd("MAIL FROM:<friend@example.org>", "250")
		cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "250")
		cl.cmd("DATA", "354")
		fmt.Fprintf(cl.c, "Subject: work stuff\r\n\r\nx\r\n.\r\n")
		cl.expect("250 2.0.0")
		if ents, _ := os.ReadDir(filepath.Join(u.Home, "Maildir", ".Work", "cur")); len(ents) != 1 {
			t.Fatalf(".Work holds %d", len(ents))
		}
	})
	t.Run("filter only", func(t *testing.T) {
		cl.cmd("MAIL FROM:<friend@example.org>", "250")
		cl.cmd("RCPT TO:<"+u.Name+"@example.org> XLDA-FILTER=only", "250")
		cl.cmd("DATA", "354")
		fmt.Fprintf(cl.c, "Subject: forward me\r\n\r\nx\r\n.\r\n")
		r := cl.expect("250")
		if !strings.Contains(r, "250-2.0.0 ACTION redirect elsewhere@example.net") {
			t.Fatalf("filter-only reply:\n%s", r)
		}
		if n := countNew(t, filepath.Join(u.Home, "Maildir", "new")); n != 0 {
			t.Fatalf("filter-only delivered %d messages", n)
		}
	})
	t.Run("redirect submitted for a stock client", func(t *testing.T) {
		cl.cmd("MAIL FROM:<friend@example.org>", "250")
		cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "250")
		cl.cmd("DATA", "354")
		fmt.Fprintf(cl.c, "Subject: forward me\r\n\r\nx\r\n.\r\n")
		cl.expect("250 2.0.0")
		if !strings.Contains(d.stderr.String(), "actions=\"redirect elsewhere@example.net\"") {
			t.Fatalf("no redirect in the log:\n%s", d.stderr)
		}
	})
	t.Run("policy service", func(t *testing.T) {
		out := policyQuery(t, psock, "spam@bad.example", u.Name+"@example.org")
		if out != "action=REJECT 5.7.1 we do not want this" {
			t.Fatalf("policy service said %q", out)
		}
		if out := policyQuery(t, psock, "friend@example.org", u.Name+"@example.org"); out != "action=DUNNO" {
			t.Fatalf("policy service said %q for a friend", out)
		}
		if out := policyQuery(t, psock, "a@b", "nobody-here-zz@example.org"); !strings.HasPrefix(out, "action=REJECT 5.1.1") {
			t.Fatalf("policy service said %q for an unknown user", out)
		}
	})
}

func policyQuery(t *testing.T, sock, sender, rcpt string) string {
	t.Helper()
	cl := dialRaw(t, sock)
	fmt.Fprintf(cl.c, "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=%s\nrecipient=%s\n\n", sender, rcpt)
	line, err := cl.r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// TestSieveDeliverRedirect: lda deliver submits a filter's redirect, as
// the user, through -sendmail; a failing submission is a 4xx, never a
// silent loss.
func TestSieveDeliverRedirect(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	testutil.WriteFile(t, filepath.Join(u.Home, ".lda.sieve"), []byte(`redirect "elsewhere@example.net";`), 0o600, u.UID, u.GID)
	out := filepath.Join(f.base, "out")
	testutil.Must(t, os.MkdirAll(out, 0o1777))
	os.Chmod(out, 0o1777)
	fake := filepath.Join(f.base, "prog", "fake-sendmail")
	testutil.WriteFile(t, fake, []byte("#!/bin/sh\nid -u > "+out+"/uid\necho \"$@\" > "+out+"/args\ncat > "+out+"/msg\n"), 0o755, 0, 0)
	os.Chmod(filepath.Dir(fake), 0o755)
	r := f.deliver(u, message("fwd", "body\n"), "-a", "orig@example.org", "-sendmail", fake)
	if r.exit != 0 {
		t.Fatalf("exit %d %s", r.exit, r.stderr)
	}
	if got := strings.TrimSpace(string(snapshot(t, out+"/uid"))); got != fmt.Sprint(u.UID) {
		t.Fatalf("sendmail ran as uid %s, want the user's %d", got, u.UID)
	}
	if got := strings.TrimSpace(string(snapshot(t, out+"/args"))); got != "-i -f sender@example.org -- elsewhere@example.net" {
		t.Fatalf("sendmail args %q", got)
	}
	if msg := string(snapshot(t, out+"/msg")); !strings.HasPrefix(msg, "Delivered-To: orig@example.org\n") || !strings.Contains(msg, "Subject: fwd") {
		t.Fatalf("submitted message %q", msg)
	}
	if n := countNew(t, filepath.Join(u.Home, "Maildir", "new")); n != 0 {
		t.Fatalf("a plain redirect also kept %d", n)
	}
	testutil.WriteFile(t, fake, []byte("#!/bin/sh\nexit 1\n"), 0o755, 0, 0)
	if r := f.deliver(u, message("fwd", "body\n"), "-sendmail", fake); r.exit != 75 {
		t.Fatalf("failed submission: exit %d, want 75", r.exit)
	}
}

// sieveSession gives f.u1 the Sieve script, starts lda serve (with extra
// configuration lines) and returns it with a client past LHLO. The
// daemon's log is shown if the test fails.
func sieveSession(t *testing.T, f *fixture, script, extra string) (*daemon, *lmtpClient) {
	t.Helper()
	u := f.u1
	testutil.WriteFile(t, filepath.Join(u.Home, ".lda.sieve"), []byte(script), 0o600, u.UID, u.GID)
	d := startDaemon(t, f, extra)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.stderr)
		}
	})
	cl := dialLMTP(t, d.socket)
	cl.cmd("LHLO mta.test", "250")
	return d, cl
}

// TestSieveRcptSkip: a script that reads the message before anything of
// the envelope can never be decided at RCPT time, so the listener stops
// asking for 2 seconds after a job says so, as it does for a user without
// a filter. A script changed within that window still applies after DATA,
// and at RCPT time once the window has passed.
func TestSieveRcptSkip(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	script := filepath.Join(u.Home, ".lda.sieve")
	_, cl := sieveSession(t, f, `require "fileinto";
if header :contains "subject" "work" { fileinto "Work"; }
`, "")
	cl.cmd("MAIL FROM:<friend@example.org>", "250")
	cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "250")
	cl.cmd("DATA", "354")
	fmt.Fprintf(cl.c, "Subject: work stuff\r\n\r\nx\r\n.\r\n")
	cl.expect("250 2.0.0")
	if n := countNew(t, filepath.Join(u.Home, "Maildir", ".Work", "new")); n != 1 {
		t.Fatalf(".Work/new holds %d", n)
	}
	// Now a script that rejects on the envelope alone.
	if err := os.WriteFile(script, []byte(userScript), 0o600); err != nil {
		t.Fatal(err)
	}
	cl.cmd("MAIL FROM:<spam@bad.example>", "250")
	cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "250") // not asked: the last script could not decide
	cl.cmd("DATA", "354")
	fmt.Fprintf(cl.c, "Subject: hello\r\n\r\nx\r\n.\r\n")
	cl.expect("550 5.7.1 we do not want this")
	time.Sleep(2200 * time.Millisecond)
	cl.cmd("MAIL FROM:<spam@bad.example>", "250")
	cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "550 5.7.1 we do not want this")
	cl.cmd("RSET", "250")
}

// TestSieveRunawayRetiresWorker: a script whose run outlives its time limit
// gets 451 4.3.0, and the sieve package abandons the run still computing.
// The warm worker that holds it must not go on serving with it (each
// message would add another): it answers, says why in the log, and exits.
func TestSieveRunawayRetiresWorker(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	pattern := strings.Repeat("*a", 1000) + "*b" // about 10 s to match against 400 KB of "a" here
	d, cl := sieveSession(t, f, `require "body";
if body :raw :matches "`+pattern+`" { discard; }
`, "workers: {max_idle: 8, idle_time: 1m, max_deliveries: 100}\n")
	cl.cmd("MAIL FROM:<a@example.org>", "250")
	cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "250") // the script reads the message first
	cl.cmd("DATA", "354")
	fmt.Fprintf(cl.c, "Subject: slow\r\n\r\n%s\r\n.\r\n", strings.Repeat("a", 400000))
	cl.expect("451 4.3.0")
	waitFor(t, func() bool { return len(warmWorkers(f.bin, u.UID)) == 0 }, "the worker with the runaway run to exit")
	// Root logs the worker's stderr once it has reaped it.
	waitFor(t, func() bool { return strings.Contains(d.stderr.String(), "serving no other job") }, "the log to say why the worker exited")
	// The user's next message gets a fresh worker, and the same answer.
	cl.cmd("MAIL FROM:<a@example.org>", "250")
	cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "250")
	cl.cmd("DATA", "354")
	fmt.Fprintf(cl.c, "Subject: slow\r\n\r\n%s\r\n.\r\n", strings.Repeat("a", 400000))
	cl.expect("451 4.3.0")
	if n := countNew(t, filepath.Join(u.Home, "Maildir", "new")); n != 0 {
		t.Fatalf("%d messages delivered despite 451", n)
	}
}
