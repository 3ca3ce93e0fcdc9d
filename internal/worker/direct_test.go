package worker

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"lda/internal/affinity"
	"lda/internal/job"
	"lda/internal/testutil"
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
	recf *os.File // the recovery record's memfd, as root reads it
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
	return &directFixture{home: home, bind: bind, pkt: pkt, msg: ro, rec: rec, recf: recf}
}

// TestDirectAnswer: every job is answered exactly once, with the recovery
// record already clear (root must never undo what was answered). An mbox
// delivery answers as soon as its message is on stable storage, with the
// mailbox still locked, and its intent removed before that; it unlocks
// after. A Maildir job is answered after it.
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
			var sends []string
			msgfd := -1 // the job's message: still open while the job runs, closed by serve after it
			r := &replier{rec: fx.rec, send: func(b []byte) error {
				res, err := job.DecodeResult(append(job.ResultHeader(), b...)) // the listener adds the header line
				if err != nil {
					t.Fatalf("result: %v", err)
				}
				if left, err := job.ReadRecovery(fx.recf); left != nil || err != nil {
					t.Errorf("answered with the recovery record set (%v, %v)", left, err)
				}
				_, err = unix.FcntlInt(uintptr(msgfd), unix.F_GETFD, 0)
				if inJob := err == nil; inJob != c.early {
					t.Errorf("answered inside the job: %v, want %v", inJob, c.early)
				}
				if c.early {
					if !testutil.FcntlLocked(t, mb) {
						t.Error("answered with the mailbox unlocked")
					}
					if _, err := unix.Getxattr(mb, "user.lda.append", nil); !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP) {
						t.Errorf("answered with the intent set (%v)", err)
					}
				}
				sends = append(sends, res.Status.Reply())
				return nil
			}}
			for i := range 3 { // the mailbox held from the first job on
				fd, err := unix.FcntlInt(fx.msg.Fd(), unix.F_DUPFD_CLOEXEC, 0)
				if err != nil {
					t.Fatal(err)
				}
				sends, msgfd = nil, fd
				if stop := r.serve(fx.pkt, os.NewFile(uintptr(fd), "message"), fx.bind, sys); stop {
					t.Fatalf("job %d: the worker would stop", i)
				}
				if len(sends) != 1 || !strings.HasPrefix(sends[0], "250 ") {
					t.Fatalf("job %d: answers %q, want one 250", i, sends)
				}
				if c.early && testutil.FcntlLocked(t, mb) {
					t.Errorf("job %d: the mailbox is still locked after the job", i)
				}
			}
		})
	}
}

// TestDirectGathered: a job that says where the listener runs moves the
// worker there, the next one that says nothing spreads it again, and an
// mbox append of a gathered job still records its recover job (which is
// root's, and so carries no CPU: a record that did not validate would end
// the worker before the append).
func TestDirectGathered(t *testing.T) {
	all, last := testutil.CPUs(t)
	affinity.Start()
	t.Cleanup(func() { affinity.Set(affinity.Spread) })
	sys, err := policy.ParseSystem(strings.NewReader(mboxPolicy), "test")
	if err != nil {
		t.Fatal(err)
	}
	fx := newDirectFixture(t)
	gathered, err := job.Decode(fx.pkt)
	if err != nil {
		t.Fatal(err)
	}
	gathered.Gather, gathered.CPU = true, last
	gpkt, err := gathered.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var sends []string
	r := &replier{rec: fx.rec, send: func(b []byte) error {
		res, err := job.DecodeResult(append(job.ResultHeader(), b...))
		if err != nil {
			t.Fatalf("result: %v", err)
		}
		sends = append(sends, res.Status.Reply())
		return nil
	}}
	for i, c := range []struct {
		pkt  []byte
		want int
	}{{gpkt, last}, {gpkt, last}, {fx.pkt, affinity.Spread}} {
		fd, err := unix.FcntlInt(fx.msg.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		sends = nil
		if stop := r.serve(c.pkt, os.NewFile(uintptr(fd), "message"), fx.bind, sys); stop || len(sends) != 1 || !strings.HasPrefix(sends[0], "250 ") {
			t.Fatalf("job %d: stop %v, answers %q", i, stop, sends)
		}
		if got := affinity.Current(); got != c.want {
			t.Fatalf("job %d: worker on %d, want %d", i, got, c.want)
		}
		want := all
		if c.want != affinity.Spread {
			want = unix.CPUSet{}
			want.Set(c.want)
		}
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil || len(tasks) < 2 {
			t.Fatalf("threads: %d, %v", len(tasks), err)
		}
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			var got unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &got); err == nil && got != want {
				t.Fatalf("job %d: thread %d on %v, want %v", i, tid, got, want)
			}
		}
	}
	rj := recoverOf(gathered)
	rj.Recover = &job.Progress{Offset: 0, Dev: 1, Ino: 2, FromLine: "From a@b.example Sun Dec  6 00:00:00 2026"}
	if rj.Gather || rj.CPU != 0 || rj.Validate() != nil {
		t.Fatalf("recover job of a gathered job: %+v: %v", rj, rj.Validate())
	}
}
