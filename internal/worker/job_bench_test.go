package worker

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"lda/internal/job"
	"lda/policy"
)

// BenchmarkDirectJob is one warm direct worker's share of a 1 KiB Maildir
// delivery (decode, admit, policy, Maildir with both fsyncs, recovery
// record, result), in-process, into a temporary home. Its allocations
// are what a new worker pays in page faults until its heap reaches the
// first GC goal.
func BenchmarkDirectJob(b *testing.B) { benchDirectJob(b, policy.Default()) }

// BenchmarkDirectJobMbox is the same job into ~/mbox (fcntl locking):
// the mailbox held from one job to the next, the append's intent, the
// recovery record.
func BenchmarkDirectJobMbox(b *testing.B) {
	sys, err := policy.ParseSystem(strings.NewReader(mboxPolicy), "bench")
	if err != nil {
		b.Fatal(err)
	}
	benchDirectJob(b, sys)
}

const mboxPolicy = `version: 1
default: {mbox: ~/mbox}
allow:
  - {mbox: ~/mbox}
mbox: {locking: [fcntl], create: true}
`

func benchDirectJob(b *testing.B, sys *policy.System) {
	home := b.TempDir()
	if err := os.Chmod(home, 0o755); err != nil {
		b.Fatal(err)
	}
	uid, gid := 60000, 60000 // only compared, never used: the test runs as whoever runs it
	bind := &job.Job{Mode: job.ModeBind, User: "bench", UID: uid, GID: gid, Home: home, Policy: "embedded"}
	msg := strings.Repeat("From: <a@b.example>\nSubject: x\n\n"+strings.Repeat("y", 70)+"\n", 16)
	// The message as the listener hands it over: a memfd, sealed.
	mfd, err := unix.MemfdCreate("bench", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := unix.Write(mfd, []byte(msg)); err != nil {
		b.Fatal(err)
	}
	if _, err := unix.FcntlInt(uintptr(mfd), unix.F_ADD_SEALS, job.FrozenSeals); err != nil {
		b.Fatal(err)
	}
	ro := os.NewFile(uintptr(mfd), "message")
	defer ro.Close()
	rfd, err := unix.MemfdCreate("recovery", unix.MFD_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	recf := os.NewFile(uintptr(rfd), "recovery")
	defer recf.Close()
	if err := recf.Truncate(job.RecoverySize); err != nil {
		b.Fatal(err)
	}
	rec, err := job.MapRecovery(recf)
	if err != nil {
		b.Fatal(err)
	}
	defer rec.Unmap()
	j := &job.Job{Mode: job.ModeDeliver, User: "bench", UID: uid, GID: gid, Home: home, Policy: "embedded",
		Kind: job.KindDefault, Sender: "a@b.example", Recipient: "bench@b.example", Headers: true,
		Received: "from x by y; Sun, 6 Dec 2026 00:00:00 +0000", Size: int64(len(msg))}
	pkt, err := j.Encode()
	if err != nil {
		b.Fatal(err)
	}
	var out []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, stop := directJob(pkt, ro, bind, sys, rec)
		if stop || res.Status.Code != 250 {
			b.Fatalf("job %d: %v (stop %v)", i, res.Status, stop)
		}
		rec.Clear()
		out = appendResult(out[:0], res) // as MainDirect answers
	}
}
