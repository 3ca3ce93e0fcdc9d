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
	if !strings.Contains(log, `msg="mbox recovery"`) || !strings.Contains(log, "level=ERROR") {
		t.Fatalf("no failed-recovery line:\n%s", log)
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
