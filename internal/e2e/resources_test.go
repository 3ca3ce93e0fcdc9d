package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// startDaemonLimits is startDaemon with the configuration's limits line
// replaced by limits (startDaemon writes its own, and lda.yaml refuses a
// key given twice). It restarts the daemon startDaemon brought up with the
// edited file, through the same fixture, so that everything else about
// the configuration stays what every other test uses.
func startDaemonLimits(t *testing.T, f *fixture, limits, extra string) *daemon {
	t.Helper()
	d := startDaemon(t, f, extra)
	// Stop it (drain), then start it again on the edited configuration.
	d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		t.Fatal("lda serve did not exit after SIGTERM")
	}
	cfgPath := filepath.Join(f.base, "lda.yaml")
	cfg := string(snapshot(t, cfgPath))
	re := regexp.MustCompile(`(?m)^limits: .*$`)
	if !re.MatchString(cfg) {
		t.Fatalf("no limits line in the configuration:\n%s", cfg)
	}
	cfg = re.ReplaceAllLiteralString(cfg, "limits: "+limits)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o640); err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(f.bin, "serve", "-config", cfgPath)
	d.cmd.Stderr, d.cmd.Stdout = d.stderr, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// startDaemon's cleanup stops d.cmd, which is now this process.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := resDial(d.socket); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket never came up after the restart:\n%s", d.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d
}

func resDial(path string) (net.Conn, error) { return net.Dial("unix", path) }

// resProcKB returns a "Vm...:" figure (kB) of pid's status, or -1.
func resProcKB(pid int, field string) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// resFDs returns the number of open descriptors of pid, or -1.
func resFDs(pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// resResetHWM makes VmHWM equal to the current RSS (clear_refs 5), so that a
// later VmHWM is the peak of what follows. It reports whether it could.
func resResetHWM(pid int) bool {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0o200) == nil
}

// resWaitFDs polls until pid holds want descriptors, or the deadline passes;
// it returns the last count.
func resWaitFDs(pid, want int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		n := resFDs(pid)
		if n == want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// resDaemonPIDs returns the parent's and the listener's pids.
func resDaemonPIDs(t *testing.T, f *fixture, d *daemon) (parent, listener int) {
	t.Helper()
	return d.cmd.Process.Pid, listenerPid(t, f.bin)
}

// TestIdleConnectionsMemory: 64 sessions that sent LHLO and then wait keep
// the parent and the listener under 40 MB each, and once they are closed
// both processes hold as many descriptors as before.
func TestIdleConnectionsMemory(t *testing.T) {
	f := newFixture(t)
	const conns = 64
	d := startDaemonLimits(t, f, fmt.Sprintf("{connections: %d, recipients: 50, message_size: 1048576, line_length: 4096, idle_timeout: 2m, data_timeout: 2m}", conns+8), "")
	parent, listener := resDaemonPIDs(t, f, d)

	// Warm up with one full session, then take the baseline once the
	// descriptor counts have settled.
	warm := dialLMTP(t, d.socket)
	warm.cmd("LHLO warm.test", "250")
	warm.cmd("QUIT", "221")
	warm.c.Close()
	time.Sleep(300 * time.Millisecond)
	pFD0, lFD0 := resFDs(parent), resFDs(listener)
	pRSS0, lRSS0 := resProcKB(parent, "VmRSS"), resProcKB(listener, "VmRSS")

	var cls []*lmtpClient
	for i := 0; i < conns; i++ {
		cl := dialLMTP(t, d.socket)
		cl.c.SetDeadline(time.Now().Add(2 * time.Minute))
		cl.cmd("LHLO idle"+strconv.Itoa(i)+".test", "250")
		cls = append(cls, cl)
	}
	// Every session is alive and served.
	for _, cl := range cls {
		cl.cmd("NOOP", "250")
	}
	pFD1, lFD1 := resFDs(parent), resFDs(listener)
	pRSS1, lRSS1 := resProcKB(parent, "VmRSS"), resProcKB(listener, "VmRSS")
	pHWM, lHWM := resProcKB(parent, "VmHWM"), resProcKB(listener, "VmHWM")
	t.Logf("%d idle sessions: parent RSS %d -> %d kB (HWM %d), fds %d -> %d; listener RSS %d -> %d kB (HWM %d), fds %d -> %d",
		conns, pRSS0, pRSS1, pHWM, pFD0, pFD1, lRSS0, lRSS1, lHWM, lFD0, lFD1)
	if lFD1 < lFD0+conns {
		t.Errorf("the listener holds %d descriptors with %d sessions open, baseline %d: not all sessions are open", lFD1, conns, lFD0)
	}
	const limitKB = 40 << 10
	if pRSS1 >= limitKB || lRSS1 >= limitKB {
		t.Errorf("RSS with %d idle sessions: parent %d kB, listener %d kB; limit %d kB", conns, pRSS1, lRSS1, limitKB)
	}

	for _, cl := range cls {
		cl.c.Close()
	}
	start := time.Now()
	pFD2 := resWaitFDs(parent, pFD0, 10*time.Second)
	lFD2 := resWaitFDs(listener, lFD0, 10*time.Second)
	t.Logf("after closing: parent fds %d (baseline %d), listener fds %d (baseline %d), settled in %v; RSS parent %d kB, listener %d kB",
		pFD2, pFD0, lFD2, lFD0, time.Since(start).Round(time.Millisecond), resProcKB(parent, "VmRSS"), resProcKB(listener, "VmRSS"))
	if pFD2 != pFD0 || lFD2 != lFD0 {
		t.Errorf("descriptors not back to baseline within 10s: parent %d -> %d, listener %d -> %d", pFD0, pFD2, lFD0, lFD2)
	}
	if t.Failed() {
		t.Logf("daemon log:\n%s", d.stderr)
	}
}

// resLargeBody returns a body of about size bytes with LF line ends: lines of
// printable text, some starting with "." (dot-stuffing) or "From ".
func resLargeBody(size int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
	var b bytes.Buffer
	b.Grow(size + 128)
	line := make([]byte, 0, 80)
	for n := 0; b.Len() < size; n++ {
		line = line[:0]
		switch n % 97 {
		case 13:
			line = append(line, '.')
		case 41:
			line = append(line, "From "...)
		case 71:
			line = append(line, ".."...)
		}
		for len(line) < 76 {
			line = append(line, alpha[r.IntN(len(alpha))])
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// TestLargeMessageMemory: one 50 MB message over LMTP is delivered byte
// for byte, and neither the listener nor the parent grows by more than
// 8 MB while it is received and delivered: messages go to disk, not
// memory.
func TestLargeMessageMemory(t *testing.T) {
	f := newFixture(t)
	const size = 50 << 20
	d := startDaemonLimits(t, f, fmt.Sprintf("{connections: 16, recipients: 50, message_size: %d, line_length: 4096, idle_timeout: 2m, data_timeout: 5m}", size+(4<<20)), "")
	parent, listener := resDaemonPIDs(t, f, d)
	u := f.u1

	header := "From: big@example.org\nSubject: fifty megabytes\n\n"
	body := resLargeBody(size - len(header))
	want := sha256.Sum256(body)

	// Warm up the path with a small message, then take the baseline.
	cl := dialLMTP(t, d.socket)
	cl.c.SetDeadline(time.Now().Add(5 * time.Minute))
	cl.cmd("LHLO big.test", "250")
	cl.cmd("MAIL FROM:<big@example.org>", "250")
	cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "250")
	cl.cmd("DATA", "354")
	fmt.Fprintf(cl.c, "Subject: warm up\r\n\r\nx\r\n.\r\n")
	cl.expect("250 2.0.0")
	time.Sleep(300 * time.Millisecond)
	pRSS0, lRSS0 := resProcKB(parent, "VmRSS"), resProcKB(listener, "VmRSS")
	hwm := resResetHWM(parent) && resResetHWM(listener)

	// Sample VmRSS every 2 ms while the message travels.
	var pPeak, lPeak atomic.Int64
	pPeak.Store(int64(pRSS0))
	lPeak.Store(int64(lRSS0))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			for _, s := range []struct {
				pid  int
				peak *atomic.Int64
			}{{parent, &pPeak}, {listener, &lPeak}} {
				if v := int64(resProcKB(s.pid, "VmRSS")); v > s.peak.Load() {
					s.peak.Store(v)
				}
			}
		}
	}()

	start := time.Now()
	cl.cmd("MAIL FROM:<big@example.org> SIZE="+strconv.Itoa(size), "250")
	cl.cmd("RCPT TO:<"+u.Name+"@example.org>", "250")
	cl.cmd("DATA", "354")
	w := bufio.NewWriterSize(cl.c, 64<<10)
	w.WriteString(strings.ReplaceAll(header, "\n", "\r\n"))
	for rest := body; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i]
		rest = rest[i+1:]
		if len(line) > 0 && line[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(line)
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	rep := cl.expect("250 2.0.0")
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	cl.cmd("QUIT", "221")

	pHWM, lHWM := resProcKB(parent, "VmHWM"), resProcKB(listener, "VmHWM")
	pRSS1, lRSS1 := resProcKB(parent, "VmRSS"), resProcKB(listener, "VmRSS")
	pGrow, lGrow := int(pPeak.Load())-pRSS0, int(lPeak.Load())-lRSS0
	if hwm {
		// The kernel's peak misses nothing between two samples.
		pGrow, lGrow = max(pGrow, pHWM-pRSS0), max(lGrow, lHWM-lRSS0)
	}
	t.Logf("50 MB message: %q in %v", rep, elapsed.Round(time.Millisecond))
	t.Logf("parent: RSS %d kB before, peak sampled %d kB, VmHWM %d kB (reset before: %v), after %d kB: growth %d kB",
		pRSS0, pPeak.Load(), pHWM, hwm, pRSS1, pGrow)
	t.Logf("listener: RSS %d kB before, peak sampled %d kB, VmHWM %d kB (reset before: %v), after %d kB: growth %d kB",
		lRSS0, lPeak.Load(), lHWM, hwm, lRSS1, lGrow)
	const limitKB = 8 << 10
	if pGrow > limitKB || lGrow > limitKB {
		t.Errorf("RSS grew during a 50 MB message: parent %d kB, listener %d kB; limit %d kB", pGrow, lGrow, limitKB)
	}

	// Find the big one among the two delivered messages.
	dir := filepath.Join(u.Home, "Maildir", "new")
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 2 {
		t.Fatalf("Maildir new/ holds %d messages (%v), want 2", len(ents), err)
	}
	found := false
	for _, e := range ents {
		data := snapshot(t, filepath.Join(dir, e.Name()))
		if len(data) < size/2 {
			continue
		}
		found = true
		i := bytes.Index(data, []byte("\n\n"))
		if i < 0 || !bytes.Contains(data[:i], []byte("Delivered-To: "+u.Name+"@example.org\n")) {
			t.Fatalf("delivered message has no trace header block")
		}
		got := sha256.Sum256(data[i+2:])
		t.Logf("delivered %d bytes; body sha256 %s, sent %s", len(data), hex.EncodeToString(got[:8]), hex.EncodeToString(want[:8]))
		if got != want {
			t.Fatalf("delivered body differs from the one sent (%d bytes delivered, %d sent)", len(data)-i-2, len(body))
		}
	}
	if !found {
		t.Fatal("the 50 MB message is not in the Maildir")
	}
	if t.Failed() {
		t.Logf("daemon log:\n%s", d.stderr)
	}
}
