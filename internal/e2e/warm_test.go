package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// warmWorkers returns the pids of bin's warm workers running as uid.
func warmWorkers(bin string, uid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// Root's own warm workers, and the direct ones it starts for the
		// listener.
		if b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline"); string(b) != bin+"\x00worker\x00warm\x00" &&
			string(b) != bin+"\x00worker\x00direct\x00" {
			continue
		}
		st, _ := os.ReadFile("/proc/" + e.Name() + "/status")
		if v, _ := credStatusField(string(st), "Uid"); len(strings.Fields(v)) > 0 && strings.Fields(v)[0] == strconv.Itoa(uid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestServeWarmWorkers: lda serve delivers a user's messages through one
// warm worker running as that user; a reload replaces it, and SIGTERM
// leaves no worker behind.
func TestServeWarmWorkers(t *testing.T) {
	f := newFixture(t)
	d := startDaemon(t, f, "workers: {max_idle: 8, idle_time: 1m, max_deliveries: 100}\n")
	u := f.u1
	send := func(subject string) {
		t.Helper()
		d.sendOne(t, u.Name+"@example.org", subject)
	}
	send("one")
	first := warmWorkers(f.bin, u.UID)
	if len(first) != 1 {
		t.Fatalf("warm workers of %s after one delivery: %v, want one", u.Name, first)
	}
	// Root started it, for the listener: its parent is root, never the
	// listener, which cannot signal it either.
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", first[0]))
	if ppid, _ := credStatusField(string(st), "PPid"); ppid != strconv.Itoa(d.cmd.Process.Pid) {
		t.Fatalf("worker %d has parent %s, want lda serve (%d)", first[0], ppid, d.cmd.Process.Pid)
	}
	send("two")
	if got := warmWorkers(f.bin, u.UID); len(got) != 1 || got[0] != first[0] {
		t.Fatalf("second delivery: workers %v, want the same %v", got, first)
	}
	if other := warmWorkers(f.bin, f.u2.UID); len(other) != 0 {
		t.Fatalf("u2 has workers %v without any mail", other)
	}

	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(d.stderr.String(), "msg=reloaded") }, "a reload")
	waitFor(t, func() bool { return len(warmWorkers(f.bin, u.UID)) == 0 }, "the reload to stop the idle worker")
	send("three")
	if got := warmWorkers(f.bin, u.UID); len(got) != 1 || got[0] == first[0] {
		t.Fatalf("after the reload: workers %v, want one new one (old %v)", got, first)
	}
	if n := countNew(t, u.Home+"/Maildir/new"); n != 3 {
		t.Fatalf("%d messages, want 3", n)
	}

	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("lda serve did not exit")
	}
	d.cmd = nil
	waitFor(t, func() bool { return len(warmWorkers(f.bin, u.UID)) == 0 }, "no worker left after SIGTERM")
}
