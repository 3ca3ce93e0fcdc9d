// Command hopcost measures what a hop between two processes costs on this
// machine, the unit in which lda's privilege separation is paid: a
// delivery passes from the MTA to the listener, to a worker and back, and
// every pass wakes a process.
//
//	hopcost [-n N] [-idle 0,20us,100us,300us,1ms] [-syscalls N]
//	        [-peer blocking,poller] [-child-slack 10ms] [-pages N]
//
// It prints the cost of one system call (getppid, the cheapest), and of
// the first write to a page of fresh anonymous memory (the page fault
// that maps it), against a second write to the same page: a process pays
// the first for every page its heap grows by, and a young lda worker's
// heap grows with every job (-pages such pages, 16 MiB by default). Then
// the
// round trip of a small packet over a SOCK_SEQPACKET socket pair, the kind
// lda's listener and workers speak over, to a child process that answers
// at once: back to back, and after both sides have slept for each time in
// -idle. Each kind of child in -peer gets its rows: "blocking" reads on
// one locked thread, so its round trip is that of a blocking read;
// "poller" reads as lda's listener and workers do, through the Go
// runtime's poller, so its rows add what the runtime does around each
// wake-up (the poller, its sysmon thread). Each row ends with the child's
// CPU time and context switches per round trip, all its threads counted
// (/proc/PID/task/*/schedstat and status). The child runs with the timer
// slack -child-slack, by default the one lda gives its workers.
//
// A CPU left idle for a while may take far longer to wake (a deeper
// C-state; on a virtual machine, a halted vCPU that the host must schedule
// again). One delivery over one connection waits some hundreds of
// microseconds for its fsyncs, so its hops are of the second kind. The
// sleeps are timed with a timer slack of 1 ns, and each row gives the
// median sleep actually measured. "Same CPU" is how often the two
// processes were on the same CPU when the packet arrived: whether the
// kernel spreads a ping-pong over the CPUs or keeps it on one.
//
// Figures are medians and 90th percentiles of N round trips. Run it on an
// otherwise idle machine; it uses one CPU at a time.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"lda/bench/lmtpload/lmtpbench"
	"lda/internal/spawn"
)

// childEnv marks the re-executed child that answers the pings; its
// value is the kind of peer.
const childEnv = "HOPCOST_CHILD"

// The kinds of child.
const (
	peerBlocking = "blocking"
	peerPoller   = "poller"
)

func main() {
	if kind := os.Getenv(childEnv); kind != "" {
		os.Exit(child(kind, 3))
	}
	n := flag.Int("n", 2000, "round trips per row")
	idle := flag.String("idle", "0,20us,100us,300us,1ms", "comma-separated times both sides sleep before each round trip")
	calls := flag.Int("syscalls", 200000, "system calls timed for the first row")
	peer := flag.String("peer", peerBlocking+","+peerPoller, "comma-separated kinds of child: blocking, poller")
	slack := flag.Duration("child-slack", spawn.DefaultTimerSlack, "the child's timer slack (0: the kernel's default)")
	pages := flag.Int("pages", 4096, "pages of fresh memory written for the page-fault row")
	flag.Parse()
	idles, err := parseIdles(*idle)
	var peers []string
	if err == nil {
		peers, err = parsePeers(*peer)
	}
	if err == nil && (*n < 1 || *calls < 1 || *pages < 1 || *slack < 0) {
		err = errors.New("-n, -syscalls and -pages must be positive, -child-slack not negative")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hopcost: %v\n", err)
		os.Exit(64) // EX_USAGE
	}
	rep, err := measure(*calls, *pages, *n, idles, peers, *slack)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hopcost:", err)
		os.Exit(70) // EX_SOFTWARE
	}
	rep.write(os.Stdout)
}

// parseIdles reads "0,20us,1ms".
func parseIdles(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "0" {
			out = append(out, 0)
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("idle time %q", f)
		}
		out = append(out, d)
	}
	return out, nil
}

// parsePeers reads "blocking,poller".
func parsePeers(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		switch f = strings.TrimSpace(f); f {
		case peerBlocking, peerPoller:
			out = append(out, f)
		default:
			return nil, fmt.Errorf("peer %q (blocking or poller)", f)
		}
	}
	return out, nil
}

// row is one line of the report.
type row struct {
	peer     string
	idle     time.Duration // asked for
	slept    time.Duration // the median sleep measured
	p50, p90 time.Duration
	sameCPU  float64 // fraction of round trips with both on one CPU
	// The child's CPU time and context switches per round trip, all its
	// threads; cpu < 0 when the kernel keeps no schedstat.
	cpu      time.Duration
	switches float64
}

type report struct {
	cpus       int
	syscall    time.Duration // per call
	fresh      time.Duration // first write to a page of fresh memory, per page
	again      time.Duration // a second write to each of those pages, per page
	childSlack time.Duration
	rows       []row
}

func (r *report) write(w io.Writer) {
	fmt.Fprintf(w, "hopcost: %d CPUs, %s, child timer slack %v\n", r.cpus, runtime.Version(), r.childSlack)
	fmt.Fprintf(w, "system call (getppid):            %7.2f µs\n", us(r.syscall))
	fmt.Fprintf(w, "fresh page, first write:          %7.2f µs (written again: %.3f µs)\n", us(r.fresh), us(r.again))
	peer := ""
	for _, x := range r.rows {
		if x.peer != peer {
			peer = x.peer
			fmt.Fprintf(w, "child %s:\n", peer)
		}
		what := "round trip, back to back:"
		if x.idle > 0 {
			what = fmt.Sprintf("round trip after %v asleep (%.0f µs):", x.idle, us(x.slept))
		}
		cpu := "    n/a"
		if x.cpu >= 0 {
			cpu = fmt.Sprintf("%7.1f", us(x.cpu))
		}
		fmt.Fprintf(w, "  %-42s p50 %7.1f µs  p90 %7.1f µs  same CPU %3.0f%%  child %s µs CPU, %4.2f switches\n",
			what, us(x.p50), us(x.p90), 100*x.sameCPU, cpu, x.switches)
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// pageCost writes one byte to each of pages pages of a fresh anonymous
// mapping, then once more: the time per page of each pass. The first pass
// takes a page fault per page (the kernel zeroes a page and maps it); the
// second finds them mapped.
func pageCost(pages int) (fresh, again time.Duration, err error) {
	size := pages * os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, 0, fmt.Errorf("mmap: %w", err)
	}
	defer unix.Munmap(mem)
	var d [2]time.Duration
	for pass := range d {
		t0 := time.Now()
		for i := 0; i < size; i += os.Getpagesize() {
			mem[i]++
		}
		d[pass] = time.Since(t0) / time.Duration(pages)
	}
	if mem[0] != 2 {
		return 0, 0, errors.New("a page lost a write")
	}
	return d[0], d[1], nil
}

// measure times calls system calls, the first and second writes to pages
// of fresh memory, then n round trips per idle time to a child of each
// kind in peers, started from this same binary with the timer slack
// childSlack.
func measure(calls, pages, n int, idles []time.Duration, peers []string, childSlack time.Duration) (*report, error) {
	rep := &report{cpus: runtime.NumCPU(), childSlack: childSlack}
	t0 := time.Now()
	for range calls {
		syscall.Getppid()
	}
	rep.syscall = time.Since(t0) / time.Duration(calls)
	var err error
	if rep.fresh, rep.again, err = pageCost(pages); err != nil {
		return nil, err
	}
	// One OS thread for the whole measurement: the round trip is that of
	// a blocking read, not of the Go scheduler handing work between
	// threads.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, peer := range peers {
		rows, err := measurePeer(peer, n, idles, childSlack)
		if err != nil {
			return nil, fmt.Errorf("%s child: %w", peer, err)
		}
		rep.rows = append(rep.rows, rows...)
	}
	return rep, nil
}

// measurePeer runs the rows of one child. The caller's thread is locked.
func measurePeer(peer string, n int, idles []time.Duration, childSlack time.Duration) ([]row, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	mine, theirs := fds[0], os.NewFile(uintptr(fds[1]), "child")
	defer unix.Close(mine)
	self, err := os.Executable()
	if err != nil {
		theirs.Close()
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = []string{childEnv + "=" + peer}
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.Stderr = os.Stderr
	// The child gets the slack of the thread that forks it (this one,
	// locked), as lda's children get root's; then this thread sleeps as
	// asked: the default timer slack (50 µs) would lengthen each sleep.
	if childSlack > 0 {
		unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(childSlack.Nanoseconds()), 0, 0, 0)
	}
	err = cmd.Start()
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	theirs.Close()
	if err != nil {
		return nil, fmt.Errorf("starting the child: %w", err)
	}
	defer func() {
		unix.Shutdown(mine, unix.SHUT_RDWR)
		cmd.Wait()
	}()
	pid := cmd.Process.Pid
	if afterStart != nil {
		afterStart(pid)
	}
	var rows []row
	for _, idle := range idles {
		for range 50 { // warm up
			if _, err := ping(mine); err != nil {
				return nil, err
			}
		}
		cpu0, sw0 := childCost(pid)
		lat := make([]time.Duration, 0, n)
		var slept []time.Duration
		same := 0
		for range n {
			if idle > 0 {
				ts := unix.NsecToTimespec(int64(idle))
				t := time.Now()
				unix.Nanosleep(&ts, nil)
				slept = append(slept, time.Since(t))
			}
			t := time.Now()
			theirCPU, err := ping(mine)
			lat = append(lat, time.Since(t))
			if err != nil {
				return nil, err
			}
			if c := getcpu(); c >= 0 && theirCPU == c {
				same++
			}
		}
		cpu1, sw1 := childCost(pid)
		r := row{
			peer: peer, idle: idle, slept: lmtpbench.Percentile(slept, 50),
			p50: lmtpbench.Percentile(lat, 50), p90: lmtpbench.Percentile(lat, 90),
			sameCPU: float64(same) / float64(n), cpu: -1,
			switches: float64(sw1-sw0) / float64(n),
		}
		if cpu0 >= 0 && cpu1 >= 0 {
			r.cpu = (cpu1 - cpu0) / time.Duration(n)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// afterStart, if set (by a test), is called with the child's pid once it
// runs.
var afterStart func(pid int)

// childCost sums, over the threads of process pid, the time spent on a
// CPU (schedstat; -1 if the kernel keeps none) and the context switches,
// voluntary and not. A thread that ends between the two readings takes
// its share with it; the children here keep theirs.
func childCost(pid int) (time.Duration, int64) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return -1, 0
	}
	var cpu time.Duration
	var switches int64
	for _, t := range tasks {
		if b, err := os.ReadFile(dir + t.Name() + "/schedstat"); err == nil && cpu >= 0 {
			ns, err := strconv.ParseInt(strings.SplitN(string(b), " ", 2)[0], 10, 64)
			if err != nil {
				cpu = -1
			} else {
				cpu += time.Duration(ns)
			}
		} else {
			cpu = -1
		}
		b, err := os.ReadFile(dir + t.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					switches += n
				}
			}
		}
	}
	return cpu, switches
}

// ping sends one packet and returns the CPU the child answered from.
func ping(fd int) (int, error) {
	var b [8]byte
	if _, err := unix.Write(fd, b[:1]); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	n, err := unix.Read(fd, b[:])
	switch {
	case err != nil:
		return 0, fmt.Errorf("read: %w", err)
	case n == 0:
		return 0, errors.New("the child went away")
	case n != 4:
		return 0, fmt.Errorf("the child's answer is %d bytes, not 4", n)
	}
	cpu := int(int32(b[0]) | int32(b[1])<<8 | int32(b[2])<<16 | int32(b[3])<<24)
	if cpu < -1 || cpu >= maxCPU {
		return 0, fmt.Errorf("the child answered from CPU %d", cpu)
	}
	return cpu, nil
}

// maxCPU bounds a CPU number getcpu can give (the kernel's NR_CPUS at most).
const maxCPU = 1 << 16

// child answers every packet on fd with the CPU it is running on, until
// the other end goes away: a blocking child on one locked thread, a
// poller child through the runtime's poller, as lda's processes read.
func child(kind string, fd int) int {
	answer := func(b []byte) []byte {
		c := getcpu()
		b[0], b[1], b[2], b[3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
		return b[:4]
	}
	var b [8]byte
	switch kind {
	case peerBlocking:
		runtime.LockOSThread()
		for {
			n, err := unix.Read(fd, b[:])
			if err != nil || n == 0 {
				return 0
			}
			if _, err := unix.Write(fd, answer(b[:])); err != nil {
				return 0
			}
		}
	case peerPoller:
		c, err := net.FileConn(os.NewFile(uintptr(fd), "parent"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "hopcost child:", err)
			return 1
		}
		for {
			n, err := c.Read(b[:])
			if err != nil || n == 0 {
				return 0
			}
			if _, err := c.Write(answer(b[:])); err != nil {
				return 0
			}
		}
	}
	fmt.Fprintf(os.Stderr, "hopcost child: unknown kind %q\n", kind)
	return 1
}

// getcpu is the CPU the calling thread is on (getcpu(2)); -1 if unknown.
func getcpu() int {
	var cpu uint32
	if _, _, e := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0); e != 0 {
		return -1
	}
	return int(cpu)
}
