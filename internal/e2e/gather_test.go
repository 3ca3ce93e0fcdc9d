package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"lda/internal/delivery"
	"lda/internal/testutil"
)

// threadMasks returns the CPU masks of pid's threads, as
// /proc/PID/task/TID/status lists them (Cpus_allowed_list), counted.
func threadMasks(t *testing.T, pid int) map[string]int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	masks := map[string]int{}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + task.Name() + "/status")
		if err != nil {
			continue // the thread ended
		}
		v, ok := credStatusField(string(b), "Cpus_allowed_list")
		if !ok {
			t.Fatalf("no Cpus_allowed_list in %s", b)
		}
		masks[v]++
	}
	if len(masks) == 0 {
		t.Fatalf("no thread of %d could be read", pid)
	}
	return masks
}

// onlyOn reports whether every thread of pid may run on list alone.
func onlyOn(t *testing.T, pid int, list string) bool {
	m := threadMasks(t, pid)
	return len(m) == 1 && m[list] > 0
}

// TestServeGathered: while deliveries come one at a time, the listener
// and the worker of each delivery are gathered on the highest CPU of the
// daemon's mask, every thread of both; deliveries that overlap spread the
// listener again, and the next job of each worker spreads that worker.
// With workers.gather false nothing is ever gathered.
func TestServeGathered(t *testing.T) {
	all, last := testutil.CPUs(t) // the daemon's mask: it inherits this process's
	first := 0
	for !all.IsSet(first) {
		first++
	}
	lastList := strconv.Itoa(last)
	allList := strconv.Itoa(first) + "-" + lastList
	if all.Count() != last-first+1 {
		t.Skip("the test's mask has holes; Cpus_allowed_list would not be one range")
	}
	for _, tc := range []struct {
		name, config string
		gathers      bool
	}{
		{"default", "workers: {max_idle: 8, idle_time: 1m, max_deliveries: 1000}\n", true},
		{"off", "workers: {max_idle: 8, idle_time: 1m, max_deliveries: 1000, gather: false}\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			d := startDaemon(t, f, tc.config)
			listener := listenerPid(t, f.bin)
			rcpt := f.u1.Name + "@example.org"
			// Serial deliveries, as many as the listener needs to see
			// in a row before it gathers, and one more for the worker.
			for i := 0; i <= delivery.DefaultGatherCalm; i++ {
				d.sendOne(t, rcpt, "serial "+strconv.Itoa(i))
			}
			workers := warmWorkers(f.bin, f.u1.UID)
			if len(workers) != 1 {
				t.Fatalf("workers of %s: %v, want one", f.u1.Name, workers)
			}
			if got := onlyOn(t, listener, lastList); got != tc.gathers {
				t.Fatalf("listener threads %v after serial deliveries; gathered on %s: %v, want %v", threadMasks(t, listener), lastList, got, tc.gathers)
			}
			if got := onlyOn(t, workers[0], lastList); got != tc.gathers {
				t.Fatalf("worker threads %v after serial deliveries; gathered on %s: %v, want %v", threadMasks(t, workers[0]), lastList, got, tc.gathers)
			}
			if tc.gathers {
				// A program started by the gathered worker is spread:
				// nothing would ever move it back (affinity.Spawn).
				testutil.Build(t, filepath.Join(f.base, "prog"), "./internal/testprog/credprobe")
				out := filepath.Join(f.base, "out")
				testutil.Must(t, os.MkdirAll(out, 0o1777))
				testutil.Must(t, os.Chmod(out, 0o1777))
				cl := dialLMTP(t, d.socket)
				cl.cmd("LHLO mta.test", "250")
				cl.cmd("MAIL FROM:<sender@example.org>", "250")
				cl.cmd("RCPT TO:<"+rcpt+"> XLDA-DEST=program:probe", "250")
				cl.cmd("DATA", "354")
				fmt.Fprintf(cl.c, "Subject: probe\r\n\r\nx\r\n.\r\n")
				cl.expect("250 2.0.0")
				cl.cmd("QUIT", "221")
				self := credSections(snapshot(t, filepath.Join(out, f.u1.Name+".probe")))["self"]
				if v, _ := credStatusField(self, "Cpus_allowed_list"); v != allList {
					t.Fatalf("the program ran on %q, want %s", v, allList)
				}
				if !onlyOn(t, workers[0], lastList) || !onlyOn(t, listener, lastList) {
					t.Fatalf("after the program: worker %v, listener %v, want both on %s", threadMasks(t, workers[0]), threadMasks(t, listener), lastList)
				}
			}
			// Overlapping deliveries, to another user, until the
			// listener has spread (one round nearly always does).
			rounds := 0
			for ; rounds < 5 && (rounds == 0 || !onlyOn(t, listener, allList)); rounds++ {
				var wg sync.WaitGroup
				for c := 0; c < 6; c++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; i < 4; i++ {
							d.sendOne(t, f.u2.Name+"@example.org", "parallel")
						}
					}()
				}
				wg.Wait()
			}
			t.Logf("%d rounds", rounds)
			if !onlyOn(t, listener, allList) {
				t.Fatalf("listener threads %v after overlapping deliveries, want all on %s", threadMasks(t, listener), allList)
			}
			// The next job of u1's one worker comes while the listener
			// is spread, and spreads that worker.
			d.sendOne(t, rcpt, "spread again")
			if w := warmWorkers(f.bin, f.u1.UID); len(w) != 1 || w[0] != workers[0] {
				t.Fatalf("workers of %s: %v, want %v still", f.u1.Name, w, workers)
			}
			if !onlyOn(t, workers[0], allList) {
				t.Fatalf("worker threads %v after a spread job, want all on %s", threadMasks(t, workers[0]), allList)
			}
			if n := countNew(t, f.u1.Home+"/Maildir/new"); n != delivery.DefaultGatherCalm+2 {
				t.Fatalf("%s has %d messages in its Maildir, want %d", f.u1.Name, n, delivery.DefaultGatherCalm+2)
			}
			if n := countNew(t, f.u2.Home+"/Maildir/new"); n != rounds*24 {
				t.Fatalf("%s has %d messages, want %d", f.u2.Name, n, rounds*24)
			}
		})
	}
}
