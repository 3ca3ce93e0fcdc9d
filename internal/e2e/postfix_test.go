package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lda/internal/testutil"
	"lda/internal/userdb"
)

// postfixBin is Debian's postfix command; the test skips without it.
const postfixBin = "/usr/sbin/postfix"

// postfixInstance is a private Postfix, entirely beneath one directory,
// listening on loopback only. The system instance is never touched.
type postfixInstance struct {
	t       *testing.T
	dir     string // config_directory (and meta_directory)
	queue   string
	maillog string
	port    int
}

// postfixMainCf is main.cf; the {{...}} fields are filled in by
// startPostfix.
const postfixMainCf = `# Private test instance: loopback only, no DNS, every delivery to lda.
compatibility_level = 3.6
config_directory = {{DIR}}
meta_directory = {{DIR}}
queue_directory = {{QUEUE}}
data_directory = {{DATA}}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
maillog_file = {{MAILLOG}}
maillog_file_prefixes = {{BASE}}
syslog_name = postfix-ldatest

myhostname = mta.example.test
mydomain = example.test
myorigin = $myhostname
mydestination = example.test
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8

local_transport = lmtp:unix:{{SOCKET}}
local_recipient_maps =
alias_maps =
alias_database =
biff = no
# Nothing leaves this instance: bounces to remote senders fail at once.
default_transport = error:outbound mail is disabled in this test
relay_transport = error:outbound mail is disabled in this test

disable_dns_lookups = yes
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native

# Leave the message's header alone (byte-exactness): no rewriting, no
# added Message-ID/Date, for any client.
local_header_rewrite_clients =
always_add_missing_headers = no
smtpd_tls_security_level = none
lmtp_tls_security_level = none
smtputf8_enable = no
`

// postfixMasterCf is master.cf: every service chroot = n; smtpd on
// 127.0.0.1 only; postlog for maillog_file.
const postfixMasterCf = `# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:{{PORT}} inet n   -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// freeLoopbackPort returns a currently unused high TCP port on 127.0.0.1.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if port < 1024 {
		t.Fatalf("free port %d is not a high port", port)
	}
	return port
}

// startPostfix writes the configuration beneath base/postfix, starts the
// instance, and stops it when t ends.
func startPostfix(t *testing.T, base, ldaSocket string) *postfixInstance {
	t.Helper()
	return startPostfixWith(t, base, ldaSocket, "")
}

// startPostfixWith is startPostfix with extraMainCf appended to main.cf
// (later settings override earlier ones).
func startPostfixWith(t *testing.T, base, ldaSocket, extraMainCf string) *postfixInstance {
	t.Helper()
	root := filepath.Join(base, "postfix")
	p := &postfixInstance{
		t:       t,
		dir:     filepath.Join(root, "etc"),
		queue:   filepath.Join(root, "queue"),
		maillog: filepath.Join(root, "maillog"),
		port:    freeLoopbackPort(t),
	}
	for _, d := range []string{root, p.dir, p.queue, filepath.Join(p.dir, "postfix-files.d"), filepath.Join(p.dir, "dynamicmaps.cf.d")} {
		testutil.Must(t, os.MkdirAll(d, 0o755))
		testutil.Must(t, os.Chmod(d, 0o755))
	}
	// post-install (run by `postfix start`) reads postfix-files from the
	// meta directory; copy Debian's, never use /etc/postfix itself.
	for _, name := range []string{"postfix-files", "dynamicmaps.cf"} {
		b, err := os.ReadFile(filepath.Join("/etc/postfix", name))
		if err != nil {
			if name == "postfix-files" {
				t.Skipf("postfix installed without %s: %v", name, err)
			}
			continue
		}
		testutil.WriteFile(t, filepath.Join(p.dir, name), b, 0o644, 0, 0)
	}
	r := strings.NewReplacer(
		"{{DIR}}", p.dir, "{{QUEUE}}", p.queue, "{{DATA}}", filepath.Join(root, "data"),
		"{{MAILLOG}}", p.maillog, "{{BASE}}", base, "{{SOCKET}}", ldaSocket,
		"{{PORT}}", strconv.Itoa(p.port))
	testutil.WriteFile(t, filepath.Join(p.dir, "main.cf"), []byte(r.Replace(postfixMainCf)+extraMainCf), 0o644, 0, 0)
	testutil.WriteFile(t, filepath.Join(p.dir, "master.cf"), []byte(r.Replace(postfixMasterCf)), 0o644, 0, 0)

	// On failure, show Postfix's own log (registered first: it runs after
	// the stop below, so the log includes the shutdown).
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Postfix log (%s):\n%s", p.maillog, p.log())
		}
	})
	if out, err := p.cmd(30*time.Second, postfixBin, "-c", p.dir, "start"); err != nil {
		p.kill()
		t.Fatalf("postfix start: %v\n%s\nlog:\n%s", err, out, p.log())
	}
	t.Cleanup(p.stop)

	// Wait until smtpd answers on the port.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr(), time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix smtpd never listened on %s: %v\nlog:\n%s", p.addr(), err, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *postfixInstance) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// cmd runs a Postfix command with a deadline. WaitDelay keeps a daemon
// that inherited the output pipe from holding Wait forever.
func (p *postfixInstance) cmd(timeout time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.WaitDelay = 5 * time.Second
	c.Env = append(os.Environ(), "MAIL_CONFIG="+p.dir)
	out, err := c.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%v: timed out after %v", err, timeout)
	}
	return string(out), err
}

// log returns Postfix's own log so far.
func (p *postfixInstance) log() string {
	b, _ := os.ReadFile(p.maillog)
	return string(b)
}

// stop stops the instance, and kills its master if that fails.
func (p *postfixInstance) stop() {
	out, err := p.cmd(20*time.Second, postfixBin, "-c", p.dir, "stop")
	if err != nil {
		p.t.Errorf("postfix stop: %v\n%s", err, out)
	}
	p.kill()
}

// kill kills the master's process group if it still runs.
func (p *postfixInstance) kill() {
	b, err := os.ReadFile(filepath.Join(p.queue, "pid", "master.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	if syscall.Kill(pid, 0) == nil {
		if cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); bytes.Contains(cmdline, []byte("master")) {
			p.t.Logf("postfix master %d still runs; killing it", pid)
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// queueID returns the Postfix queue ID of the message with Message-ID mid,
// from cleanup's "QID: message-id=<mid>" log line, or "".
func (p *postfixInstance) queueID(mid string) string {
	m := regexp.MustCompile(`: ([0-9A-Za-z]+): message-id=<` + regexp.QuoteMeta(mid) + `>`).FindStringSubmatch(p.log())
	if m == nil {
		return ""
	}
	return m[1]
}

// deliveryLines returns Postfix's delivery log lines ("QID: to=<rcpt>, ...")
// for queue ID qid and recipient rcpt.
func (p *postfixInstance) deliveryLines(qid, rcpt string) []string {
	var out []string
	if qid == "" {
		return nil
	}
	for _, l := range strings.Split(p.log(), "\n") {
		if strings.Contains(l, " "+qid+": to=<"+rcpt+">,") {
			out = append(out, l)
		}
	}
	return out
}

// sendSMTP sends one message with net/smtp: one transaction, every
// recipient in rcpts. Every step has a deadline.
func sendSMTP(t *testing.T, addr, from string, rcpts []string, msg string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatalf("smtp greeting: %v", err)
	}
	defer c.Close()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("smtp %s: %v", what, err)
		}
	}
	step("EHLO", c.Hello("client.test"))
	step("MAIL", c.Mail(from))
	for _, r := range rcpts {
		step("RCPT "+r, c.Rcpt(r))
	}
	w, err := c.Data()
	step("DATA", err)
	_, err = w.Write([]byte(msg))
	step("DATA write", err)
	step("end of DATA", w.Close())
	step("QUIT", c.Quit())
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(deadline time.Time, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ldaRecipientLines returns lda's per-recipient log lines for addr whose
// status starts with st.
func ldaRecipientLines(d *daemon, addr, st string) []string {
	var out []string
	for _, l := range strings.Split(d.stderr.String(), "\n") {
		if strings.Contains(l, "msg=recipient") && strings.Contains(l, " recipient="+addr+" ") &&
			strings.Contains(l, `status="`+st) {
			out = append(out, l)
		}
	}
	return out
}

// TestPostfixToLDA runs the real Postfix in front of the real daemon: SMTP
// into a private loopback Postfix whose local_transport is lmtp:unix: to
// lda's socket, and checks both sides: the mailboxes, Postfix's own log
// and queue, and lda's log.
func TestPostfixToLDA(t *testing.T) {
	if _, err := os.Stat(postfixBin); err != nil {
		t.Skipf("postfix is not installed: %v", err)
	}
	f := newFixture(t)
	if _, err := exec.LookPath("/usr/sbin/postqueue"); err != nil {
		t.Skipf("postqueue: %v", err)
	}
	start := time.Now()
	d := startDaemon(t, f, "socket_group: postfix\n", "postfix")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lda log:\n%s", d.stderr)
		}
	})
	pf := startPostfix(t, f.base, d.socket)
	fi, err := os.Stat(d.socket)
	testutil.Must(t, err)
	if fi.Mode().Perm()&0o006 != 0 {
		t.Fatalf("lda socket is world-accessible (%v); the test means to reach it as group postfix", fi.Mode())
	}

	u1, u2 := f.u1, f.u2
	a1, a2 := u1.Name+"@example.test", u2.Name+"@example.test"
	unknown := "nosuch" + strconv.Itoa(os.Getpid()) + "x@example.test"
	const sender = "sender@example.org"
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	mid := func(n int) string { return "m" + strconv.Itoa(n) + "." + stamp + "@client.test" }
	msgText := func(n int, to, subject, body string) string {
		return "From: Sender <" + sender + ">\n" +
			"To: " + to + "\n" +
			"Subject: " + subject + "\n" +
			"Date: " + time.Now().Format(time.RFC1123Z) + "\n" +
			"Message-ID: <" + mid(n) + ">\n" +
			"MIME-Version: 1.0\n" +
			"Content-Type: text/plain; charset=us-ascii\n" +
			"\n" + body
	}
	body1 := "first line\n" +
		".a line that starts with a dot\n" +
		"..two dots\n" +
		".\n" +
		"From the start of a line, mbox style\n" +
		">From already quoted\n" +
		"last line\n"
	subject1 := "postfix to lda " + stamp
	msg1 := msgText(1, "<"+a1+">, <"+a2+">", subject1, body1)

	// 1: two recipients, one transaction.
	sendSMTP(t, pf.addr(), sender, []string{a1, a2}, msg1)
	deadline := time.Now().Add(30 * time.Second)
	var qid1 string
	if !waitUntil(deadline, func() bool {
		qid1 = pf.queueID(mid(1))
		return qid1 != "" && len(pf.deliveryLines(qid1, a1)) > 0 && len(pf.deliveryLines(qid1, a2)) > 0
	}) {
		t.Fatalf("message 1 (queue id %q) was not delivered to both recipients within 30s", qid1)
	}
	for _, a := range []string{a1, a2} {
		lines := pf.deliveryLines(qid1, a)
		if len(lines) != 1 {
			t.Errorf("Postfix logged %d delivery attempts for %s, want 1:\n%s", len(lines), a, strings.Join(lines, "\n"))
			continue
		}
		l := lines[0]
		if !regexp.MustCompile(`, relay=[^ ,\[]*\[` + regexp.QuoteMeta(d.socket) + `\], `).MatchString(l) {
			t.Errorf("%s: relay= does not name the lda socket %s:\n%s", a, d.socket, l)
		}
		if !strings.Contains(l, "dsn=2.0.0, status=sent (") {
			t.Errorf("%s: not status=sent dsn=2.0.0:\n%s", a, l)
		}
	}

	// Both Maildirs hold message 1 byte-exactly: lda's three trace headers
	// (Return-Path, Delivered-To, lda's own Received), then Postfix's
	// Received header, then exactly what the client sent.
	receivedRe := regexp.MustCompile(`^Received: from [^\n]*\n(?:[ \t][^\n]*\n)*$`)
	pf0, err := userdb.Lookup("passwd", "postfix")
	if err != nil {
		t.Fatal(err)
	}
	pfUID := pf0.UID
	for _, u := range []*testutil.User{u1, u2} {
		addr := u.Name + "@example.test"
		dir := filepath.Join(u.Home, "Maildir", "new")
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != 1 {
			t.Fatalf("%s: %s holds %d messages (%v), want 1", u.Name, dir, len(ents), err)
		}
		path := filepath.Join(dir, ents[0].Name())
		got := string(snapshot(t, path))
		lda := "Return-Path: <" + sender + ">\nDelivered-To: " + addr + "\n"
		ldaReceived := regexp.MustCompile(`^Received: from \S+ \(uid=` + strconv.Itoa(pfUID) + ` pid=\d+\) by \S+ \(lda\) with LMTP id \w+ for <` + regexp.QuoteMeta(addr) + `>; [^\n]+\n`)
		if m := ldaReceived.FindString(got[min(len(lda), len(got)):]); m == "" {
			t.Errorf("%s: no lda Received line after Delivered-To:\n%s", u.Name, got)
		} else {
			lda += m
		}
		switch {
		case !strings.HasPrefix(got, lda):
			t.Errorf("%s: message does not start with lda's Return-Path and Delivered-To:\n%s", u.Name, got)
		case !strings.HasSuffix(got, msg1):
			t.Errorf("%s: message is not byte-exact; got:\n%q\nwant it to end with:\n%q", u.Name, got, msg1)
		case !receivedRe.MatchString(got[len(lda) : len(got)-len(msg1)]):
			t.Errorf("%s: unexpected headers between lda's and the message's:\n%q", u.Name, got[len(lda):len(got)-len(msg1)])
		}
		if !strings.Contains(got, "\nSubject: "+subject1+"\n") {
			t.Errorf("%s: Subject missing:\n%s", u.Name, got)
		}
		if st, err := os.Stat(path); err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(u.UID) {
			t.Errorf("%s: message not owned by the user (%v)", u.Name, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// 2: make u2's delivery fail temporarily: ~u2/Maildir becomes a
	// symlink to the real maildir, which lda refuses with 450 4.2.0.
	moved := filepath.Join(u2.Home, "Maildir.real")
	testutil.Must(t, os.Rename(filepath.Join(u2.Home, "Maildir"), moved))
	testutil.Must(t, os.Symlink("Maildir.real", filepath.Join(u2.Home, "Maildir")))
	testutil.Must(t, os.Lchown(filepath.Join(u2.Home, "Maildir"), u2.UID, u2.GID))
	msg2 := msgText(2, "<"+a2+">", "deferred "+stamp, "this one must wait\n")
	sendSMTP(t, pf.addr(), sender, []string{a2}, msg2)

	// 3: an unknown user: lda refuses at RCPT, Postfix bounces.
	msg3 := msgText(3, "<"+unknown+">", "bounce "+stamp, "nobody reads this\n")
	sendSMTP(t, pf.addr(), sender, []string{unknown}, msg3)

	deadline = time.Now().Add(30 * time.Second)
	var qid2, qid3 string
	if !waitUntil(deadline, func() bool {
		qid2, qid3 = pf.queueID(mid(2)), pf.queueID(mid(3))
		return len(pf.deliveryLines(qid2, a2)) > 0 && len(pf.deliveryLines(qid3, unknown)) > 0
	}) {
		t.Fatalf("no Postfix delivery attempt for message 2 (%q) or 3 (%q) within 30s", qid2, qid3)
	}
	if lines := pf.deliveryLines(qid2, a2); len(lines) != 1 ||
		!strings.Contains(lines[0], "dsn=4.2.0, status=deferred (") || !strings.Contains(lines[0], d.socket) {
		t.Errorf("message 2: want one status=deferred dsn=4.2.0 line via %s, got:\n%s", d.socket, strings.Join(lines, "\n"))
	}
	if lines := pf.deliveryLines(qid3, unknown); len(lines) != 1 ||
		!strings.Contains(lines[0], "dsn=5.1.1, status=bounced (") || !strings.Contains(lines[0], d.socket) {
		t.Errorf("message 3: want one status=bounced dsn=5.1.1 line via %s, got:\n%s", d.socket, strings.Join(lines, "\n"))
	}
	out, err := pf.cmd(20*time.Second, "/usr/sbin/postqueue", "-c", pf.dir, "-p")
	if err != nil {
		t.Fatalf("postqueue -p: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^` + qid2 + `\b[^\n]*` + regexp.QuoteMeta(sender) + `\n(?:[^\n]*\n)*?\s+` + regexp.QuoteMeta(a2) + `$`).MatchString(out) {
		t.Errorf("message 2 (%s) is not in Postfix's queue for %s:\n%s", qid2, a2, out)
	}
	if strings.Contains(out, qid1) || (qid3 != "" && strings.Contains(out, qid3)) {
		t.Errorf("message 1 (%s) or 3 (%s) is still queued:\n%s", qid1, qid3, out)
	}
	// Message 2 reached no mailbox (not through the symlink either).
	if ents, err := os.ReadDir(filepath.Join(moved, "new")); err != nil || len(ents) != 1 {
		t.Errorf("u2's real maildir holds %d messages (%v), want only message 1", len(ents), err)
	}
	for _, sub := range []string{"tmp", "cur"} {
		if ents, _ := os.ReadDir(filepath.Join(moved, sub)); len(ents) != 0 {
			t.Errorf("u2's maildir %s/ holds %d files", sub, len(ents))
		}
	}

	// lda logged one line per recipient and attempt, each after its reply
	// (which is what Postfix logged): wait for the four.
	waitUntil(time.Now().Add(10*time.Second), func() bool { return strings.Count(d.stderr.String(), "msg=recipient") >= 4 })
	for _, c := range []struct {
		addr, status string
		n            int
	}{
		{a1, "250 2.0.0", 1}, {a2, "250 2.0.0", 1}, {a2, "450 4.2.0", 1}, {unknown, "550 5.1.1", 1},
	} {
		if got := ldaRecipientLines(d, c.addr, c.status); len(got) != c.n {
			t.Errorf("lda logged %d recipient lines for %s with status %s, want %d:\n%s", len(got), c.addr, c.status, c.n, strings.Join(got, "\n"))
		}
	}
	if n := strings.Count(d.stderr.String(), "msg=recipient"); n != 4 {
		t.Errorf("lda logged %d recipient lines, want 4", n)
	}
	if t.Failed() {
		t.FailNow()
	}

	// A flush retries message 2: deferred again, still queued.
	if out, err := pf.cmd(20*time.Second, "/usr/sbin/postqueue", "-c", pf.dir, "-f"); err != nil {
		t.Fatalf("postqueue -f: %v\n%s", err, out)
	}
	if !waitUntil(time.Now().Add(20*time.Second), func() bool { return len(pf.deliveryLines(qid2, a2)) >= 2 }) {
		t.Fatalf("postqueue -f did not retry message 2 within 20s")
	}
	if lines := pf.deliveryLines(qid2, a2); len(lines) != 2 || !strings.Contains(lines[1], "dsn=4.2.0, status=deferred (") {
		t.Errorf("message 2 retry: want a second status=deferred dsn=4.2.0 line, got:\n%s", strings.Join(lines, "\n"))
	}
	if got := ldaRecipientLines(d, a2, "450 4.2.0"); len(got) != 2 {
		t.Errorf("lda logged %d 450 lines for %s after the retry, want 2", len(got), a2)
	}
	t.Logf("the test took %v", time.Since(start))
}
