package main

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary serve as the child that answers pings,
// as the command's own binary does.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(child(3))
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

func TestMeasure(t *testing.T) {
	idles := []time.Duration{0, 200 * time.Microsecond}
	rep, err := measure(1000, 100, idles)
	if err != nil {
		t.Fatal(err)
	}
	if rep.syscall <= 0 || rep.syscall > time.Millisecond {
		t.Errorf("a system call took %v", rep.syscall)
	}
	if len(rep.rows) != len(idles) {
		t.Fatalf("%d rows for %d idle times", len(rep.rows), len(idles))
	}
	for i, r := range rep.rows {
		if r.idle != idles[i] || r.p50 <= 0 || r.p90 < r.p50 || r.sameCPU < 0 || r.sameCPU > 1 {
			t.Errorf("row %d: %+v", i, r)
		}
		// A round trip is at least two system calls (and two wake-ups).
		if r.p50 < rep.syscall {
			t.Errorf("row %d: round trip p50 %v below one system call %v", i, r.p50, rep.syscall)
		}
	}
	var b strings.Builder
	rep.write(&b)
	for _, want := range []string{"system call (getppid):", "round trip, back to back:", "round trip after 200µs asleep:", "same CPU"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestPingChildGone(t *testing.T) {
	// A child that has gone is an error, not a hang or a made-up figure.
	fds := make([]int, 2)
	if err := pipeSeqpacket(fds); err != nil {
		t.Fatal(err)
	}
	closeFD(fds[1])
	defer closeFD(fds[0])
	if _, err := ping(fds[0]); err == nil {
		t.Fatal("ping to a closed peer succeeded")
	}
}

func pipeSeqpacket(fds []int) error {
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	copy(fds, p[:])
	return err
}

func closeFD(fd int) { unix.Close(fd) }
