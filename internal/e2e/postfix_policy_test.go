package e2e

import (
	"errors"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lda/internal/testutil"
	"lda/internal/userdb"
)

// policyRejectScript refuses one envelope sender; it needs no message, so
// lda can decide it at RCPT time, and hence in the policy service.
const policyRejectScript = `require ["reject", "envelope"];
if envelope :is "from" "spam@bad.example" {
  reject "no spam please";
}
`

// smtpRefusal checks that err is an SMTP 5xx reply whose text starts with
// the enhanced status code enh and contains text.
func smtpRefusal(t *testing.T, what string, err error, enh, text string) {
	t.Helper()
	var te *textproto.Error
	switch {
	case err == nil:
		t.Errorf("%s: accepted, want a %s refusal", what, enh)
	case !errors.As(err, &te):
		t.Errorf("%s: %T %v, want an SMTP reply", what, err, err)
	case te.Code < 500 || te.Code > 599:
		t.Errorf("%s: reply code %d (%q), want 5xx", what, te.Code, te.Msg)
	case !strings.HasPrefix(te.Msg, enh+" "):
		t.Errorf("%s: reply %d %q lacks enhanced code %s", what, te.Code, te.Msg, enh)
	case !strings.Contains(te.Msg, text):
		t.Errorf("%s: reply %d %q lacks %q", what, te.Code, te.Msg, text)
	}
}

// linesWith returns the lines of log that contain every one of subs.
func linesWith(log string, subs ...string) []string {
	var out []string
next:
	for _, l := range strings.Split(log, "\n") {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// TestPostfixPolicyService puts lda's policy delegation service in front of
// a real Postfix smtpd: a Sieve reject that depends on the envelope only,
// and an unknown user, are refused during the SMTP dialogue, recipient by
// recipient, while the other recipients of the same transaction are
// delivered through LMTP as usual.
func TestPostfixPolicyService(t *testing.T) {
	if _, err := os.Stat(postfixBin); err != nil {
		t.Skipf("postfix is not installed: %v", err)
	}
	start := time.Now()
	f := newFixture(t)
	u1, u2 := f.u1, f.u2
	testutil.WriteFile(t, filepath.Join(u1.Home, ".lda.sieve"), []byte(policyRejectScript), 0o600, u1.UID, u1.GID)

	psock := filepath.Join(f.base, "run", "policy.sock")
	d := startDaemon(t, f, "socket_group: postfix\npolicy_socket: "+psock+"\n", "postfix")
	// Registered before startPostfixWith: runs after Postfix has stopped.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("lda log:\n%s", d.stderr)
		}
	})

	// The policy socket: group postfix, 0660, like the LMTP socket.
	grp, err := user.LookupGroup("postfix")
	testutil.Must(t, err)
	pfGID, err := strconv.Atoi(grp.Gid)
	testutil.Must(t, err)
	fi, err := os.Stat(psock)
	if err != nil {
		t.Fatalf("policy socket: %v", err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != uint32(pfGID) {
		t.Fatalf("policy socket %s: mode %v gid %d, want a 0660 socket of group postfix (%d)",
			psock, fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid, pfGID)
	}

	pf := startPostfixWith(t, f.base, d.socket, "\n# lda's policy service decides every recipient.\n"+
		"smtpd_recipient_restrictions = check_policy_service unix:"+psock+", permit\n"+
		"smtpd_policy_service_timeout = 10s\n")

	a1, a2 := u1.Name+"@example.test", u2.Name+"@example.test"
	unknown := "nosuch" + strconv.Itoa(os.Getpid()) + "p@example.test"
	const spammer, friend = "spam@bad.example", "friend@example.org"
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	mid := "policy." + stamp + "@client.test"
	subject := "policy service " + stamp
	msg := "From: <" + spammer + ">\n" +
		"To: <" + a1 + ">, <" + a2 + ">\n" +
		"Subject: " + subject + "\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\n" +
		"Message-ID: <" + mid + ">\n" +
		"\nbody\n"

	// dial opens an SMTP session to Postfix's loopback smtpd.
	dial := func() *smtp.Client {
		t.Helper()
		conn, err := net.DialTimeout("tcp", pf.addr(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		c, err := smtp.NewClient(conn, "127.0.0.1")
		if err != nil {
			t.Fatalf("smtp greeting: %v", err)
		}
		if err := c.Hello("client.test"); err != nil {
			t.Fatalf("EHLO: %v", err)
		}
		return c
	}

	// 1: one transaction from the spammer: u1 refused at RCPT (5.7.1, the
	// script's reason), u2 accepted, the message goes to u2 only.
	c := dial()
	if err := c.Mail(spammer); err != nil {
		t.Fatalf("MAIL FROM:<%s>: %v", spammer, err)
	}
	smtpRefusal(t, "RCPT TO:<"+a1+"> from "+spammer, c.Rcpt(a1), "5.7.1", "no spam please")
	if err := c.Rcpt(a2); err != nil {
		t.Fatalf("RCPT TO:<%s> from %s: %v, want 250", a2, spammer, err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatalf("DATA write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}

	// 2: an unknown user is refused at RCPT (5.1.1); u1 from another
	// sender is accepted (the refusal depends on the envelope sender). No
	// DATA: nothing is delivered.
	c = dial()
	if err := c.Mail(friend); err != nil {
		t.Fatalf("MAIL FROM:<%s>: %v", friend, err)
	}
	smtpRefusal(t, "RCPT TO:<"+unknown+">", c.Rcpt(unknown), "5.1.1", "")
	if err := c.Rcpt(a1); err != nil {
		t.Errorf("RCPT TO:<%s> from %s: %v, want 250", a1, friend, err)
	}
	if err := c.Reset(); err != nil {
		t.Fatalf("RSET: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}

	// Postfix delivers the message to u2 through lda.
	var qid string
	if !waitUntil(time.Now().Add(30*time.Second), func() bool {
		qid = pf.queueID(mid)
		return qid != "" && len(pf.deliveryLines(qid, a2)) > 0
	}) {
		t.Fatalf("the message (queue id %q) was not delivered to %s within 30s", qid, a2)
	}
	if lines := pf.deliveryLines(qid, a2); len(lines) != 1 || !strings.Contains(lines[0], "dsn=2.0.0, status=sent (") ||
		!strings.Contains(lines[0], d.socket) {
		t.Errorf("want one status=sent dsn=2.0.0 line for %s via %s, got:\n%s", a2, d.socket, strings.Join(lines, "\n"))
	}
	if lines := pf.deliveryLines(qid, a1); len(lines) != 0 {
		t.Errorf("Postfix tried to deliver to %s:\n%s", a1, strings.Join(lines, "\n"))
	}

	// Postfix logged both refusals as its own RCPT rejects.
	pfLog := pf.log()
	if got := linesWith(pfLog, "reject: RCPT from", " 5.7.1 ", "no spam please", "from=<"+spammer+">", "to=<"+a1+">"); len(got) != 1 {
		t.Errorf("Postfix logged %d 5.7.1 RCPT rejects for %s, want 1:\n%s", len(got), a1, strings.Join(got, "\n"))
	}
	if got := linesWith(pfLog, "reject: RCPT from", " 5.1.1 ", "to=<"+unknown+">"); len(got) != 1 {
		t.Errorf("Postfix logged %d 5.1.1 RCPT rejects for %s, want 1:\n%s", len(got), unknown, strings.Join(got, "\n"))
	}
	if got := linesWith(pfLog, "reject: RCPT from"); len(got) != 2 {
		t.Errorf("Postfix logged %d RCPT rejects, want 2:\n%s", len(got), strings.Join(got, "\n"))
	}

	// Mailboxes: u2 holds the message, u1 nothing at all.
	newDir := filepath.Join(u2.Home, "Maildir", "new")
	ents, err := os.ReadDir(newDir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("%s holds %d messages (%v), want 1", newDir, len(ents), err)
	}
	got := string(snapshot(t, filepath.Join(newDir, ents[0].Name())))
	for _, want := range []string{"Delivered-To: " + a2 + "\n", "\nSubject: " + subject + "\n", "\nMessage-ID: <" + mid + ">\n", "\n\nbody\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("%s: message lacks %q:\n%s", u2.Name, want, got)
		}
	}
	if st, err := os.Stat(filepath.Join(newDir, ents[0].Name())); err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(u2.UID) {
		t.Errorf("%s: message not owned by the user (%v)", u2.Name, err)
	}
	for _, sub := range []string{"new", "cur", "tmp"} {
		dir := filepath.Join(u1.Home, "Maildir", sub)
		if ents, err := os.ReadDir(dir); len(ents) != 0 || (err != nil && !errors.Is(err, os.ErrNotExist)) {
			t.Errorf("%s: %s holds %d files (%v), want none", u1.Name, dir, len(ents), err)
		}
	}

	// lda: Postfix's smtpd (uid postfix) used the policy service, which
	// logged both decisions; LMTP saw u2 only.
	pfUser, err := userdb.Lookup("passwd", "postfix")
	testutil.Must(t, err)
	// lda writes a recipient's line after its reply, which is what Postfix
	// logged: wait for the line before reading the log.
	if !waitUntil(time.Now().Add(10*time.Second), func() bool { return strings.Contains(d.stderr.String(), "msg=recipient") }) {
		t.Errorf("lda logged no recipient line within 10s of Postfix's delivery")
	}
	ldaLog := d.stderr.String()
	if got := linesWith(ldaLog, "msg=connect", "session=p", "peer=\"uid="+strconv.Itoa(pfUser.UID)+" "); len(got) == 0 {
		t.Errorf("lda logged no policy connection from uid %d (postfix)", pfUser.UID)
	}
	if got := linesWith(ldaLog, "msg=policy ", "recipient="+a1+" ", "user="+u1.Name+" ", `action="REJECT 5.7.1"`, `reason="no spam please"`); len(got) != 1 {
		t.Errorf("lda logged %d 5.7.1 policy decisions for %s, want 1:\n%s", len(got), a1, strings.Join(got, "\n"))
	}
	if got := linesWith(ldaLog, "msg=policy ", "recipient="+unknown+" ", `action="REJECT 5.1.1"`); len(got) != 1 {
		t.Errorf("lda logged %d 5.1.1 policy decisions for %s, want 1:\n%s", len(got), unknown, strings.Join(got, "\n"))
	}
	// One line per decision: two REJECTs and two DUNNOs (u2 from the
	// spammer, u1 from the friend).
	if got := linesWith(ldaLog, "msg=policy ", "action=DUNNO"); len(got) != 2 {
		t.Errorf("lda logged %d DUNNO decisions, want 2:\n%s", len(got), strings.Join(got, "\n"))
	}
	if got := linesWith(ldaLog, "msg=policy "); len(got) != 4 {
		t.Errorf("lda logged %d policy decisions, want 4:\n%s", len(got), strings.Join(got, "\n"))
	}
	if got := ldaRecipientLines(d, a2, "250 2.0.0"); len(got) != 1 {
		t.Errorf("lda logged %d 250 recipient lines for %s, want 1", len(got), a2)
	}
	if n := strings.Count(ldaLog, "msg=recipient"); n != 1 {
		t.Errorf("lda logged %d LMTP recipient lines, want 1 (%s only)", n, a2)
	}
	t.Logf("the test took %v", time.Since(start))
}
