package delivery

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"lda/internal/job"
	"lda/internal/status"
	"lda/internal/userdb"
)

// BenchmarkLogDelivery is the listener's one log line per delivery, as
// the daemon writes it (slog's text handler), into io.Discard.
func BenchmarkLogDelivery(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := Request{User: &userdb.User{Name: "expu1", UID: 1001, GID: 1001, Home: "/home/expu1"},
		Kind: job.KindDefault, Sender: "bench@bench.test", Recipient: "expu1@bench.test", Size: 1024}
	out := Outcome{Status: status.Delivered, Result: &job.Result{Status: status.Delivered,
		Where: "maildir:/home/expu1/Maildir/new/1796592460.M574502P16913Q51R2747424e771d4421.vm,S=1201",
		Rule:  "/etc/lda/policy.yaml:4: allow maildir:~/Maildir"}}
	b.ReportAllocs()
	for b.Loop() {
		logDelivery(log, r, out, 1234567*time.Nanosecond)
	}
}
