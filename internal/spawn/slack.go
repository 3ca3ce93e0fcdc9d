package spawn

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultTimerSlack is the timer slack our children get unless the
// configuration says otherwise (lda.yaml timer_slack).
//
// Why: a Go process that wakes from idle restarts its runtime's sysmon
// thread, which then polls every 20 µs for as long as the process is busy.
// A worker is busy for about a millisecond per delivery, most of it in
// fsync(2), so sysmon sleeps and wakes about ten times per delivery, and
// on a virtual machine each of those wake-ups is a costly context switch.
// With a slack of 1 ms the kernel may merge or defer those wake-ups by up
// to that much; nothing in a worker or the listener needs timers finer
// than that (their own timeouts are seconds). It is the knob systemd
// exposes as TimerSlackNSec=. DESIGN.md and bench/RESULTS.md give the
// figures.
const DefaultTimerSlack = time.Millisecond

// MaxTimerSlack bounds the configured slack: beyond sysmon's own longest
// sleep (10 ms) a larger slack saves nothing and only makes timers late.
const MaxTimerSlack = 10 * time.Millisecond

// startWithSlack calls start, which forks, on a thread whose timer slack
// (prctl(2) PR_SET_TIMERSLACK) is slack, so that the child gets it: clone
// copies the slack of the calling thread, execve keeps it, and every
// thread the child makes copies it in turn. The parent's thread gets its
// own slack back afterwards. slack 0 leaves the child the parent's.
func startWithSlack(slack time.Duration, start func() error) error {
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
