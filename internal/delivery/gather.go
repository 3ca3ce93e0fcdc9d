package delivery

import (
	"sync"

	"lda/internal/affinity"
)

// DefaultGatherCalm is how many direct deliveries in a row must each find
// no other in flight before the listener gathers (Gatherer.Calm).
const DefaultGatherCalm = 32

// Gatherer decides, in the listener, where its direct deliveries run:
// gathered on one CPU, the listener and the worker both, while deliveries
// come one at a time; spread over every CPU as soon as two overlap
// (package affinity says why). It gathers after Calm deliveries in a row
// that each found no other in flight, on the CPU the listener runs on
// then, and spreads at the first delivery that finds another. A nil
// Gatherer never gathers.
type Gatherer struct {
	Calm int // 0: DefaultGatherCalm

	mu       sync.Mutex
	inflight int
	calm     int // deliveries in a row that found no other in flight
	cpu      int // where the listener is gathered, or affinity.Spread
	init     bool

	// Hooks for tests: affinity.Set and affinity.CPU.
	set   func(cpu int) bool
	where func() int
}

// begin counts a delivery in flight and returns the CPU its worker is to
// run on, or affinity.Spread. Each begin is followed by one end.
func (g *Gatherer) begin() int {
	if g == nil {
		return affinity.Spread
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.init {
		g.init, g.cpu = true, affinity.Spread
		if g.set == nil {
			g.set = affinity.Set
		}
		if g.where == nil {
			g.where = affinity.Last
		}
	}
	g.inflight++
	if g.inflight > 1 {
		g.calm = 0
		if g.cpu != affinity.Spread {
			g.set(affinity.Spread)
			g.cpu = affinity.Spread
		}
		return affinity.Spread
	}
	if g.cpu == affinity.Spread {
		need := g.Calm
		if need <= 0 {
			need = DefaultGatherCalm
		}
		if g.calm++; g.calm >= need {
			g.calm = 0
			if cpu := g.where(); cpu != affinity.Spread && g.set(cpu) {
				g.cpu = cpu
			}
		}
	}
	return g.cpu
}

// end counts a delivery begun by begin as done.
func (g *Gatherer) end() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.inflight--
	g.mu.Unlock()
}
