package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// directWorkers returns the pids of bin's direct workers (the listener's)
// running as uid: warmWorkers without root's own warm workers.
func directWorkers(bin string, uid int) []int {
	var pids []int
	for _, pid := range warmWorkers(bin, uid) {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); string(b) == bin+"\x00worker\x00direct\x00" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestServeKilledWorkers is the kill test, small enough for CI. Six
// connections deliver messages of nearly 1 MiB to one user's mbox
// through the real daemon, three rounds of 144, while one of that user's
// workers is killed every 10 ms. Whichever writer takes the locks after a killed one (the
// next delivery, waiting on them, or root's recovery worker) must cut the
// dead writer's partial message off first (the append intent). So every
// message answered 250 is in the mailbox exactly once and whole, every
// other one answered 4xx, and no message in the mailbox is partial; one
// answered 4xx may be there whole (its worker was killed after its last
// byte), and is then retried by the MTA: a duplicate, never a loss.
func TestServeKilledWorkers(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	f.writePolicy(strings.NewReplacer(
		"default: {maildir: ~/Maildir}", "default: {mbox: ~/mail/inbox}",
		"locking: [dotlock, fcntl], lock_timeout: 2s", "locking: [fcntl], lock_timeout: 20s",
	).Replace(defaultPolicy))
	f.mkdirAs(u, filepath.Join(u.Home, "mail"))
	box := filepath.Join(u.Home, "mail", "inbox")
	d := startDaemon(t, f, "")
	t.Cleanup(func() {
		if t.Failed() { // what root and the listener said about the deaths
			for _, l := range strings.Split(d.stderr.String(), "\n") {
				if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") && !strings.Contains(l, "status=\"451 4.3.0\"") {
					t.Log(l)
				}
			}
		}
	})

	const conns, per, lines = 6, 24, 36000 // 24 messages of 36,000 lines, about 930 KB, per connection
	body := func(id int) string {
		return strings.Repeat(fmt.Sprintf("line of message k%d\r\n", id), lines) + fmt.Sprintf("end of k%d\r\n", id)
	}
	replies := map[int]string{}
	kills := 0
	// With intents turned off (mbox.intentAttrs), one round left a partial
	// message in 3 runs of 5, and three rounds in 3 of 3.
	for round := 0; round < 3; round++ {
		stop := make(chan struct{})
		killed := make(chan int)
		go func() { // the killer
			n := 0
			defer func() { killed <- n }()
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				// The listener's direct workers only, which carry every
				// delivery here. Root runs its recoveries on its own warm
				// workers ("worker warm"): killing those too left a
				// partial message for the next delivery to cut (root
				// runs another recovery after one that dies,
				// TestRecoveryRetried, but three in a row can die, and
				// did, in a CI run on a loaded machine).
				if pids := directWorkers(f.bin, u.UID); len(pids) > 0 {
					if syscall.Kill(pids[rand.IntN(len(pids))], syscall.SIGKILL) == nil {
						n++
					}
				}
			}
		}()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for c := 0; c < conns; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				cl := dialLMTP(t, d.socket)
				cl.c.SetDeadline(time.Now().Add(2 * time.Minute))
				cl.cmd("LHLO mta.test", "250")
				for i := 0; i < per; i++ {
					id := (round*conns+c)*per + i
					cl.cmd("MAIL FROM:<sender@example.org>", "250")
					cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "250")
					cl.cmd("DATA", "354")
					fmt.Fprintf(cl.c, "Subject: k%d\r\n\r\n%s.\r\n", id, body(id))
					r := cl.reply()
					mu.Lock()
					replies[id] = r
					mu.Unlock()
				}
				cl.cmd("QUIT", "221")
			}(c)
		}
		wg.Wait()
		close(stop)
		kills += <-killed
	}
	var acked, failed int
	for id, r := range replies {
		switch {
		case strings.HasPrefix(r, "250 "):
			acked++
		case strings.HasPrefix(r, "4"):
			failed++
		default:
			t.Errorf("k%d: reply %q, want 250 or 4xx", id, r)
		}
	}
	if failed == 0 {
		t.Skipf("%d kills in 3 rounds, none in the middle of a job", kills)
	}
	t.Logf("%d messages: %d answered 250, %d 4xx; %d kills", len(replies), acked, failed, kills)

	subject := regexp.MustCompile(`(?m)^Subject: k(\d+)$`)
	seen := map[int]int{}
	for n, b := range readMbox(t, box) {
		m := subject.FindSubmatch(b)
		if m == nil {
			t.Fatalf("message %d of the mailbox has no subject of ours (%d bytes): a partial one?", n, len(b))
		}
		id, _ := strconv.Atoi(string(m[1]))
		want := strings.ReplaceAll(body(id), "\r\n", "\n")
		if i := bytes.Index(b, []byte("\n\n")); i < 0 || string(b[i+2:]) != want {
			t.Fatalf("message k%d in the mailbox is not whole (%d bytes): a partial message was left", id, len(b))
		}
		seen[id]++
	}
	for id, r := range replies {
		switch {
		case strings.HasPrefix(r, "250 ") && seen[id] != 1:
			t.Errorf("k%d answered 250 is in the mailbox %d times", id, seen[id])
		case !strings.HasPrefix(r, "250 ") && seen[id] > 1:
			t.Errorf("k%d answered %q is in the mailbox %d times", id, r, seen[id])
		}
	}
	for id := range seen {
		if _, ok := replies[id]; !ok {
			t.Errorf("k%d in the mailbox was never sent", id)
		}
	}
}
