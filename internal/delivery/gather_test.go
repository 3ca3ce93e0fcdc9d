package delivery

import (
	"fmt"
	"strings"
	"testing"

	"lda/internal/affinity"
)

// TestGatherer drives the decision with scripted deliveries: "b" begins
// one (its worker's CPU is checked against the next expected value), "e"
// ends the oldest one still in flight. The hooks record every move of the
// listener.
func TestGatherer(t *testing.T) {
	const S = affinity.Spread
	for _, tc := range []struct {
		name   string
		calm   int
		script string // b and e, one per step
		cpus   []int  // what each b returns, in order
		moves  string // the listener's moves: "g1" gathered on 1, "s" spread
		refuse bool   // the kernel refuses the gathering
	}{
		{"gathers after calm deliveries", 3, "bebebebe", []int{S, S, 1, 1}, "g1", false},
		{"an overlap spreads at once", 2, "bebebbee", []int{S, 1, 1, S}, "g1 s", false},
		{"gathers again after calm", 2, "bbeebebebe", []int{S, S, S, 1, 1}, "g1", false},
		{"spread, calm restarts", 2, "bebebbeebebe", []int{S, 1, 1, S, S, 1}, "g1 s g1", false},
		{"parallel never gathers", 2, "bbbeeebbeebbee", []int{S, S, S, S, S, S, S}, "", false},
		{"a refused gathering stays spread", 2, "bebebebe", []int{S, S, S, S}, "", true},
		{"default calm", 0, strings.Repeat("be", DefaultGatherCalm+1), append(spreadN(DefaultGatherCalm-1), 1, 1), "g1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var moves []string
			g := &Gatherer{Calm: tc.calm, where: func() int { return 1 }, set: func(cpu int) bool {
				if cpu == S {
					moves = append(moves, "s")
					return true
				}
				if tc.refuse {
					return false
				}
				moves = append(moves, fmt.Sprintf("g%d", cpu))
				return true
			}}
			want := tc.cpus
			var got []int
			for _, step := range tc.script {
				if step == 'b' {
					got = append(got, g.begin())
				} else {
					g.end()
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("CPUs %v, want %v", got, want)
			}
			if m := strings.Join(moves, " "); m != tc.moves {
				t.Errorf("moves %q, want %q", m, tc.moves)
			}
			if g.inflight != 0 {
				t.Errorf("%d still in flight", g.inflight)
			}
		})
	}
}

func spreadN(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = affinity.Spread
	}
	return s
}

// TestGathererNil: a listener without one never gathers.
func TestGathererNil(t *testing.T) {
	var g *Gatherer
	if cpu := g.begin(); cpu != affinity.Spread {
		t.Fatalf("nil Gatherer gave CPU %d", cpu)
	}
	g.end()
}
