package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lda/internal/testutil"
)

// startWithProgram installs script as the program name (owned by root,
// run with argv and a 60 s timeout), allows it in the test policy, and
// starts the daemon with extra in its configuration.
func startWithProgram(t *testing.T, f *fixture, name, script, extra string) *daemon {
	t.Helper()
	prog := filepath.Join(f.base, "progs", name)
	testutil.Must(t, os.MkdirAll(filepath.Dir(prog), 0o755))
	testutil.WriteFile(t, prog, []byte(script), 0o755, 0, 0)
	p := strings.Replace(defaultPolicy, "  - {program: probe}\n", "  - {program: probe}\n  - {program: "+name+"}\n", 1)
	f.writePolicy(strings.Replace(p, "programs:\n", "programs:\n  "+name+": {argv: ["+prog+"], timeout: 60s}\n", 1))
	return startDaemon(t, f, extra)
}

// sendToProgram sends one message to n recipients r1..rn, each the user's
// delivery to the program name, and returns the client with the
// per-recipient replies still to be read.
func sendToProgram(t *testing.T, d *daemon, name, user string, n int) *lmtpClient {
	t.Helper()
	cl := dialLMTP(t, d.socket)
	cl.cmd("LHLO mta.test", "250")
	cl.cmd("MAIL FROM:<s@example.org>", "250")
	for i := 1; i <= n; i++ {
		cl.cmd(fmt.Sprintf("RCPT TO:<r%d@example.org> XLDA-USER=%s XLDA-DEST=program:%s", i, user, name), "250")
	}
	cl.cmd("DATA", "354")
	fmt.Fprintf(cl.c, "Subject: %s\r\n\r\nbody\r\n.\r\n", name)
	return cl
}

// TestParallelRecipients: the recipients of one message are delivered at
// the same time, and their replies still come in RCPT order. Each
// recipient's program waits at a barrier until all four have started, so
// the message can only be delivered if the deliveries overlap (one after
// another, the first would give up and answer 4xx); after the barrier the
// first recipient finishes last and the third fails, so any reply order
// but RCPT order shows.
func TestParallelRecipients(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	barrier := filepath.Join(f.base, "barrier")
	testutil.Must(t, os.Mkdir(barrier, 0o755))
	testutil.Must(t, os.Chown(barrier, u.UID, u.GID))
	script := fmt.Sprintf(`#!/bin/sh
cat >/dev/null
touch %[1]s/"$RECIPIENT"
i=0
while [ "$(ls %[1]s | wc -l)" -lt 4 ]; do
  i=$((i+1)); [ $i -gt 400 ] && exit 75
  sleep 0.05
done
case "$RECIPIENT" in
r1@*) sleep 0.5 ;;
r3@*) exit 67 ;;
esac
exit 0
`, barrier)
	d := startWithProgram(t, f, "barrier", script, "parallel: 4\n")
	cl := sendToProgram(t, d, "barrier", u.Name, 4)
	want := []string{"250 2.0.0", "250 2.0.0", "550 5.1.1", "250 2.0.0"}
	for i, w := range want {
		if got := cl.reply(); !strings.HasPrefix(got, w) {
			t.Fatalf("reply %d (r%d) = %q, want %s\n%s", i+1, i+1, got, w, d.stderr)
		}
	}
	cl.cmd("QUIT", "221")
}

// TestParallelLimit: no more than parallel recipients of a message are
// delivered at once, and that many are. Each recipient's program counts
// the programs running when it starts, then takes 0.3 s.
func TestParallelLimit(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	dir := filepath.Join(f.base, "running")
	testutil.Must(t, os.MkdirAll(filepath.Join(dir, "now"), 0o755))
	testutil.Must(t, os.Chown(dir, u.UID, u.GID))
	testutil.Must(t, os.Chown(filepath.Join(dir, "now"), u.UID, u.GID))
	script := fmt.Sprintf(`#!/bin/sh
cat >/dev/null
touch %[1]s/now/"$RECIPIENT"
ls %[1]s/now | wc -l >>%[1]s/seen
sleep 0.3
rm %[1]s/now/"$RECIPIENT"
exit 0
`, dir)
	d := startWithProgram(t, f, "count", script, "parallel: 2\n")
	const n = 5
	cl := sendToProgram(t, d, "count", u.Name, n)
	for i := 1; i <= n; i++ {
		if got := cl.reply(); !strings.HasPrefix(got, "250 2.0.0") {
			t.Fatalf("reply %d = %q\n%s", i, got, d.stderr)
		}
	}
	cl.cmd("QUIT", "221")
	seen, err := os.ReadFile(filepath.Join(dir, "seen"))
	if err != nil {
		t.Fatal(err)
	}
	most, runs := 0, 0
	for _, l := range strings.Fields(string(seen)) {
		var k int
		fmt.Sscan(l, &k)
		most, runs = max(most, k), runs+1
	}
	if runs != n || most != 2 {
		t.Fatalf("%d runs, at most %d at once; want %d runs, 2 at once (parallel: 2)", runs, most, n)
	}
}
