package lmtpbench

import (
	"fmt"
	"testing"
)

// BenchmarkMessage is the client's own cost per message in lmtpload and
// rawceiling: generating the message and, for DATA, dot-stuffing it.
func BenchmarkMessage(b *testing.B) {
	for _, size := range []int{1024, 102400} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for n := 0; b.Loop(); n++ {
				m := NewMessage("bench", n, size, []string{"benchu1@bench.test"})
				if len(DotStuff(m.Data)) < size {
					b.Fatal("short wire form")
				}
			}
		})
		b.Run(fmt.Sprintf("size=%d/pooled", size), func(b *testing.B) {
			rcpts := []string{"benchu1@bench.test"}
			p := NewBodies("bench", size, rcpts, 32)
			b.SetBytes(int64(size))
			for n := 0; b.Loop(); n++ {
				if _, wire := p.Message(n, rcpts); len(wire) < size {
					b.Fatal("short wire form")
				}
			}
		})
	}
}
