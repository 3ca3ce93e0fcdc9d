package affinity

import (
	"errors"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// setup records this process's mask and GOMAXPROCS and, at the test's
// end, puts every thread back on that mask, the hooks and GOMAXPROCS back
// as they were, and forgets the package's state. It skips when the
// process may run on one CPU only: there is nothing to gather then.
func setup(t *testing.T) unix.CPUSet {
	t.Helper()
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	if all.Count() < 2 {
		t.Skip("this process may run on one CPU only")
	}
	procs := runtime.GOMAXPROCS(0)
	t.Cleanup(func() {
		setThread, listThreads = unix.SchedSetaffinity, threads
		applyAll(&all)
		runtime.GOMAXPROCS(procs)
		mu.Lock()
		startMask, started = unix.CPUSet{}, false
		current.Store(Spread)
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

// defaultProcs is what runtime.SetDefaultGOMAXPROCS gives here (setup
// puts back whatever the test binary ran with, go test -cpu included).
func defaultProcs() int {
	runtime.SetDefaultGOMAXPROCS()
	return runtime.GOMAXPROCS(0)
}

func TestGatherAndSpread(t *testing.T) {
	all := setup(t)
	busyThreads(t, 3)
	procs := defaultProcs()
	if n := Start(); n != all.Count() {
		t.Fatalf("Start = %d, want %d", n, all.Count())
	}
	last := Last()
	if last < 0 || !all.IsSet(last) {
		t.Fatalf("Last = %d, not in %v", last, all)
	}
	for c := last + 1; c <= MaxCPU; c++ {
		if all.IsSet(c) {
			t.Fatalf("Last = %d, but %d is in the mask", last, c)
		}
	}
	if !Set(last) || Current() != last {
		t.Fatalf("Set(%d) failed; Current %d", last, Current())
	}
	threadsOn(t, only(last))
	if p := runtime.GOMAXPROCS(0); p != 1 {
		t.Fatalf("GOMAXPROCS %d while gathered, want 1", p)
	}
	// A thread made while gathered copies the gathered mask.
	busyThreads(t, 1)
	threadsOn(t, only(last))
	calls := 0
	setThread = func(tid int, set *unix.CPUSet) error { calls++; return unix.SchedSetaffinity(tid, set) }
	if !Set(last) || calls != 0 {
		t.Fatalf("Set to where it is: %d threads set again", calls)
	}
	if !Set(Spread) || Current() != Spread {
		t.Fatalf("Set(Spread) failed; Current %d", Current())
	}
	threadsOn(t, all)
	if p := runtime.GOMAXPROCS(0); p != procs {
		t.Fatalf("GOMAXPROCS %d once spread, want the default %d", p, procs)
	}
}

// TestOutsideTheMask: a CPU the process did not start with, or none a
// CPUSet can hold, is never taken, and spreading means the starting mask,
// never a wider one.
func TestOutsideTheMask(t *testing.T) {
	all := setup(t)
	// Start with a mask of one CPU fewer: the calling thread's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	first := -1
	for c := 0; c <= MaxCPU && first < 0; c++ {
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
	var applied []unix.CPUSet
	setThread = func(tid int, set *unix.CPUSet) error {
		applied = append(applied, *set)
		return unix.SchedSetaffinity(tid, set)
	}
	for _, tc := range []struct {
		name string
		cpu  int
	}{{"not in the starting mask", first}, {"negative", -2}, {"beyond a CPUSet", MaxCPU + 1}} {
		t.Run(tc.name, func(t *testing.T) {
			if Set(tc.cpu) {
				t.Fatalf("Set(%d) succeeded", tc.cpu)
			}
			if Current() != Spread {
				t.Fatalf("Current = %d", Current())
			}
		})
	}
	if len(applied) != 0 {
		t.Fatalf("refused CPUs set %d threads", len(applied))
	}
	threadsOn(t, all)
	if !Set(Last()) {
		t.Fatal("could not gather inside the mask")
	}
	applied = nil
	if !Set(Spread) {
		t.Fatal("could not spread")
	}
	if len(applied) < 2 {
		t.Fatalf("spreading set %d threads", len(applied))
	}
	for _, m := range applied {
		if m != narrow {
			t.Fatalf("spread with mask %v, want the starting %v", m, narrow)
		}
	}
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

// TestRefused: a mask the kernel refuses for one thread (a cpuset that
// changed under the process, say) leaves every thread spread; a failure
// that cannot even be undone leaves the state unknown, and the next
// spread repairs it.
func TestRefused(t *testing.T) {
	all := setup(t)
	busyThreads(t, 2)
	Start()
	last := Last()
	t.Run("one thread refuses", func(t *testing.T) {
		calls := 0
		setThread = func(tid int, set *unix.CPUSet) error {
			if calls++; calls == 2 {
				return unix.EINVAL
			}
			return unix.SchedSetaffinity(tid, set)
		}
		defer func() { setThread = unix.SchedSetaffinity }()
		if Set(last) {
			t.Fatal("Set succeeded with a refused thread")
		}
		if Current() != Spread {
			t.Fatalf("Current = %d", Current())
		}
		threadsOn(t, all) // the threads set before the refusal were put back
	})
	t.Run("the thread list fails after the first pass", func(t *testing.T) {
		lists := 0
		listThreads = func() ([]int, error) {
			if lists++; lists > 1 {
				return nil, errors.New("too many open files")
			}
			return threads()
		}
		if Set(last) {
			t.Fatal("Set succeeded without its second reading")
		}
		if Current() == Spread {
			t.Fatal("reported spread with every thread gathered and no way back")
		}
		listThreads = threads
		if !Set(Spread) || Current() != Spread {
			t.Fatalf("Set(Spread) did not repair: Current %d", Current())
		}
		threadsOn(t, all)
	})
}

// spawnedMask starts a child through Spawn and returns its mask.
func spawnedMask(t *testing.T) unix.CPUSet {
	t.Helper()
	cmd := exec.Command("sleep", "5")
	if err := Spawn(cmd.Start); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	var child unix.CPUSet
	if err := unix.SchedGetaffinity(cmd.Process.Pid, &child); err != nil {
		t.Fatal(err)
	}
	return child
}

// TestSpawn: a child started while the process is gathered gets the
// starting mask, and the thread that started it goes back.
func TestSpawn(t *testing.T) {
	all := setup(t)
	Start()
	last := Last()
	for _, gathered := range []bool{true, false} {
		cpu := Spread
		if gathered {
			cpu = last
		}
		if !Set(cpu) {
			t.Fatal("Set failed")
		}
		if child := spawnedMask(t); child != all {
			t.Fatalf("gathered %v: child's mask %v, want %v", gathered, child, all)
		}
		if gathered {
			threadsOn(t, only(last))
		} else {
			threadsOn(t, all)
		}
	}
}

// TestSpreadRefused: a spread that fails (under load: it is the first
// overlap that asks for it) still gives the runtime its default
// GOMAXPROCS back, and leaves the state for the next Set to repair.
func TestSpreadRefused(t *testing.T) {
	all := setup(t)
	busyThreads(t, 2)
	procs := defaultProcs()
	Start()
	if !Set(Last()) || runtime.GOMAXPROCS(0) != 1 {
		t.Fatal("could not gather")
	}
	calls := 0
	setThread = func(tid int, set *unix.CPUSet) error {
		if calls++; calls == 1 {
			return unix.EINVAL
		}
		return unix.SchedSetaffinity(tid, set)
	}
	if Set(Spread) {
		t.Fatal("Set(Spread) succeeded with a refused thread")
	}
	if Current() != unknown {
		t.Fatalf("Current = %d, want unknown", Current())
	}
	if p := runtime.GOMAXPROCS(0); p != procs {
		t.Fatalf("GOMAXPROCS %d after a failed spread, want the default %d", p, procs)
	}
	setThread = unix.SchedSetaffinity
	if !Set(Spread) {
		t.Fatal("the next spread did not repair")
	}
	threadsOn(t, all)
}

// TestSpawnSideBySide: children start side by side, as the runtime lets
// them: a Spawn does not wait for another's fork and exec.
func TestSpawnSideBySide(t *testing.T) {
	setup(t)
	Start()
	for _, cpu := range []int{Last(), Spread} {
		if !Set(cpu) {
			t.Fatal("Set failed")
		}
		second := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- Spawn(func() error {
				select {
				case <-second:
					return nil
				case <-time.After(5 * time.Second):
					return errors.New("the second Spawn never ran beside the first")
				}
			})
		}()
		time.Sleep(20 * time.Millisecond) // the first is inside its start
		if err := Spawn(func() error { close(second); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("on %d: %v", cpu, err)
		}
	}
}

// TestSpawnRestoreRefused: a thread whose gathered mask cannot be put
// back after a Spawn marks the process unknown; the next Set repairs it.
func TestSpawnRestoreRefused(t *testing.T) {
	all := setup(t)
	Start()
	last := Last()
	if !Set(last) {
		t.Fatal("could not gather")
	}
	setThread = func(tid int, set *unix.CPUSet) error {
		if tid == 0 && set.Count() == 1 {
			return unix.EINVAL // the restore
		}
		return unix.SchedSetaffinity(tid, set)
	}
	cmd := exec.Command("true")
	if err := Spawn(cmd.Start); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if Current() != unknown {
		t.Fatalf("Current = %d after a failed restore, want unknown", Current())
	}
	// Unknown: a child still gets the starting mask.
	setThread = unix.SchedSetaffinity
	if child := spawnedMask(t); child != all {
		t.Fatalf("child of an unknown process on %v, want %v", child, all)
	}
	if !Set(last) || Current() != last {
		t.Fatal("the next Set did not repair")
	}
	threadsOn(t, only(last))
}
