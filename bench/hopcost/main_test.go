package main

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary serve as the child that answers pings,
// as the command's own binary does.
func TestMain(m *testing.M) {
	if kind := os.Getenv(childEnv); kind != "" {
		os.Exit(child(kind, 3))
	}
	os.Exit(m.Run())
}

func TestParseIdles(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []time.Duration
		bad  bool
	}{
		{in: "0", want: []time.Duration{0}},
		{in: "0,20us, 1ms", want: []time.Duration{0, 20 * time.Microsecond, time.Millisecond}},
		{in: "1ms,x", bad: true},
		{in: "-5us", bad: true},
		{in: "", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseIdles(tc.in)
			if (err != nil) != tc.bad || !slices.Equal(got, tc.want) {
				t.Fatalf("parseIdles(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}

func TestParsePeers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "blocking", want: []string{"blocking"}},
		{in: "blocking, poller", want: []string{"blocking", "poller"}},
		{in: "poller,spinner", bad: true},
		{in: "", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parsePeers(tc.in)
			if (err != nil) != tc.bad || !slices.Equal(got, tc.want) {
				t.Fatalf("parsePeers(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}

func TestMeasure(t *testing.T) {
	idles := []time.Duration{0, 200 * time.Microsecond}
	peers := []string{peerBlocking, peerPoller}
	rep, err := measure(1000, 256, 100, idles, peers, 3*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if rep.syscall <= 0 || rep.syscall > time.Millisecond {
		t.Errorf("a system call took %v", rep.syscall)
	}
	// A first write maps and zeroes a page (a fault, a 4 KiB clear); a
	// second one is a store to a mapped page.
	if rep.fresh <= 0 || rep.again < 0 || rep.again >= rep.fresh {
		t.Errorf("fresh page %v, written again %v", rep.fresh, rep.again)
	}
	if len(rep.rows) != len(idles)*len(peers) {
		t.Fatalf("%d rows for %d idle times and %d peers", len(rep.rows), len(idles), len(peers))
	}
	_, hasSchedstat := os.Stat("/proc/self/schedstat")
	for i, r := range rep.rows {
		if r.peer != peers[i/len(idles)] || r.idle != idles[i%len(idles)] || r.p50 <= 0 || r.p90 < r.p50 {
			t.Errorf("row %d: %+v", i, r)
		}
		// nanosleep never returns early (no signal interrupts it here),
		// so a measured sleep shorter than the one asked for is a bug.
		if r.slept < r.idle {
			t.Errorf("row %d: asked to sleep %v, measured %v", i, r.idle, r.slept)
		}
		// A round trip is at least two system calls (and two wake-ups).
		if r.p50 < rep.syscall {
			t.Errorf("row %d: round trip p50 %v below one system call %v", i, r.p50, rep.syscall)
		}
		// The child waits for every ping, so it is switched out at
		// least about once per round trip, and it runs for some time.
		if r.switches < 0.5 {
			t.Errorf("row %d: the child switched %.2f times per round trip", i, r.switches)
		}
		if hasSchedstat == nil && (r.cpu <= 0 || r.cpu > r.p90*100) {
			t.Errorf("row %d: the child's CPU per round trip is %v", i, r.cpu)
		}
	}
	var b strings.Builder
	rep.write(&b)
	for _, want := range []string{"child timer slack 3ms", "system call (getppid):", "child blocking:", "child poller:",
		"round trip, back to back:", "round trip after 200µs asleep (", "same CPU", "switches"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// TestChildSlack: the child runs with the slack it was given.
func TestChildSlack(t *testing.T) {
	if _, err := os.Stat("/proc/self/timerslack_ns"); err != nil {
		t.Skip("no /proc/PID/timerslack_ns here")
	}
	var got string
	afterStart = func(pid int) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/timerslack_ns")
		if err != nil {
			t.Error(err)
		}
		got = strings.TrimSpace(string(b))
	}
	defer func() { afterStart = nil }()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rows, err := measurePeer(peerPoller, 5, []time.Duration{0}, 7*time.Millisecond)
	if err != nil || len(rows) != 1 {
		t.Fatalf("measurePeer: %v, %d rows", err, len(rows))
	}
	if got != "7000000" {
		t.Fatalf("the child's timer slack is %s ns, want 7000000", got)
	}
}

// TestPing: every answer but four bytes naming a possible CPU is an
// error, not a figure, and a peer that is gone is an error, not a hang.
func TestPing(t *testing.T) {
	le := func(v int32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
	for _, tc := range []struct {
		name   string
		answer []byte // nil: close after reading the ping
		gone   bool   // close before the ping
		want   int
		bad    string
	}{
		{name: "cpu 1", answer: le(1), want: 1},
		{name: "cpu unknown", answer: le(-1), want: -1},
		{name: "closed after reading", answer: nil, bad: "went away"},
		{name: "gone before", gone: true, bad: "write"},
		{name: "short answer", answer: []byte{1, 0}, bad: "2 bytes"},
		{name: "long answer", answer: append(le(1), 0), bad: "5 bytes"},
		{name: "impossible cpu", answer: le(1 << 20), bad: "CPU 1048576"},
		{name: "negative cpu", answer: le(-7), bad: "CPU -7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fds := make([]int, 2)
			if err := pipeSeqpacket(fds); err != nil {
				t.Fatal(err)
			}
			defer closeFD(fds[0])
			if tc.gone {
				closeFD(fds[1])
			} else {
				go func() {
					defer closeFD(fds[1])
					var b [8]byte
					if _, err := unix.Read(fds[1], b[:]); err != nil {
						return
					}
					if tc.answer != nil {
						unix.Write(fds[1], tc.answer)
					}
				}()
			}
			// A hang would be a failure too: the read has a deadline.
			tv := unix.Timeval{Sec: 5}
			if err := unix.SetsockoptTimeval(fds[0], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
				t.Fatal(err)
			}
			got, err := ping(fds[0])
			if tc.bad == "" {
				if err != nil || got != tc.want {
					t.Fatalf("ping = %d, %v; want %d", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Fatalf("ping = %d, %v; want an error with %q", got, err, tc.bad)
			}
		})
	}
}

func pipeSeqpacket(fds []int) error {
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	copy(fds, p[:])
	return err
}

func closeFD(fd int) { unix.Close(fd) }
