package worker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"lda/internal/job"
	"lda/policy"
)

// directFixture is one delivery job as a direct worker receives it, into
// a temporary home, run in-process as whoever runs the test.
type directFixture struct {
	home string
	bind *job.Job
	pkt  []byte
	msg  *os.File // the message: a sealed memfd, as the listener sends it
	rec  *job.Recovery
}

func newDirectFixture(tb testing.TB) *directFixture {
	tb.Helper()
	home := tb.TempDir()
	if err := os.Chmod(home, 0o755); err != nil {
		tb.Fatal(err)
	}
	uid, gid := 60000, 60000 // only compared, never used: the test runs as whoever runs it
	bind := &job.Job{Mode: job.ModeBind, User: "bench", UID: uid, GID: gid, Home: home, Policy: "embedded"}
	msg := strings.Repeat("From: <a@b.example>\nSubject: x\n\n"+strings.Repeat("y", 70)+"\n", 16)
	mfd, err := unix.MemfdCreate("bench", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		tb.Fatal(err)
	}
	ro := os.NewFile(uintptr(mfd), "message")
	tb.Cleanup(func() { ro.Close() })
	if _, err := unix.Write(mfd, []byte(msg)); err != nil {
		tb.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(mfd), unix.F_ADD_SEALS, job.FrozenSeals); err != nil {
		tb.Fatal(err)
	}
	rfd, err := unix.MemfdCreate("recovery", unix.MFD_CLOEXEC)
	if err != nil {
		tb.Fatal(err)
	}
	recf := os.NewFile(uintptr(rfd), "recovery")
	tb.Cleanup(func() { recf.Close() })
	if err := recf.Truncate(job.RecoverySize); err != nil {
		tb.Fatal(err)
	}
	rec, err := job.MapRecovery(recf)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rec.Unmap() })
	j := &job.Job{Mode: job.ModeDeliver, User: "bench", UID: uid, GID: gid, Home: home, Policy: "embedded",
		Kind: job.KindDefault, Sender: "a@b.example", Recipient: "bench@b.example", Headers: true,
		Received: "from x by y; Sun, 6 Dec 2026 00:00:00 +0000", Size: int64(len(msg))}
	pkt, err := j.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	return &directFixture{home: home, bind: bind, pkt: pkt, msg: ro, rec: rec}
}

// TestDirectAnswer: an mbox delivery answers once, as soon as its message
// is on stable storage, with the mailbox still locked; after it the
// append removes its intent and unlocks. Other jobs are answered by
// MainDirect's loop, after the job.
func TestDirectAnswer(t *testing.T) {
	for _, c := range []struct {
		name, policy string
		early        bool
	}{
		{"mbox", mboxPolicy, true},
		{"Maildir", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sys := policy.Default()
			if c.policy != "" {
				var err error
				if sys, err = policy.ParseSystem(strings.NewReader(c.policy), "test"); err != nil {
					t.Fatal(err)
				}
			}
			fx := newDirectFixture(t)
			mb := filepath.Join(fx.home, "mbox")
			for i := range 3 { // the mailbox held from the first job on
				var answers []int
				answer := func(res *job.Result) {
					answers = append(answers, res.Status.Code)
					if c.early && !mboxLocked(t, mb) {
						t.Errorf("job %d: answered with the mailbox unlocked", i)
					}
				}
				res, stop := directJob(fx.pkt, fx.msg, fx.bind, sys, fx.rec, answer)
				if stop || res.Status.Code != 250 {
					t.Fatalf("job %d: %v (stop %v)", i, res.Status, stop)
				}
				if want := map[bool]int{true: 1, false: 0}[c.early]; len(answers) != want || want == 1 && answers[0] != 250 {
					t.Fatalf("job %d: answers %v during the job, want %d of 250", i, answers, want)
				}
				if !c.early {
					continue
				}
				if mboxLocked(t, mb) {
					t.Errorf("job %d: the mailbox is still locked after the job", i)
				}
				if _, err := unix.Getxattr(mb, "user.lda.append", nil); !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP) {
					t.Errorf("job %d: intent left after the job (%v)", i, err)
				}
			}
		})
	}
}

// mboxLocked reports whether an fcntl lock is held on the file mb.
func mboxLocked(t *testing.T, mb string) bool {
	t.Helper()
	fd, err := unix.Open(mb, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
		t.Fatal(err)
	}
	return lk.Type != unix.F_UNLCK
}
