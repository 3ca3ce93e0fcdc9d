package delivery

import (
	"sync"

	"lda/internal/affinity"
)

// DefaultGatherCalm is how many direct deliveries in a row must each find
// no other in flight before the listener gathers (Gatherer.Calm).
const DefaultGatherCalm = 32

// unsure is the Gatherer's state after a move that failed: the next job
// that finds another in flight spreads the listener (again).
const unsure = -2

// Gatherer decides, in the listener, where its direct deliveries run:
// gathered on one CPU, the listener and the worker both, while deliveries
// come one at a time; spread over every CPU as soon as two overlap
// (package affinity says why). It gathers on the highest CPU of the
// listener's starting mask (affinity.Last) after Calm direct jobs in a
// row that each found no other in flight, and spreads at the first that
// finds one. A job is a direct worker's deliver, filter or envelope job
// (one at RCPT time with Sieve, one after DATA). A delivery that root
// takes over, which it does only when it runs as many workers as it
// allows (that is, under load), counts only while the listener asks for
// a worker. A nil Gatherer never gathers.
//
// The lock is held while the listener moves (affinity.Set: two or more
// readings of /proc/self/task, one system call per thread, a GOMAXPROCS
// change, and a wait for any child being started, affinity.Spawn), so
// that a second job waits for the move to end before it decides; moves
// come at most once per Calm jobs.
type Gatherer struct {
	Calm int // 0: DefaultGatherCalm

	mu       sync.Mutex
	inflight int
	calm     int // jobs in a row that found no other in flight
	cpu      int // where the listener is gathered, affinity.Spread, or unsure
	init     bool

	// Hooks for tests: affinity.Set and affinity.Last.
	set   func(cpu int) bool
	where func() int
}

// begin counts a job in flight and returns the CPU its worker is to run
// on, or affinity.Spread. Each begin is followed by one end.
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
			g.cpu = affinity.Spread
			if !g.set(affinity.Spread) {
				g.cpu = unsure
			}
		}
		return affinity.Spread
	}
	if g.cpu == affinity.Spread || g.cpu == unsure {
		need := g.Calm
		if need <= 0 {
			need = DefaultGatherCalm
		}
		if g.calm++; g.calm < need {
			return affinity.Spread
		}
		g.calm = 0
		switch cpu := g.where(); {
		case cpu == affinity.Spread: // nowhere to gather
		case g.set(cpu):
			g.cpu = cpu
		default:
			// A failed move may have left threads anywhere: the
			// next overlap spreads them (affinity.Set repairs).
			g.cpu = unsure
		}
	}
	if g.cpu < 0 {
		return affinity.Spread
	}
	return g.cpu
}

// end counts a job begun by begin as done.
func (g *Gatherer) end() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.inflight--
	g.mu.Unlock()
}
