package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"lda/internal/testutil"
)

// procStats returns the open descriptors and the resident set (kB) of pid.
func procStats(t *testing.T, pid int) (fds int, rssKB int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	st := string(snapshot(t, "/proc/"+strconv.Itoa(pid)+"/status"))
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindStringSubmatch(st)
	if m != nil {
		rssKB, _ = strconv.Atoi(m[1])
	}
	return len(ents), rssKB
}

// TestLoad: 8 concurrent LMTP clients deliver 500 messages each (set
// LDA_LOAD_MESSAGES to change), alternating two users. Every message is in
// its mailbox exactly once, and the daemon's descriptors return to their
// baseline. It prints deliveries per second and the daemon's RSS.
func TestLoad(t *testing.T) {
	f := newFixture(t)
	// Warm workers hold descriptors while idle; a short idle_time lets
	// them go, so that the baseline can be checked.
	d := startDaemon(t, f, "parallel: 4\nworkers: {max_idle: 32, idle_time: 1s, max_deliveries: 1000}\n")
	per := 500
	if s := os.Getenv("LDA_LOAD_MESSAGES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("LDA_LOAD_MESSAGES=%q: want a positive number of messages", s)
		}
		per = n
	}
	const clients = 8
	parent, listener := d.cmd.Process.Pid, listenerPid(t, f.bin)
	// Warm up, then take the baseline.
	warm := dialLMTP(t, d.socket)
	warm.cmd("LHLO load", "250")
	warm.cmd("QUIT", "221")
	time.Sleep(200 * time.Millisecond)
	pFD0, pRSS0 := procStats(t, parent)
	lFD0, lRSS0 := procStats(t, listener)

	users := []*testutil.User{f.u1, f.u2}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cl := dialLMTP(t, d.socket)
			cl.c.SetDeadline(time.Now().Add(10 * time.Minute))
			cl.cmd("LHLO load", "250")
			for i := 0; i < per; i++ {
				u := users[(c+i)%2]
				fmt.Fprintf(cl.c, "MAIL FROM:<load@example.org>\r\nRCPT TO:<%s@example.org>\r\nDATA\r\n", u.Name)
				for _, want := range []string{"250", "250", "354"} {
					if r := cl.reply(); !strings.HasPrefix(r, want) {
						errs <- fmt.Errorf("client %d message %d: got %q, want %s", c, i, r, want)
						return
					}
				}
				fmt.Fprintf(cl.c, "Subject: load c%d m%d\r\nX-Load-ID: c%d-m%d\r\n\r\nbody %d %d\r\n.\r\n", c, i, c, i, c, i)
				if r := cl.reply(); !strings.HasPrefix(r, "250 2.0.0") {
					errs <- fmt.Errorf("client %d message %d: DATA got %q", c, i, r)
					return
				}
			}
			cl.cmd("QUIT", "221")
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := clients * per
	t.Logf("load: %d deliveries over %d connections in %v: %.0f deliveries/s", total, clients, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())

	seen := map[string]int{}
	idRE := regexp.MustCompile(`(?m)^X-Load-ID: (c\d+-m\d+)$`)
	for _, u := range users {
		dir := filepath.Join(u.Home, "Maildir", "new")
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			m := idRE.FindSubmatch(snapshot(t, filepath.Join(dir, e.Name())))
			if m == nil {
				t.Fatalf("message without its id: %s", e.Name())
			}
			seen[string(m[1])]++
		}
	}
	if len(seen) != total {
		t.Fatalf("%d distinct messages in the mailboxes, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("message %s delivered %d times", id, n)
		}
	}
	var pFD1, pRSS1, lFD1, lRSS1 int
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		pFD1, pRSS1 = procStats(t, parent)
		lFD1, lRSS1 = procStats(t, listener)
		if pFD1 == pFD0 && lFD1 == lFD0 || time.Now().After(deadline) {
			break
		}
	}
	if n := countProcs(f.bin, "worker"); n != 0 {
		t.Errorf("%d workers left after idle_time", n)
	}
	t.Logf("parent: fds %d -> %d, RSS %d -> %d kB; listener: fds %d -> %d, RSS %d -> %d kB", pFD0, pFD1, pRSS0, pRSS1, lFD0, lFD1, lRSS0, lRSS1)
	if pFD1 != pFD0 || lFD1 != lFD0 {
		t.Fatalf("descriptors not back to baseline: parent %d -> %d, listener %d -> %d", pFD0, pFD1, lFD0, lFD1)
	}
}

// countProcs counts the processes running bin with sub in their command line.
func countProcs(bin, sub string) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if len(args) > 1 && args[0] == bin && args[1] == sub {
			n++
		}
	}
	return n
}
