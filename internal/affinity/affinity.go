package affinity

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Spread means no gathering: every thread may run on any CPU of the
// starting mask.
const Spread = -1

// unknown is where the process is after a move that failed half-way and
// could not be undone: the next Set applies its mask whatever it is.
const unknown = -2

// MaxCPU is the highest CPU a unix.CPUSet holds. On a machine with more,
// sched_getaffinity(2) refuses the set, Start finds no mask, and the
// process never gathers.
const MaxCPU = 1023

// mu orders moves (Set, Start: write-locked) against Spawn and the
// readers, which only read-lock it: children may start side by side, as
// the runtime lets them, but never while the process moves (a Spawn's
// restore could undo the move). current is atomic because a Spawn whose
// restore fails marks it unknown under the read lock.
var (
	mu        sync.RWMutex
	startMask unix.CPUSet // the mask the process started with
	started   bool
	current   atomic.Int32
)

func init() { current.Store(Spread) }

// Start records the calling thread's mask as the process's starting
// mask, to which Set(Spread) returns, and returns how many CPUs it holds
// (0 if the kernel would not say). A process calls it once, before its
// first Set; without it Set gathers nowhere. The mask is a snapshot: a
// change made to the process from outside later (taskset -p, a cpuset
// that shrinks) is undone by the next spread, within the snapshot.
func Start() int {
	mu.Lock()
	defer mu.Unlock()
	var s unix.CPUSet
	if unix.SchedGetaffinity(0, &s) != nil || s.Count() == 0 {
		return 0
	}
	startMask, started = s, true
	return s.Count()
}

// Last returns the highest CPU of the starting mask, where a gathering
// process goes, or Spread before Start. The last rather than the first:
// many systems steer more of their interrupts to CPU 0.
func Last() int {
	mu.RLock()
	defer mu.RUnlock()
	if started {
		for c := MaxCPU; c >= 0; c-- {
			if startMask.IsSet(c) {
				return c
			}
		}
	}
	return Spread
}

// Current returns the CPU the process is gathered on, Spread, or -2 when
// a failed move left it unknown.
func Current() int {
	return int(current.Load())
}

// Set gathers every thread of the process on cpu, or spreads them over
// the starting mask again (cpu Spread). It does nothing when the process
// is there already, and reports whether the process is now where it was
// asked to be. A cpu outside the starting mask is not taken: the process
// is spread instead. A mask the kernel refuses for a thread leaves the
// process spread, or, if even that cannot be done, in a state the next
// Set repairs.
//
// The runtime's GOMAXPROCS follows: 1 while gathered (two Ps on one CPU
// would only take turns), and the runtime's default again once spread or
// after a failed move (runtime.SetDefaultGOMAXPROCS, which also resumes
// its own updates, and ignores a GOMAXPROCS environment variable: lda's
// listener and workers run with an empty environment). Without this the
// runtime would follow the mask by itself, but only at its next periodic
// check, up to a second later.
func Set(cpu int) bool {
	mu.Lock()
	defer mu.Unlock()
	ok := true
	if cpu != Spread && (!started || cpu < 0 || cpu > MaxCPU || !startMask.IsSet(cpu)) {
		cpu, ok = Spread, false
	}
	if cpu == Current() {
		return ok
	}
	set := startMask
	if cpu != Spread {
		set.Zero()
		set.Set(cpu)
	}
	if err := applyAll(&set); err != nil {
		current.Store(unknown)
		if cpu != Spread && applyAll(&startMask) == nil {
			current.Store(Spread)
		}
		// The runtime works its default out from the mask of the
		// thread that asks: let that one be spread.
		runtime.LockOSThread()
		setThread(0, &startMask)
		runtime.SetDefaultGOMAXPROCS()
		runtime.UnlockOSThread()
		return false
	}
	current.Store(int32(cpu))
	if cpu == Spread {
		runtime.SetDefaultGOMAXPROCS()
	} else {
		runtime.GOMAXPROCS(1)
	}
	return ok
}

// Spawn calls start, which forks a child (exec.Cmd.Start), on a thread
// whose mask is the starting one, so that the child (a delivery program,
// getent, the redirect command) is spread whatever this process is:
// clone(2) copies the mask of the calling thread, and a child gathered
// with its parent would stay there, since no later spread reaches it.
// Spawns run side by side; a move waits for them. start must not call
// Set. A thread whose mask cannot be put back marks the process unknown,
// for the next Set to repair.
func Spawn(start func() error) error {
	mu.RLock()
	defer mu.RUnlock()
	if !started || Current() == Spread {
		return start()
	}
	// Gathered, or unknown after a failed move: either way the child
	// gets the starting mask, and this thread the gathered one back.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	setThread(0, &startMask)
	defer func() {
		if cpu := Current(); cpu >= 0 {
			var s unix.CPUSet
			s.Set(cpu)
			if setThread(0, &s) != nil {
				current.Store(unknown)
			}
		}
	}()
	return start()
}

// setThread is sched_setaffinity(2) on one thread (0: the calling one); a
// hook for tests.
var setThread = unix.SchedSetaffinity

// listThreads lists the process's thread ids; a hook for tests.
var listThreads = threads

// applyAll sets the mask of every thread in /proc/self/task. It reads
// the list again until a reading finds no thread it has not set (at most
// eight readings): a thread that a thread not yet set makes meanwhile
// copies the old mask, and the next reading finds it. It sets every
// thread it can and returns the first error; a thread that ends meanwhile
// (ESRCH) is no error.
func applyAll(set *unix.CPUSet) error {
	done := map[int]bool{}
	var first error
	for reading := 0; reading < 8; reading++ {
		tids, err := listThreads()
		if err != nil {
			return err
		}
		fresh := 0
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			fresh++
			done[tid] = true
			if err := setThread(tid, set); err != nil && err != unix.ESRCH && first == nil {
				first = err
			}
		}
		if fresh == 0 {
			break
		}
	}
	return first
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
