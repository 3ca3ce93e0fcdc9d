package delivery

import (
	"os"
	"testing"
)

// BenchmarkStopped is the check that a warm worker is not stopped, made
// once a job's answer is stopLook late (before every job until the
// seventeenth round): reading /proc/PID/stat by name, as the pool first
// did, and one pread of the descriptor the pool keeps per worker.
func BenchmarkStopped(b *testing.B) {
	pid := os.Getpid()
	b.Run("readfile", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if stopped(pid) {
				b.Fatal("this process is stopped?")
			}
		}
	})
	b.Run("pread", func(b *testing.B) {
		w := (&warm{remote: &remote{pid: pid}}).openStat()
		if w.stat < 0 {
			b.Skip("no /proc")
		}
		defer w.closeStat()
		for i := 0; i < b.N; i++ {
			if w.stopped() {
				b.Fatal("this process is stopped?")
			}
		}
	})
}
