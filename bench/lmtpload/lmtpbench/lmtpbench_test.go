package lmtpbench

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// headerValue returns the value of the first header field name in msg.
func headerValue(t *testing.T, msg []byte, name string) string {
	t.Helper()
	head, _, ok := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no end of header in %q", msg)
	}
	for _, l := range strings.Split(string(head), "\r\n") {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return v
		}
	}
	t.Fatalf("no %s header in %q", name, head)
	return ""
}

func TestMessageChecksumMatchesHeader(t *testing.T) {
	for _, size := range []int{0, 100, 300, 1024, 4097, 102400} {
		for n := range 20 {
			m := NewMessage("run1", n, size, []string{"u1@bench.test", "u2@bench.test"})
			_, body, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
			s := sha256.Sum256(body)
			got := hex.EncodeToString(s[:])
			if h := headerValue(t, m.Data, "X-Bench-Sum"); h != got || m.Sum != got {
				t.Fatalf("size %d n %d: header sum %s, field %s, actual %s", size, n, h, m.Sum, got)
			}
			if !bytes.Equal(body, m.Body) {
				t.Fatalf("Body is not the part after the header")
			}
			// Spelt out here, not through ID: the checker finds messages by
			// this exact form.
			if id := headerValue(t, m.Data, "X-Bench-Id"); id != "run1-"+strconv.Itoa(n) {
				t.Fatalf("X-Bench-Id %q", id)
			}
			if mid := headerValue(t, m.Data, "Message-ID"); mid != "<run1-"+strconv.Itoa(n)+"@bench.test>" {
				t.Fatalf("Message-ID %q", mid)
			}
		}
	}
}

func TestMessageSizeAndShape(t *testing.T) {
	for _, size := range []int{512, 1000, 1024, 1025, 1026, 1027, 1028, 2048, 102400} {
		for n := range 50 {
			m := NewMessage("sz", n, size, []string{"benchu1@bench.test"})
			if len(m.Data) != size {
				t.Fatalf("size %d n %d: message is %d bytes", size, n, len(m.Data))
			}
			checkLines(t, m.Data)
		}
	}
	// Too small for the header: the header and one body line.
	m := NewMessage("tiny", 1, 10, []string{"benchu1@bench.test"})
	if !bytes.HasSuffix(m.Data, []byte("\r\n\r\nBench message tiny-1.\r\n")) {
		t.Fatalf("tiny message %q", m.Data)
	}
}

// checkLines requires CRLF line ends only, printable ASCII, lines of at
// most 78 characters.
func checkLines(t *testing.T, data []byte) {
	t.Helper()
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		t.Fatalf("no final CRLF")
	}
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\r\n"), "\r\n") {
		if len(l) > 78 {
			t.Fatalf("line of %d characters: %q", len(l), l)
		}
		for _, c := range []byte(l) {
			if c < ' ' || c > '~' {
				t.Fatalf("byte %#x in line %q", c, l)
			}
		}
	}
}

func TestBodyExercisesQuotingAndStuffing(t *testing.T) {
	m := NewMessage("q", 7, 1024, []string{"benchu1@bench.test"})
	body := "\r\n" + string(m.Body)
	for _, want := range []string{"\r\nFrom ", "\r\n>From ", "\r\n.a", "\r\n.\r\n", "\r\n..", "\r\n\r\nFrom "} {
		if !strings.Contains(body, want) {
			t.Errorf("1 KiB body lacks a line starting %q", want)
		}
	}
}

func TestMessageDeterministic(t *testing.T) {
	a := NewMessage("det", 3, 4096, []string{"a@bench.test"})
	b := NewMessage("det", 3, 4096, []string{"a@bench.test"})
	c := NewMessage("det", 4, 4096, []string{"a@bench.test"})
	if !bytes.Equal(a.Data, b.Data) {
		t.Fatal("same id, different messages")
	}
	if a.Sum == c.Sum {
		t.Fatal("different ids, same body")
	}
}

func TestDotStuffRoundTrip(t *testing.T) {
	cases := [][]byte{
		[]byte(""),
		[]byte(".\r\n"),
		[]byte("a\r\n.\r\n..\r\n.x\r\nb"),
		[]byte("no final line end"),
	}
	for n := range 30 {
		cases = append(cases, NewMessage("ds", n, 2000, []string{"a@bench.test"}).Data)
	}
	for _, data := range cases {
		wire := DotStuff(data)
		if !bytes.HasSuffix(wire, []byte("\r\n.\r\n")) && !bytes.Equal(wire, []byte(".\r\n")) {
			t.Fatalf("no terminator: %q", wire)
		}
		// The only line that is a single dot is the terminator.
		if i := bytes.Index(wire, []byte("\r\n.\r\n")); i >= 0 && i+5 != len(wire) {
			t.Fatalf("early terminator at %d in %q", i, wire)
		}
		got, ok := DotUnstuff(wire)
		want := data
		if len(want) > 0 && !bytes.HasSuffix(want, []byte("\r\n")) {
			want = append(slices.Clone(want), '\r', '\n')
		}
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("round trip of %q: got %q, %v", data, got, ok)
		}
	}
	if _, ok := DotUnstuff([]byte("a\r\n..\r\n")); ok {
		t.Fatal("unterminated data accepted")
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	for p, want := range map[float64]int{50: 50, 90: 90, 99: 99, 100: 100, 0.5: 1, 99.5: 100} {
		if got := Percentile(s, p); got != time.Duration(want)*time.Millisecond {
			t.Errorf("p%v = %v, want %dms", p, got, want)
		}
	}
	if got := Percentile([]time.Duration{7, 3, 5}, 50); got != 5 {
		t.Errorf("median of 3,5,7 = %v", got)
	}
	if Percentile(nil, 50) != 0 {
		t.Error("percentile of nothing")
	}
}

// spinSink keeps TestProcessCPU's arithmetic from being optimised away.
var spinSink int

func TestProcessCPU(t *testing.T) {
	// Work done on another goroutine (another thread) counts as well: the
	// figure is the whole process's, as lmtpload's connections and feeds
	// run on many.
	c0 := ProcessCPU()
	if c0 <= 0 {
		t.Fatalf("ProcessCPU() = %v at the start of a test binary", c0)
	}
	done := make(chan time.Duration)
	go func() {
		deadline := time.Now().Add(20 * time.Second)
		x := 1
		for time.Now().Before(deadline) {
			for range 100000 {
				x = x*31 + 7
			}
			if d := ProcessCPU() - c0; d >= 20*time.Millisecond {
				spinSink = x
				done <- d
				return
			}
		}
		done <- 0
	}()
	if d := <-done; d < 20*time.Millisecond {
		t.Fatalf("20 s of spinning added %v of CPU time", d)
	}
	var r Result
	r.SetCPU(c0)
	if r.CPUms < 20 {
		t.Fatalf("SetCPU: %.3f ms, want at least the 20 ms spent", r.CPUms)
	}
	r.OK = 4
	var b strings.Builder
	if err := r.Write(&b, false); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("own cpu:       %.1f ms (%.3f ms per delivery)", r.CPUms, r.CPUms/4); !strings.Contains(b.String(), want) {
		t.Errorf("text output lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	none := Result{CPUms: 3}
	if err := none.Write(&b, false); err != nil {
		t.Fatal(err)
	}
	if want := "own cpu:       3.0 ms (no delivery)"; !strings.Contains(b.String(), want) {
		t.Errorf("a run without deliveries: text output lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	if err := r.Write(&b, true); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`"cpu_ms":%v`, r.CPUms); !strings.Contains(b.String(), want) {
		t.Errorf("JSON lacks %s: %s", want, b.String())
	}
}

func TestPercentileDoesNotReorder(t *testing.T) {
	s := []time.Duration{3, 1, 2}
	Percentile(s, 50)
	if !slices.Equal(s, []time.Duration{3, 1, 2}) {
		t.Fatalf("input reordered: %v", s)
	}
}

func TestRecipients(t *testing.T) {
	users := []string{"a", "b", "c"}
	if got := Recipients(users, 0, 1); !slices.Equal(got, []string{"a"}) {
		t.Fatal(got)
	}
	if got := Recipients(users, 4, 1); !slices.Equal(got, []string{"b"}) {
		t.Fatal(got)
	}
	if got := Recipients(users, 1, 2); !slices.Equal(got, []string{"c", "a"}) {
		t.Fatal(got)
	}
	if got := Recipients(users, 0, 5); !slices.Equal(got, []string{"a", "b", "c", "a", "b"}) {
		t.Fatal(got)
	}
	// Over a run every user gets the same share.
	count := map[string]int{}
	for k := range 30 {
		for _, u := range Recipients(users, k, 2) {
			count[u]++
		}
	}
	if count["a"] != 20 || count["b"] != 20 || count["c"] != 20 {
		t.Fatal(count)
	}
}

// TestFeed: feeds sharing one counter hand out every message number below
// the total exactly once, each with what prepare made of it, and a
// stopped feed hands out nothing more.
func TestFeed(t *testing.T) {
	for _, tc := range []struct {
		name         string
		feeds, total int
	}{
		{"one feed", 1, 50},
		{"eight feeds", 8, 1000},
		{"more feeds than messages", 8, 3},
		{"no messages", 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var next atomic.Int64
			seen := make([]int, tc.total)
			var mu sync.Mutex
			var wg sync.WaitGroup
			for range tc.feeds {
				f := NewFeed(&next, tc.total, func(k int) string { return ID("feed", k) })
				wg.Go(func() {
					for k, v, ok := f.Next(); ok; k, v, ok = f.Next() {
						if v != ID("feed", k) {
							t.Errorf("message %d came with %q", k, v)
						}
						mu.Lock()
						seen[k]++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			for k, n := range seen {
				if n != 1 {
					t.Errorf("message %d handed out %d times", k, n)
				}
			}
		})
	}
	t.Run("stopped", func(t *testing.T) {
		var next atomic.Int64
		f := NewFeed(&next, 100, func(k int) int { return k })
		if k, _, ok := f.Next(); !ok || k != 0 {
			t.Fatalf("first message %d, %v", k, ok)
		}
		f.Stop()
		// At most the message being prepared at the Stop is still handed out.
		n := 0
		for _, _, ok := f.Next(); ok; _, _, ok = f.Next() {
			n++
		}
		if n > 1 || next.Load() > 2 {
			t.Fatalf("after Stop: %d more handed out, %d claimed", n, next.Load())
		}
	})
}

// TestBodies: a pooled message is well formed (its body's sum is the one
// its header gives, its wire form is exactly DotStuff of it), its bench
// id is its own, and the pool's bodies differ from one another.
func TestBodies(t *testing.T) {
	for _, tc := range []struct {
		name       string
		size, pool int
		rcpts      []string
	}{
		{"1 KiB", 1024, 4, []string{"benchu1@bench.test"}},
		{"100 KiB, ten recipients", 102400, 3, []string{"benchu1@bench.test", "benchu2@bench.test", "benchu3@bench.test", "benchu4@bench.test", "benchu5@bench.test", "benchu6@bench.test", "benchu7@bench.test", "benchu8@bench.test", "benchu9@bench.test", "benchu10@bench.test"}},
		{"tiny", 10, 2, []string{"u@bench.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewBodies("run", tc.size, tc.rcpts, tc.pool)
			ids := map[string]bool{}
			sums := map[string]bool{}
			for n := range 3 * tc.pool {
				m, wire := p.Message(n, tc.rcpts)
				if m.ID != ID("run", n) || ids[m.ID] {
					t.Fatalf("message %d: id %q", n, m.ID)
				}
				ids[m.ID] = true
				s := sha256.Sum256(m.Body)
				if got := hex.EncodeToString(s[:]); got != m.Sum || !bytes.Contains(m.Data, []byte("X-Bench-Sum: "+got+"\r\n")) {
					t.Fatalf("message %d: body sum %s, message says %s", n, got, m.Sum)
				}
				if !bytes.Contains(m.Data, []byte("X-Bench-Id: "+m.ID+"\r\n")) {
					t.Fatalf("message %d: no X-Bench-Id of its own", n)
				}
				if want := DotStuff(m.Data); !bytes.Equal(wire, want) {
					t.Fatalf("message %d: wire form is not DotStuff of the message", n)
				}
				if d := len(m.Data) - tc.size; tc.size >= 1024 && (d < -8 || d > 8) {
					t.Fatalf("message %d: %d bytes for size %d", n, len(m.Data), tc.size)
				}
				sums[m.Sum] = true
			}
			if len(sums) != tc.pool {
				t.Fatalf("%d distinct bodies, want %d", len(sums), tc.pool)
			}
		})
	}
}
