package worker

import (
	"strings"
	"testing"

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
	fx := newDirectFixture(b)
	r := &replier{rec: fx.rec, send: func([]byte) error { return nil }} // MainDirect's, but for the socket
	r.fn = r.answer
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.sent = false
		res, stop := directJob(fx.pkt, fx.msg, fx.bind, sys, fx.rec, r.fn) // serve would close the message
		if stop || res.Status.Code != 250 {
			b.Fatalf("job %d: %v (stop %v)", i, res.Status, stop)
		}
		if !r.sent {
			r.answer(res)
		}
	}
}
