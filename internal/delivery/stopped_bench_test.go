package delivery

import (
	"os"
	"testing"
)

// BenchmarkStopped is the check made before every job that a warm worker
// is not stopped: reading /proc/PID/stat by name, as the pool did, and one
// pread of the descriptor the pool now keeps per worker.
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
