// Command hopcost measures what a hop between two processes costs on this
// machine, the unit in which lda's privilege separation is paid: a
// delivery passes from the MTA to the listener, to a worker and back, and
// every pass wakes a process.
//
//	hopcost [-n N] [-idle 0,20us,100us,300us,1ms] [-syscalls N]
//
// It prints the cost of one system call (getppid, the cheapest), then the
// round trip of a small packet over a SOCK_SEQPACKET socket pair, the kind
// lda's listener and workers speak over, to a child process that answers
// at once: back to back, and after both sides have slept for each time in
// -idle. A CPU left idle for a while may take far longer to wake (a deeper
// C-state; on a virtual machine, a halted vCPU that the host must schedule
// again). One delivery over one connection waits some hundreds of
// microseconds for its fsyncs, so its hops are of the second kind. The
// sleeps are timed with a timer slack of 1 ns, and each row gives the
// median sleep actually measured. The last column is how
// often the two processes were on the same CPU when the packet arrived:
// whether the kernel spreads a ping-pong over the CPUs or keeps it on one.
//
// Figures are medians and 90th percentiles of N round trips. Run it on an
// otherwise idle machine; it uses one CPU at a time.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"lda/bench/lmtpload/lmtpbench"
)

// childEnv marks the re-executed child that answers the pings.
const childEnv = "HOPCOST_CHILD"

func main() {
	if os.Getenv(childEnv) == "1" {
		os.Exit(child(3))
	}
	n := flag.Int("n", 2000, "round trips per row")
	idle := flag.String("idle", "0,20us,100us,300us,1ms", "comma-separated times both sides sleep before each round trip")
	calls := flag.Int("syscalls", 200000, "system calls timed for the first row")
	flag.Parse()
	idles, err := parseIdles(*idle)
	if err == nil && (*n < 1 || *calls < 1) {
		err = errors.New("-n and -syscalls must be positive")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hopcost: %v\n", err)
		os.Exit(64) // EX_USAGE
	}
	rep, err := measure(*calls, *n, idles)
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

// row is one line of the report.
type row struct {
	idle     time.Duration // asked for
	slept    time.Duration // the median sleep measured
	p50, p90 time.Duration
	sameCPU  float64 // fraction of round trips with both on one CPU
}

type report struct {
	cpus    int
	syscall time.Duration // per call
	rows    []row
}

func (r *report) write(w io.Writer) {
	fmt.Fprintf(w, "hopcost: %d CPUs, %s\n", r.cpus, runtime.Version())
	fmt.Fprintf(w, "system call (getppid):            %7.2f µs\n", us(r.syscall))
	for _, x := range r.rows {
		what := "round trip, back to back:"
		if x.idle > 0 {
			what = fmt.Sprintf("round trip after %v asleep (%.0f µs):", x.idle, us(x.slept))
		}
		fmt.Fprintf(w, "%-42s p50 %7.1f µs  p90 %7.1f µs  same CPU %3.0f%%\n", what, us(x.p50), us(x.p90), 100*x.sameCPU)
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// measure times calls system calls, then n round trips per idle time to a
// child started from this same binary.
func measure(calls, n int, idles []time.Duration) (*report, error) {
	rep := &report{cpus: runtime.NumCPU()}
	t0 := time.Now()
	for range calls {
		syscall.Getppid()
	}
	rep.syscall = time.Since(t0) / time.Duration(calls)

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
	cmd.Env = []string{childEnv + "=1"}
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	cmd.Stderr = os.Stderr
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return nil, fmt.Errorf("starting the child: %w", err)
	}
	defer func() {
		unix.Shutdown(mine, unix.SHUT_RDWR)
		cmd.Wait()
	}()
	// One OS thread for the whole measurement: the round trip is that of
	// a blocking read, not of the Go scheduler handing work between
	// threads.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Sleeps as asked: the default timer slack (50 µs) would lengthen
	// each of them. Only this thread, which is locked to this goroutine.
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	for _, idle := range idles {
		for range 50 { // warm up
			if _, err := ping(mine); err != nil {
				return nil, err
			}
		}
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
		rep.rows = append(rep.rows, row{
			idle: idle, slept: lmtpbench.Percentile(slept, 50),
			p50: lmtpbench.Percentile(lat, 50), p90: lmtpbench.Percentile(lat, 90),
			sameCPU: float64(same) / float64(n),
		})
	}
	return rep, nil
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
// the other end goes away.
func child(fd int) int {
	runtime.LockOSThread()
	var b [8]byte
	for {
		n, err := unix.Read(fd, b[:])
		if err != nil || n == 0 {
			return 0
		}
		c := getcpu()
		b[0], b[1], b[2], b[3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
		if _, err := unix.Write(fd, b[:4]); err != nil {
			return 0
		}
	}
}

// getcpu is the CPU the calling thread is on (getcpu(2)); -1 if unknown.
func getcpu() int {
	var cpu uint32
	if _, _, e := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0); e != 0 {
		return -1
	}
	return int(cpu)
}
