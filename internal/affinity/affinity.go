package affinity

import (
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Spread means no gathering: every thread may run on any CPU of the
// starting mask.
const Spread = -1

// maxCPU is the highest CPU a unix.CPUSet holds.
const maxCPU = 1023

var (
	mu      sync.Mutex
	start   unix.CPUSet // the mask the process started with
	started bool
	current = Spread
)

// Start records the calling thread's mask as the process's starting
// mask, to which Set(Spread) returns. A process calls it once, before
// its first Set; without it Set gathers nowhere.
func Start() {
	mu.Lock()
	defer mu.Unlock()
	if unix.SchedGetaffinity(0, &start) == nil && start.Count() > 0 {
		started = true
	}
}

// Last returns the highest CPU of the starting mask, where a gathering
// process goes, or Spread before Start. The last rather than the first:
// many systems steer more of their interrupts to CPU 0.
func Last() int {
	mu.Lock()
	defer mu.Unlock()
	if started {
		for c := maxCPU; c >= 0; c-- {
			if start.IsSet(c) {
				return c
			}
		}
	}
	return Spread
}

// Current returns the CPU the process is gathered on, or Spread.
func Current() int {
	mu.Lock()
	defer mu.Unlock()
	return current
}

// Set gathers every thread of the process on cpu, or spreads them over
// the starting mask again (cpu Spread). It does nothing when the process
// is there already, and reports whether the process is now where it was
// asked to be. A cpu outside the starting mask, or a mask the kernel
// refuses, leaves the process spread.
func Set(cpu int) bool {
	mu.Lock()
	defer mu.Unlock()
	ok := true
	if cpu != Spread && (!started || cpu < 0 || cpu > maxCPU || !start.IsSet(cpu)) {
		cpu, ok = Spread, false
	}
	if cpu == current {
		return ok
	}
	set := start
	if cpu != Spread {
		set.Zero()
		set.Set(cpu)
	}
	if err := applyAll(&set); err != nil {
		// Whatever threads took the mask get the starting one back.
		applyAll(&start)
		current = Spread
		return false
	}
	current = cpu
	return ok
}

// setThread is sched_setaffinity(2) on one thread; a hook for tests.
var setThread = unix.SchedSetaffinity

// applyAll sets the mask of every thread in /proc/self/task. The list is
// read twice: a thread that a thread not yet set makes during the first
// pass copies the old mask, and the second pass finds it. A thread that
// ends meanwhile (ESRCH) is no error.
func applyAll(set *unix.CPUSet) error {
	for pass := 0; pass < 2; pass++ {
		tids, err := threads()
		if err != nil {
			return err
		}
		for _, tid := range tids {
			if err := setThread(tid, set); err != nil && err != unix.ESRCH {
				return err
			}
		}
	}
	return nil
}

// threads lists the process's thread ids.
func threads() ([]int, error) {
	d, err := os.Open("/proc/self/task")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(names))
	for _, n := range names {
		if tid, err := strconv.Atoi(n); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}
