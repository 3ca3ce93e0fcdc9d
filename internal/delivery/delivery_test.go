package delivery

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lda/internal/testutil"
	"lda/internal/userdb"
)

// TestDeadWorkers: a worker that dies after announcing an mbox append, and
// a recovery worker that dies in its turn, give 451 4.3.0 and two log
// lines; the root side neither panics nor trusts either of them.
func TestDeadWorkers(t *testing.T) {
	testutil.RequireRoot(t)
	// The recovery worker writes only the result header and dies.
	out, log := deliverThrough(t, "kill -9 $$")
	if out.Status.Code != 451 || out.Status.Enhanced != "4.3.0" {
		t.Fatalf("status %v, want 451 4.3.0", out.Status)
	}
	if n := strings.Count(log, `msg="mbox recovery"`); n != recoverAttempts || strings.Count(log, "level=ERROR") < recoverAttempts {
		t.Fatalf("%d recovery lines, want %d failed ones (a recovery worker that dies is tried again, a bounded number of times):\n%s", n, recoverAttempts, log)
	}
	if !strings.Contains(log, "msg=delivery") || !strings.Contains(log, "worker exited") {
		t.Fatalf("no delivery line naming the dead worker:\n%s", log)
	}
}

// TestRecoveryDetail: a recovery worker that answers a failure in full
// has its detail in the recovery's log line (a status read from a result
// carries no cause of its own; the detail used to be dropped).
func TestRecoveryDetail(t *testing.T) {
	testutil.RequireRoot(t)
	// The recovery worker refuses, with a reason.
	_, log := deliverThrough(t, `printf 'status 451+204.3.0+20temporary+20local+20error\ndetail mbox:+20recover+20mismatch:+20another+20message+20follows\nend\n'`)
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `msg="mbox recovery"`) {
			if !strings.Contains(line, `status="451 4.3.0"`) || !strings.Contains(line, "another message follows") {
				t.Fatalf("the recovery line lacks the worker's status or detail: %s", line)
			}
			return
		}
	}
	t.Fatalf("no recovery line:\n%s", log)
}

// TestRecoveryRetried: a recovery worker killed in its turn is followed
// by another, so that the partial message does not wait for the next
// delivery to that mailbox; one that answers ends the attempts.
func TestRecoveryRetried(t *testing.T) {
	testutil.RequireRoot(t)
	marks, err := os.MkdirTemp(testutil.RootDir(t), "marks") // the stand-in runs as nobody
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(marks, 0o777); err != nil {
		t.Fatal(err)
	}
	mark := filepath.Join(marks, "tried")
	out, log := deliverThrough(t, `if [ ! -e `+mark+` ]; then : > `+mark+`; kill -9 $$; fi
printf 'status 250+202.0.0+20partial+20message+20removed\nend\n'`)
	if out.Status.Code != 451 {
		t.Fatalf("status %v, want 451 for the delivery whose worker died", out.Status)
	}
	var lines []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `msg="mbox recovery"`) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 ||
		!strings.Contains(lines[0], "level=ERROR") || !strings.Contains(lines[0], "attempt=1") ||
		!strings.Contains(lines[1], `status="250 2.0.0"`) || !strings.Contains(lines[1], "attempt=2") {
		t.Fatalf("recovery lines %q, want a failed first attempt and a second that succeeded", lines)
	}
}

// deliverThrough delivers a small message for nobody to an mbox through
// a stand-in for the lda binary (run as nobody by the real spawn), and
// returns the outcome and the log. The stand-in reads its job and writes
// the result header; as a deliver worker it then announces an mbox
// append and dies; as the recovery worker that follows it runs the shell
// command recovery.
func deliverThrough(t *testing.T, recovery string) (Outcome, string) {
	t.Helper()
	script := `#!/bin/sh
job=$(cat)
printf 'lda-result 1\n'
case "$job" in
*"mode deliver"*) printf 'progress 0 1 2 From+20a@b+20Sun+20Nov+2022+2005:00:00+202026\n'; kill -9 $$ ;;
esac
` + recovery + "\n"
	dir := testutil.RootDir(t)
	exe := filepath.Join(dir, "fake-lda")
	testutil.WriteFile(t, exe, []byte(script), 0o755, 0, 0)
	var logBuf bytes.Buffer
	a := &Agent{Exe: exe, MinUID: 1000, Timeout: 10 * time.Second, Log: slog.New(slog.NewTextHandler(&logBuf, nil))}
	msg, err := os.CreateTemp(dir, "msg")
	if err != nil {
		t.Fatal(err)
	}
	defer msg.Close()
	io.WriteString(msg, "Subject: x\n\nbody\n")
	out := a.Deliver(context.Background(), Request{
		User: &userdb.User{Name: "nobody", UID: 65534, GID: 65534, Home: "/nonexistent"},
		Kind: "mbox", Path: "/nonexistent/mbox", Sender: "a@b", Message: msg, Size: 17,
	})
	return out, logBuf.String()
}
