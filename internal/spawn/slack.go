package spawn

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultTimerSlack is the timer slack a worker gets unless the
// configuration says otherwise (lda.yaml timer_slack), and
// DefaultListenerSlack the listener's.
//
// Why: a Go process that wakes from idle restarts its runtime's sysmon
// thread, which then polls every 20 µs for as long as the process is busy.
// A worker is busy for about a millisecond per delivery, most of it in
// fsync(2), and on a virtual machine each of sysmon's wake-ups is a costly
// context switch. The slack lets the kernel defer or merge those wake-ups
// by up to that much: with 1 ms a few per delivery are left, with 10 ms
// sysmon sleeps through several deliveries. It is the knob systemd
// exposes as TimerSlackNSec=.
//
// The listener keeps 1 ms: it runs many goroutines, and the runtime's
// own short sleeps there (3 µs while it steals work from a busy thread,
// 100 µs steps while it stops the world for the GC) stretch to the slack;
// with 10 ms, deliveries with ten recipients over eight connections came
// out 10 % slower. A worker runs one goroutine, so it has no such sleeps;
// its timeouts are seconds, and a wait for an mbox lock sets its own
// slack (mbox/lock.go). DESIGN.md and bench/RESULTS.md give the figures (the fourth
// round for 1 ms, the eleventh for 10 ms).
const (
	DefaultTimerSlack    = 10 * time.Millisecond
	DefaultListenerSlack = time.Millisecond
)

// MaxTimerSlack bounds the configured slack: beyond sysmon's own longest
// sleep (10 ms) a larger slack saves nothing and only makes timers late.
const MaxTimerSlack = 10 * time.Millisecond

// StartWithSlack calls start, which forks, on a thread whose timer slack
// (prctl(2) PR_SET_TIMERSLACK) is slack, so that the child gets it: clone
// copies the slack of the calling thread, execve keeps it, and every
// thread the child makes copies it in turn. The parent's thread gets its
// own slack back afterwards. slack 0 leaves the child the parent's.
// (Exported for bench/rawceiling -serve, whose processes must get their
// slack exactly as lda's do.)
func StartWithSlack(slack time.Duration, start func() error) error {
	if slack <= 0 {
		return start()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil || unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(slack.Nanoseconds()), 0, 0, 0) != nil {
		// Only a cost, never a fault: start the child with the slack
		// it would have had anyway.
		return start()
	}
	defer unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0)
	return start()
}
