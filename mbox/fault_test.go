package mbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestConcurrentAppends: two goroutines, each with its own handle on the
// directory, append 200 messages each to one mailbox.
func TestConcurrentAppends(t *testing.T) {
	const per = 200
	p, _ := testDir(t)
	body := func(g, i int) string {
		return fmt.Sprintf("Subject: %d-%d\n\nFrom the start\n>From quoted\n>>From twice\nid %d-%d\n", g, i, g, i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := os.Open(p)
			if err != nil {
				errs <- err
				return
			}
			defer d.Close()
			opt := testOptions()
			opt.Locks = DotLock | FcntlLock
			opt.LockTimeout = 30 * time.Second
			for i := range per {
				if _, err := Append(d, "inbox", strings.NewReader(body(g, i)), opt); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	msgs := readAll(t, readFile(t, filepath.Join(p, "inbox")), MboxRD)
	if len(msgs) != 2*per {
		t.Fatalf("%d messages, want %d", len(msgs), 2*per)
	}
	seen := map[string]bool{}
	next := [2]int{}
	for _, m := range msgs {
		var g, i int
		if _, err := fmt.Sscanf(string(m.Body), "Subject: %d-%d", &g, &i); err != nil {
			t.Fatalf("body %q: %v", m.Body, err)
		}
		if string(m.Body) != body(g, i) {
			t.Fatalf("body %q, want %q", m.Body, body(g, i))
		}
		if seen[string(m.Body)] || next[g] != i {
			t.Fatalf("message %d-%d out of order or duplicated", g, i)
		}
		seen[string(m.Body)] = true
		next[g]++
	}
}

// TestFaults injects errors at each stage and requires the mailbox to be
// byte-identical afterwards and the error to map to the right reply.
func TestFaults(t *testing.T) {
	big := strings.Repeat("From x\n"+strings.Repeat("y", 1000)+"\n", 200) // several buffer flushes
	tests := []struct {
		name     string
		existing *string
		stage    string
		nth      int // fail the nth call of the stage (1-based)
		err      error
		code     int
		enhanced string
	}{
		{"ENOSPC at first write", ptr(testFrom + "old\n\n"), "write", 1, unix.ENOSPC, 452, "4.3.1"},
		{"ENOSPC after some writes", ptr(testFrom + "old\n\n"), "write", 3, unix.ENOSPC, 452, "4.3.1"},
		{"EDQUOT after some writes", ptr(testFrom + "old\n\n"), "write", 2, unix.EDQUOT, 552, "5.2.2"},
		{"EIO at write", ptr(testFrom + "old"), "write", 2, unix.EIO, 451, "4.3.0"},
		{"EIO at fsync", ptr(testFrom + "old\n\n"), "sync", 1, unix.EIO, 451, "4.3.0"},
		{"ENOSPC at fsync", ptr(testFrom + "old\n\n"), "sync", 1, unix.ENOSPC, 452, "4.3.1"},
		{"EIO at close", ptr(testFrom + "old\n\n"), "close", 1, unix.EIO, 451, "4.3.0"},
		{"EIO at write, empty mailbox", ptr(""), "write", 2, unix.EIO, 451, "4.3.0"},
		{"EIO at directory fsync of a new mailbox", nil, "dirsync", 1, unix.EIO, 451, "4.3.0"},
		{"EIO at write of a new mailbox", nil, "write", 2, unix.EIO, 451, "4.3.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, d := testDir(t)
			mb := filepath.Join(p, "inbox")
			want := ""
			if tc.existing != nil {
				writeFile(t, mb, *tc.existing)
				want = *tc.existing
			}
			calls := 0
			setHook(t, func(stage string) error {
				if stage == tc.stage {
					calls++
					if calls == tc.nth {
						return tc.err
					}
				}
				return nil
			})
			_, err := Append(d, "inbox", strings.NewReader(big), testOptions())
			if calls < tc.nth {
				t.Fatalf("stage %q reached %d times, want %d", tc.stage, calls, tc.nth)
			}
			wantMapped(t, err, tc.code, tc.enhanced)
			if !errors.Is(err, tc.err) {
				t.Errorf("error %v does not wrap %v", err, tc.err)
			}
			if got := readFile(t, mb); got != want {
				t.Errorf("mailbox not restored: %d bytes, want %d", len(got), len(want))
			}
			if _, err := os.Lstat(mb + ".lock"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dot-lock left behind")
			}
			// The next delivery works and starts cleanly: nothing the
			// failed append left in its (pooled) buffers reaches it.
			faultHook = nil
			if _, err := Append(d, "inbox", strings.NewReader("next\n"), testOptions()); err != nil {
				t.Fatal(err)
			}
			got := readFile(t, mb)
			if !strings.HasPrefix(got, want) || strings.TrimLeft(got[len(want):], "\n") != testFrom+"next\n\n" {
				t.Errorf("after the failure, the mailbox is %q, want %q, blank lines, then only the next message", got, want)
			}
		})
	}
}

type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	f.n--
	return f.r.Read(p)
}

func TestMessageReadError(t *testing.T) {
	p, d := testDir(t)
	mb := filepath.Join(p, "inbox")
	const original = testFrom + "old\n\n"
	writeFile(t, mb, original)
	body := &failingReader{r: strings.NewReader(strings.Repeat("z", 300000)), n: 3, err: io.ErrUnexpectedEOF}
	_, err := Append(d, "inbox", body, testOptions())
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v", err)
	}
	wantMapped(t, err, 451, "4.3.0")
	if got := readFile(t, mb); got != original {
		t.Errorf("mailbox not restored (%d bytes)", len(got))
	}
}

// TestEFBIG: RLIMIT_FSIZE makes the write fail with EFBIG (Go ignores
// SIGXFSZ); the mailbox is truncated back and the reply is 552 5.2.2.
func TestEFBIG(t *testing.T) {
	p, d := testDir(t)
	mb := filepath.Join(p, "inbox")
	original := testFrom + strings.Repeat("o", 10000) + "\n\n"
	writeFile(t, mb, original)
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := unix.Rlimit{Cur: 100000, Max: old.Max}
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip("setrlimit:", err)
	}
	_, err := Append(d, "inbox", strings.NewReader(strings.Repeat("x\n", 200000)), testOptions())
	if rerr := unix.Setrlimit(unix.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatal(rerr)
	}
	if !errors.Is(err, unix.EFBIG) {
		t.Fatalf("got %v, want EFBIG", err)
	}
	wantMapped(t, err, 552, "5.2.2")
	if got := readFile(t, mb); got != original {
		t.Errorf("mailbox not restored (%d bytes)", len(got))
	}
}

// partial simulates a writer that died after the From_ line and half the
// body, returning the Progress it would have reported.
func partial(t *testing.T, mb string) Progress {
	t.Helper()
	dev, ino, size := stat(t, mb)
	f, err := os.OpenFile(mb, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(testFrom + "Subject: half\n\nthe first half of the bo"); err != nil {
		t.Fatal(err)
	}
	return Progress{Offset: size, Dev: dev, Ino: ino, FromLine: testFrom}
}

func TestRecover(t *testing.T) {
	const original = testFrom + "old\n\n"
	opt := testOptions()
	opt.Create = false
	tests := []struct {
		name      string
		after     func(t *testing.T, d *os.File, mb string, pr *Progress) // runs after the partial write
		truncated bool
		mismatch  bool
		want      func(partialFile string) string
	}{
		{name: "partial write undone", truncated: true,
			want: func(string) string { return original }},
		{name: "another message appended afterwards", mismatch: true,
			after: func(t *testing.T, d *os.File, mb string, pr *Progress) {
				if _, err := Append(d, "inbox", strings.NewReader("later\n"), opt); err != nil {
					t.Fatal(err)
				}
			},
			want: func(s string) string { return s }},
		{name: "From_ line differs", mismatch: true,
			after: func(t *testing.T, d *os.File, mb string, pr *Progress) {
				pr.FromLine = "From bob@example.org Tue Mar  5 07:08:09 2024\n"
			},
			want: func(s string) string { return s }},
		{name: "offset inside the old message", mismatch: true,
			after: func(t *testing.T, d *os.File, mb string, pr *Progress) { pr.Offset = 0 },
			want:  func(s string) string { return s }},
		{name: "another file", mismatch: true,
			after: func(t *testing.T, d *os.File, mb string, pr *Progress) { pr.Ino++ },
			want:  func(s string) string { return s }},
		{name: "died inside the From_ line", truncated: true,
			after: func(t *testing.T, d *os.File, mb string, pr *Progress) {
				if err := os.Truncate(mb, pr.Offset+10); err != nil {
					t.Fatal(err)
				}
			},
			want: func(string) string { return original }},
		{name: "a different partial From_ line", mismatch: true,
			after: func(t *testing.T, d *os.File, mb string, pr *Progress) {
				if err := os.Truncate(mb, pr.Offset+10); err != nil {
					t.Fatal(err)
				}
				pr.FromLine = "From bob@example.org Tue Mar  5 07:08:09 2024\n"
			},
			want: func(s string) string { return s }},
		{name: "nothing written beyond the offset",
			after: func(t *testing.T, d *os.File, mb string, pr *Progress) {
				if err := os.Truncate(mb, pr.Offset); err != nil {
					t.Fatal(err)
				}
			},
			want: func(string) string { return original }},
		{name: "dot-lock of the dead writer is broken", truncated: true,
			after: func(t *testing.T, d *os.File, mb string, pr *Progress) {
				cmd := exec.Command("/bin/true")
				if err := cmd.Run(); err != nil {
					t.Skip(err)
				}
				writeFile(t, mb+".lock", fmt.Sprintf("%d %s\n", cmd.Process.Pid, hostname()))
			},
			want: func(string) string { return original }},
	}
	// These cases write the partial message by hand, as a writer that
	// sets no append intent would: Recover's own checks, as on a file
	// system without user attributes. TestIntent covers the intents.
	noIntents(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, d := testDir(t)
			mb := filepath.Join(p, "inbox")
			writeFile(t, mb, original)
			pr := partial(t, mb)
			if tc.after != nil {
				tc.after(t, d, mb, &pr)
			}
			before := readFile(t, mb)
			o := opt
			o.LockTimeout = 500 * time.Millisecond
			truncated, err := Recover(d, "inbox", pr, o)
			if tc.mismatch != errors.Is(err, ErrRecoverMismatch) || (!tc.mismatch && err != nil) {
				t.Fatalf("error %v, mismatch expected: %v", err, tc.mismatch)
			}
			if truncated != tc.truncated {
				t.Errorf("truncated = %v", truncated)
			}
			if got, want := readFile(t, mb), tc.want(before); got != want {
				t.Errorf("mailbox:\n got %q\nwant %q", got, want)
			}
			if _, err := os.Lstat(mb + ".lock"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dot-lock left behind")
			}
		})
	}
	t.Run("attacks apply to Recover too", func(t *testing.T) {
		p, d := testDir(t)
		victim := filepath.Join(t.TempDir(), "victim")
		writeFile(t, victim, original+testFrom+"half")
		dev, ino, _ := stat(t, victim)
		symlink(t, victim, filepath.Join(p, "inbox"))
		_, err := Recover(d, "inbox", Progress{Offset: int64(len(original)), Dev: dev, Ino: ino, FromLine: testFrom}, opt)
		wantStatus(t, err, 450, "4.2.0")
		if got := readFile(t, victim); got != original+testFrom+"half" {
			t.Errorf("victim changed")
		}
	})
	t.Run("invalid progress", func(t *testing.T) {
		_, d := testDir(t)
		for _, tc := range []struct {
			name string
			pr   Progress
		}{
			{"negative offset", Progress{Offset: -1, FromLine: testFrom}},
			{"From line without From", Progress{FromLine: "x\n"}},
			{"From line of two lines", Progress{FromLine: "From a\nb\n"}},
			{"From line without newline", Progress{FromLine: "From a"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := Recover(d, "inbox", tc.pr, opt)
				wantStatus(t, err, 501, "5.5.4")
			})
		}
	})
}

// TestRecoverKilledWriter runs a real append in a child process, kills it
// with SIGKILL in the middle of writing (its dot-lock stays behind), and
// recovers with the Progress it reported.
func TestRecoverKilledWriter(t *testing.T) {
	if os.Getenv("LDA_MBOX_HELPER") != "" {
		t.Skip("helper")
	}
	p, _ := testDir(t)
	mb := filepath.Join(p, "inbox")
	const original = testFrom + "old\n\n"
	writeFile(t, mb, original)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperKilledAppend$")
	cmd.Env = append(os.Environ(), "LDA_MBOX_HELPER="+p)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	var pr Progress
	if err := json.Unmarshal(line, &pr); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	// The helper blocks after its first write; wait until data is there.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, _, size := stat(t, mb); size > int64(len(original)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("helper wrote nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if _, err := os.Lstat(mb + ".lock"); err != nil {
		t.Fatalf("the killed writer's dot-lock should still be there: %v", err)
	}
	if got := readFile(t, mb); !strings.HasPrefix(got, original+testFrom) {
		t.Fatalf("unexpected partial file %.100q", got)
	}
	d, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	opt := testOptions()
	opt.LockTimeout = time.Second
	truncated, err := Recover(d, "inbox", pr, opt)
	if err != nil || !truncated {
		t.Fatalf("Recover = %v, %v", truncated, err)
	}
	if got := readFile(t, mb); got != original {
		t.Errorf("mailbox %q, want %q", got, original)
	}
}

// TestHelperKilledAppend is the child of TestRecoverKilledWriter.
func TestHelperKilledAppend(t *testing.T) {
	p := os.Getenv("LDA_MBOX_HELPER")
	if p == "" {
		t.Skip("only run as a helper process")
	}
	d, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	writes := 0
	faultHook = func(stage string) error {
		if stage == "write" {
			writes++
			if writes == 2 {
				time.Sleep(time.Hour) // wait to be killed
			}
		}
		return nil
	}
	opt := testOptions()
	opt.Progress = func(pr Progress) {
		b, _ := json.Marshal(pr)
		os.Stdout.Write(append(b, '\n'))
	}
	Append(d, "inbox", strings.NewReader(strings.Repeat("From body\n", 20000)), opt)
	t.Fatal("not killed")
}

// TestNoRetryAfterFsyncError: after a failed fsync, Append reports the
// error; it does not try again and report success.
func TestNoRetryAfterFsyncError(t *testing.T) {
	_, d := testDir(t)
	syncs := 0
	setHook(t, func(stage string) error {
		if stage == "sync" {
			syncs++
			return unix.EIO
		}
		return nil
	})
	if _, err := Append(d, "inbox", strings.NewReader("x\n"), testOptions()); !errors.Is(err, unix.EIO) {
		t.Fatalf("got %v", err)
	}
	if syncs != 1 {
		t.Errorf("fsync attempted %d times", syncs)
	}
}

// TestAppendReusesBuffers: a warm worker appends message after message, and
// each append used to allocate its two 64 KiB buffers afresh, which made
// the worker collect garbage every few dozen deliveries. The buffers now
// come from a pool. The race detector's pool drops a quarter of what is
// put back, hence the margin: without the pool an append allocates 128 KiB.
func TestAppendReusesBuffers(t *testing.T) {
	_, d := testDir(t)
	opt := testOptions()
	opt.Locks = FcntlLock
	body := strings.Repeat("a line of a message\n", 50)
	const n = 50
	appendOnce := func() {
		if _, err := Append(d, "inbox", strings.NewReader(body), opt); err != nil {
			t.Fatal(err)
		}
	}
	appendOnce()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		appendOnce()
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 64<<10 {
		t.Errorf("an append allocates %d bytes, want at most 64 KiB", per)
	}
}

// BenchmarkAppend appends 1 KiB with a dot-lock and fcntl (Postfix's
// default for /var/mail), with fcntl alone (what lda's benchmarks
// configure, since the worker cannot write /var/mail), and with fcntl
// and the mailbox held from one append to the next (a warm worker).
func BenchmarkAppend(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), 16) // 1 KiB
	for _, locks := range []struct {
		name  string
		locks Locking
		held  bool
	}{{"dotlock+fcntl", DotLock | FcntlLock, false}, {"fcntl", FcntlLock, false}, {"fcntl+held", FcntlLock, true}} {
		b.Run(locks.name, func(b *testing.B) {
			_, d := testDir(b)
			opt := testOptions()
			opt.Locks = locks.locks
			if locks.held {
				var h Held
				defer h.Close()
				opt.Held = &h
			}
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := Append(d, "inbox", bytes.NewReader(body), opt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLockWait: an append finds the mailbox locked (fcntl) by
// another delivery, which lets it go after about 300 us, the time of an
// fsync on the disk; late-us is the median time from that release to the
// waiting append's taking the lock.
func BenchmarkLockWait(b *testing.B) {
	base, d := testDir(b)
	p := filepath.Join(base, "inbox")
	writeFile(b, p, "")
	holder, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer holder.Close()
	opt := testOptions()
	opt.Locks = FcntlLock
	var locked time.Time
	setHook(b, func(stage string) error {
		if stage == "locked" {
			locked = time.Now()
		}
		return nil
	})
	var late []time.Duration
	for b.Loop() {
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		if err := unix.FcntlFlock(holder.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			b.Fatal(err)
		}
		var released time.Time
		done := make(chan struct{})
		go func() {
			defer close(done)
			for start := time.Now(); time.Since(start) < 300*time.Microsecond; {
			}
			released = time.Now()
			un := unix.Flock_t{Type: unix.F_UNLCK}
			unix.FcntlFlock(holder.Fd(), unix.F_OFD_SETLK, &un)
		}()
		if _, err := Append(d, "inbox", strings.NewReader("x\n"), opt); err != nil {
			b.Fatal(err)
		}
		<-done
		late = append(late, locked.Sub(released))
	}
	slices.Sort(late)
	b.ReportMetric(float64(late[len(late)/2].Microseconds()), "late-us")
}

func BenchmarkQuote(b *testing.B) {
	var body bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&body, "line %d of a message with some text in it\n", i)
		if i%50 == 0 {
			body.WriteString("From the quoted line\n>From another\n")
		}
	}
	b.SetBytes(int64(body.Len()))
	bw := bufio.NewWriterSize(io.Discard, bufSize)
	for b.Loop() {
		qw := newQuoteWriter(bw, MboxRD)
		qw.Write(body.Bytes())
		qw.Close()
		bw.Flush()
	}
}
