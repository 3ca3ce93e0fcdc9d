package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lda/internal/delivery"
	"lda/internal/job"
	"lda/internal/userdb"
	"lda/maildir"
	"lda/mbox"
)

// The cost of one delivery through the privilege boundary, measured
// against the same write done in-process (the peer), in the same run.
// bench/worker-cost.sh prints the medians and the ratio.

func costSetup(b *testing.B) (*fixture, *delivery.Agent, *userdb.User, *os.File, int64) {
	f := newFixture(b)
	u := f.u1
	f.mkdirAs(u, filepath.Join(u.Home, "mail"))
	body := message("cost", strings.Repeat("0123456789abcdef", 64)) // ~1 KiB
	spool, err := os.CreateTemp("", "lda-bench-")
	if err != nil {
		b.Fatal(err)
	}
	os.Remove(spool.Name())
	spool.Write(body)
	b.Cleanup(func() { spool.Close() })
	agent := &delivery.Agent{Exe: f.bin, PolicyPath: f.policy, MinUID: 1000, Timeout: time.Minute, Log: discardLogger()}
	return f, agent, &userdb.User{Name: u.Name, UID: u.UID, GID: u.GID, Home: u.Home}, spool, int64(len(body))
}

func BenchmarkDelivery(b *testing.B) {
	for _, kind := range []string{"maildir", "mbox"} {
		b.Run(kind+"/worker", func(b *testing.B) {
			f, agent, u, spool, size := costSetup(b)
			req := delivery.Request{User: u, Kind: job.KindMaildir, Path: filepath.Join(u.Home, "Maildir"), Sender: "s@example.org", Headers: true, Message: spool, Size: size}
			if kind == "mbox" {
				req.Kind, req.Path = job.KindMbox, filepath.Join(u.Home, "mail", "inbox")
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if out := agent.Deliver(context.Background(), req); !out.Status.OK() {
					b.Fatalf("delivery: %v", out.Status)
				}
			}
			_ = f
		})
		if kind == "maildir" {
			// The same delivery with a typical 30-line Sieve script that
			// ends in keep (testdata/typical.sieve): the added cost of
			// loading, parsing the message and running the script.
			b.Run(kind+"/worker+sieve", func(b *testing.B) {
				f, agent, u, spool, size := costSetup(b)
				script, err := os.ReadFile("testdata/typical.sieve")
				if err != nil {
					b.Fatal(err)
				}
				testutilWrite(b, filepath.Join(u.Home, ".lda.sieve"), script, u.UID, u.GID)
				req := delivery.Request{User: u, Kind: job.KindDefault, Sender: "s@example.org", Recipient: u.Name + "@example.org", Headers: true, Message: spool, Size: size}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if out := agent.Deliver(context.Background(), req); !out.Status.OK() || out.Result == nil || len(out.Result.Actions) != 1 || out.Result.Actions[0] != "keep" {
						b.Fatalf("delivery: %v %+v", out.Status, out.Result)
					}
				}
				_ = f
			})
		}
		// The same delivery through a warm worker (lda serve's pool): the
		// process is started once, so only the job's round trip remains.
		b.Run(kind+"/warm", func(b *testing.B) {
			f, agent, u, spool, size := costSetup(b)
			agent.Pool = delivery.NewPool(delivery.PoolConfig{MaxIdle: 4, IdleTime: time.Minute, MaxDeliveries: 1 << 30})
			defer agent.Pool.Close()
			req := delivery.Request{User: u, Kind: job.KindMaildir, Path: filepath.Join(u.Home, "Maildir"), Sender: "s@example.org", Headers: true, Message: spool, Size: size}
			if kind == "mbox" {
				req.Kind, req.Path = job.KindMbox, filepath.Join(u.Home, "mail", "inbox")
			}
			if out := agent.Deliver(context.Background(), req); !out.Status.OK() {
				b.Fatalf("delivery: %v", out.Status)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if out := agent.Deliver(context.Background(), req); !out.Status.OK() {
					b.Fatalf("delivery: %v", out.Status)
				}
			}
			_ = f
		})
		b.Run(kind+"/inprocess", func(b *testing.B) {
			f, _, u, spool, size := costSetup(b)
			dir, err := os.Open(u.Home)
			if err != nil {
				b.Fatal(err)
			}
			defer dir.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				msg := fmt.Sprintf("Return-Path: <s@example.org>\nDelivered-To: %s\n", u.Name)
				r := strings.NewReader(msg)
				var err error
				if kind == "maildir" {
					_, err = maildir.Deliver(dir, "Maildir", "", ioMulti(r, spool, size), maildir.Options{Create: true})
				} else {
					_, err = mbox.Append(dir, "mail/inbox", ioMulti(r, spool, size), mbox.Options{Owner: -1, Create: true, Locks: mbox.DotLock | mbox.FcntlLock, Sender: "s@example.org"})
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			_ = f
		})
	}
}
