package lmtpbench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"syscall"
	"time"
)

// Percentile returns the p-th percentile (0 < p <= 100) of samples by the
// nearest-rank method: the smallest sample such that at least p percent
// of all samples are less than or equal to it. samples need not be
// sorted; it is 0 for no samples.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Result is the outcome of one benchmark run, in the same form for every
// tool.
type Result struct {
	Tool     string `json:"tool"`
	ID       string `json:"id"`
	Mode     string `json:"mode"`
	Conns    int    `json:"conns"`
	Messages int    `json:"messages"`
	Size     int    `json:"size"`
	Rcpts    int    `json:"rcpts"`

	WallSeconds  float64 `json:"wall_s"`
	MessagesDone int     `json:"messages_done"` // messages whose every recipient got its final reply
	OK           int     `json:"ok"`            // recipient deliveries acknowledged with 2xx
	Tempfail     int     `json:"tempfail"`      // 4xx replies (RCPT or after DATA)
	Permfail     int     `json:"permfail"`      // 5xx replies (RCPT or after DATA)
	Dropped      int     `json:"dropped"`       // recipients without a final reply (broken connection, timeout)

	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	MessagesPerSec   float64 `json:"messages_per_s"`
	P50ms            float64 `json:"p50_ms"`
	P90ms            float64 `json:"p90_ms"`
	P99ms            float64 `json:"p99_ms"`

	// CPUms is the CPU time the tool itself used over the run, all its
	// threads together (connections, feeds, message generation), set by
	// the tool from ProcessCPU: what the client costs the machine, which
	// every agent measured shares its CPUs with.
	CPUms float64 `json:"cpu_ms"`
}

// ProcessCPU is the CPU time (user and system) this process has used so
// far, all its threads together (getrusage RUSAGE_SELF); 0 if it cannot
// be read.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// SetCPU records the CPU time used since cpu0 (a ProcessCPU reading).
func (r *Result) SetCPU(cpu0 time.Duration) {
	r.CPUms = float64(ProcessCPU()-cpu0) / float64(time.Millisecond)
}

// Finish fills in the rates and percentiles from the wall time and the
// latencies of the completed messages.
func (r *Result) Finish(wall time.Duration, latencies []time.Duration) {
	r.WallSeconds = wall.Seconds()
	if r.WallSeconds > 0 {
		r.DeliveriesPerSec = float64(r.OK) / r.WallSeconds
		r.MessagesPerSec = float64(r.MessagesDone) / r.WallSeconds
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r.P50ms = ms(Percentile(latencies, 50))
	r.P90ms = ms(Percentile(latencies, 90))
	r.P99ms = ms(Percentile(latencies, 99))
}

// perDelivery is ms spread over ok deliveries, for the text report.
func perDelivery(ms float64, ok int) string {
	if ok == 0 {
		return "no delivery"
	}
	return fmt.Sprintf("%.3f ms per delivery", ms/float64(ok))
}

// Write prints r as text, or as one JSON object on one line.
func (r *Result) Write(w io.Writer, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintf(w, `%s id=%s mode=%s conns=%d messages=%d size=%d rcpts=%d
wall:          %.3f s
deliveries/s:  %.1f
messages/s:    %.1f
latency ms:    p50 %.2f  p90 %.2f  p99 %.2f
recipients:    ok %d  4xx %d  5xx %d  dropped %d
own cpu:       %.1f ms (%s)
`, r.Tool, r.ID, r.Mode, r.Conns, r.Messages, r.Size, r.Rcpts,
		r.WallSeconds, r.DeliveriesPerSec, r.MessagesPerSec,
		r.P50ms, r.P90ms, r.P99ms,
		r.OK, r.Tempfail, r.Permfail, r.Dropped,
		r.CPUms, perDelivery(r.CPUms, r.OK))
	return err
}
