package affinity

import (
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// setup records this process's mask as the starting one and, at the
// test's end, puts every thread back on it and forgets the state. It
// skips when the process may run on one CPU only: there is nothing to
// gather then.
func setup(t *testing.T) unix.CPUSet {
	t.Helper()
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	if all.Count() < 2 {
		t.Skip("this process may run on one CPU only")
	}
	t.Cleanup(func() {
		applyAll(&all)
		mu.Lock()
		start, started, current = unix.CPUSet{}, false, Spread
		mu.Unlock()
	})
	return all
}

// threadsOn checks that every thread of the process has mask want.
func threadsOn(t *testing.T, want unix.CPUSet) {
	t.Helper()
	tids, err := threads()
	if err != nil {
		t.Fatal(err)
	}
	if len(tids) < 2 {
		t.Fatalf("%d threads listed", len(tids))
	}
	for _, tid := range tids {
		var got unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &got); err == unix.ESRCH {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("thread %d: mask %v, want %v", tid, got, want)
		}
	}
}

func only(cpu int) unix.CPUSet {
	var s unix.CPUSet
	s.Set(cpu)
	return s
}

// busyThreads keeps n more threads alive (goroutines locked to their
// threads) until the test ends, so that gathering has threads to find.
func busyThreads(t *testing.T, n int) {
	var ready, done sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < n; i++ {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			ready.Done()
			<-stop
		}()
	}
	ready.Wait()
	t.Cleanup(func() { close(stop); done.Wait() })
}

func TestGatherAndSpread(t *testing.T) {
	all := setup(t)
	busyThreads(t, 3)
	Start()
	last := Last()
	if last < 0 || !all.IsSet(last) {
		t.Fatalf("Last = %d, not in %v", last, all)
	}
	for c := last + 1; c <= maxCPU; c++ {
		if all.IsSet(c) {
			t.Fatalf("Last = %d, but %d is in the mask", last, c)
		}
	}
	if !Set(last) || Current() != last {
		t.Fatalf("Set(%d) failed; Current %d", last, Current())
	}
	threadsOn(t, only(last))
	// A thread made while gathered copies the gathered mask.
	busyThreads(t, 1)
	threadsOn(t, only(last))
	if !Set(last) {
		t.Fatal("Set to where it is reported false")
	}
	if !Set(Spread) || Current() != Spread {
		t.Fatalf("Set(Spread) failed; Current %d", Current())
	}
	threadsOn(t, all)
}

// TestOutsideTheMask: a CPU the process did not start with, or none a
// CPUSet can hold, is never taken, and the process stays spread over its
// starting mask.
func TestOutsideTheMask(t *testing.T) {
	all := setup(t)
	// Start with a mask of one CPU fewer: the calling thread's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	first := -1
	for c := 0; c <= maxCPU && first < 0; c++ {
		if all.IsSet(c) {
			first = c
		}
	}
	narrow := all
	narrow.Clear(first)
	if err := unix.SchedSetaffinity(0, &narrow); err != nil {
		t.Fatal(err)
	}
	Start()
	if err := unix.SchedSetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cpu  int
	}{{"not in the starting mask", first}, {"negative", -2}, {"beyond a CPUSet", maxCPU + 1}} {
		t.Run(tc.name, func(t *testing.T) {
			if Set(tc.cpu) {
				t.Fatalf("Set(%d) succeeded", tc.cpu)
			}
			if Current() != Spread {
				t.Fatalf("Current = %d", Current())
			}
		})
	}
	threadsOn(t, all) // untouched: spread already, nothing was applied
	if !Set(Last()) {
		t.Fatal("could not gather inside the mask")
	}
	if !Set(Spread) {
		t.Fatal("could not spread")
	}
	threadsOn(t, narrow) // spread means the starting mask, never wider
}

// TestNotStarted: without Start a process gathers nowhere.
func TestNotStarted(t *testing.T) {
	all := setup(t)
	if Last() != Spread {
		t.Fatalf("Last before Start = %d", Last())
	}
	if Set(0) || Current() != Spread {
		t.Fatal("gathered before Start")
	}
	if !Set(Spread) {
		t.Fatal("Set(Spread) before Start reported false")
	}
	threadsOn(t, all)
}

// TestRefused: a mask the kernel refuses for one thread (a cpuset
// changed under the process, say) leaves every thread spread.
func TestRefused(t *testing.T) {
	all := setup(t)
	busyThreads(t, 2)
	Start()
	calls := 0
	setThread = func(tid int, set *unix.CPUSet) error {
		if calls++; calls == 2 {
			return unix.EINVAL
		}
		return unix.SchedSetaffinity(tid, set)
	}
	defer func() { setThread = unix.SchedSetaffinity }()
	if Set(Last()) {
		t.Fatal("Set succeeded with a refused thread")
	}
	if Current() != Spread {
		t.Fatalf("Current = %d", Current())
	}
	if calls < 3 {
		t.Fatalf("only %d threads set: the starting mask was not put back", calls)
	}
	threadsOn(t, all)
}
