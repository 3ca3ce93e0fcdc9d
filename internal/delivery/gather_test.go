package delivery

import (
	"fmt"
	"strings"
	"sync"
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
		moves  string // the listener's moves asked for: "g1" gather on 1, "s" spread; "!" refused
		refuse string // "gather": every gathering is refused; "spread": the first spread is
	}{
		{"gathers after calm deliveries", 3, "bebebebe", []int{S, S, 1, 1}, "g1", ""},
		{"an overlap spreads at once", 2, "bebebbee", []int{S, 1, 1, S}, "g1 s", ""},
		{"gathers again after calm", 2, "bbeebebebe", []int{S, S, S, 1, 1}, "g1", ""},
		{"spread, calm restarts", 2, "bebebbeebebe", []int{S, 1, 1, S, S, 1}, "g1 s g1", ""},
		{"parallel never gathers", 2, "bbbeeebbeebbee", []int{S, S, S, S, S, S, S}, "", ""},
		{"a refused gathering stays spread, and spreads at the next overlap", 2, "bebebebbee", []int{S, S, S, S, S}, "g1! g1! s", "gather"},
		{"a refused spread is tried again at the next overlap", 2, "bebebbeebbee", []int{S, 1, 1, S, S, S}, "g1 s! s", "spread"},
		{"default calm", 0, strings.Repeat("be", DefaultGatherCalm+1), append(spreadN(DefaultGatherCalm-1), 1, 1), "g1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var moves []string
			spreads := 0
			g := &Gatherer{Calm: tc.calm, where: func() int { return 1 }, set: func(cpu int) bool {
				m, ok := "s", true
				if cpu == S {
					spreads++
					ok = !(tc.refuse == "spread" && spreads == 1)
				} else {
					m, ok = fmt.Sprintf("g%d", cpu), tc.refuse != "gather"
				}
				if !ok {
					m += "!"
				}
				moves = append(moves, m)
				return ok
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

// TestGathererConcurrent: begins and ends from many goroutines at once
// (run with -race) leave nothing in flight, and a listener that saw
// overlaps ends spread.
func TestGathererConcurrent(t *testing.T) {
	var mu sync.Mutex
	where := affinity.Spread
	g := &Gatherer{Calm: 2, where: func() int { return 1 }, set: func(cpu int) bool {
		mu.Lock()
		where = cpu
		mu.Unlock()
		return true
	}}
	for i := 0; i < 3; i++ { // gathered first
		g.begin()
		g.end()
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for j := 0; j < 200; j++ {
				g.begin()
				g.end()
			}
		}()
	}
	g.begin() // held through the storm: every other job overlaps it
	close(start)
	wg.Wait()
	g.end()
	if g.inflight != 0 {
		t.Fatalf("%d in flight", g.inflight)
	}
	if where != affinity.Spread {
		t.Fatalf("listener on %d after overlapping jobs", where)
	}
}

// TestGathererNil: a listener without one never gathers.
func TestGathererNil(t *testing.T) {
	var g *Gatherer
	if cpu := g.begin(); cpu != affinity.Spread {
		t.Fatalf("nil Gatherer gave CPU %d", cpu)
	}
	g.end()
}
