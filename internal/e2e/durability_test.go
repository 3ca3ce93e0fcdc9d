package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lda/mbox"
)

// readMbox parses path strictly and returns the unquoted bodies.
func readMbox(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := mbox.NewReader(f, mbox.MboxRD)
	var bodies [][]byte
	for {
		m, err := r.Next()
		if err == io.EOF {
			return bodies
		}
		if err != nil {
			t.Fatalf("%s does not parse after %d messages: %v", path, len(bodies), err)
		}
		bodies = append(bodies, m.Body)
	}
}

// trickyBody is a message whose body holds lines that mbox must quote.
func trickyBody(worker, i int) []byte {
	return []byte(fmt.Sprintf("Subject: w%d m%d\n\nFrom the start of a line\n>From already quoted\n>>From twice\nFrom\nid=%d/%d\n%s\n",
		worker, i, worker, i, strings.Repeat("x", i%97)))
}

// TestConcurrentMbox: two workers deliver 200 messages each into one mbox
// at the same time; the mbox then holds exactly 400 intact messages.
func TestConcurrentMbox(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	f.mkdirAs(u, filepath.Join(u.Home, "mail"))
	box := filepath.Join(u.Home, "mail", "inbox")
	const per = 200
	var wg sync.WaitGroup
	errs := make(chan string, 2*per)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				r := f.deliver(u, trickyBody(w, i), "-no-headers", "-dest", "mbox:"+box)
				if r.exit != 0 {
					errs <- fmt.Sprintf("worker %d message %d: exit %d %s", w, i, r.exit, r.stderr)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	bodies := readMbox(t, box)
	if len(bodies) != 2*per {
		t.Fatalf("mbox holds %d messages, want %d", len(bodies), 2*per)
	}
	seen := map[string]bool{}
	for _, b := range bodies {
		m := regexp.MustCompile(`(?m)^Subject: w(\d+) m(\d+)$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("message without its subject: %q", b)
		}
		w, _ := strconv.Atoi(string(m[1]))
		i, _ := strconv.Atoi(string(m[2]))
		if want := trickyBody(w, i); !bytes.Equal(b, want) {
			t.Fatalf("message w%d m%d not byte-exact:\n got %q\nwant %q", w, i, b, want)
		}
		key := string(m[0])
		if seen[key] {
			t.Fatalf("%s delivered twice", key)
		}
		seen[key] = true
	}
}

// smallFS mounts a tmpfs of the given size at base/small, with a directory
// for u, and allows u's mbox and Maildir there.
func smallFS(t *testing.T, f *fixture, size string) string {
	t.Helper()
	dir := filepath.Join(f.base, "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	f.mkdirAs(f.u1, filepath.Join(dir, f.u1.Name))
	f.writePolicy(strings.Replace(defaultPolicy, "allow:\n", "allow:\n  - {mbox: {{BASE}}/small/%u/**}\n  - {maildir: {{BASE}}/small/%u/**}\n", 1))
	return filepath.Join(dir, f.u1.Name)
}

func TestENOSPC(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	dir := smallFS(t, f, "1m")
	box := filepath.Join(dir, "inbox")
	if r := f.deliver(u, message("first", "small\n"), "-dest", "mbox:"+box); r.exit != 0 {
		t.Fatalf("first delivery: exit %d %s", r.exit, r.stderr)
	}
	before := snapshot(t, box)
	big := message("big", strings.Repeat("0123456789abcdef\n", 2<<20/17*2))

	t.Run("mbox", func(t *testing.T) {
		r := f.deliver(u, big, "-dest", "mbox:"+box)
		if r.exit != 75 || !strings.Contains(r.stderr, "452 4.3.1") {
			t.Fatalf("exit %d %q, want 75 and 452 4.3.1", r.exit, r.stderr)
		}
		if after := snapshot(t, box); !bytes.Equal(before, after) {
			t.Fatalf("mbox changed: %d bytes before, %d after", len(before), len(after))
		}
	})
	t.Run("maildir", func(t *testing.T) {
		md := filepath.Join(dir, "Maildir")
		r := f.deliver(u, big, "-dest", "maildir:"+md)
		if r.exit != 75 || !strings.Contains(r.stderr, "452 4.3.1") {
			t.Fatalf("exit %d %q, want 75 and 452 4.3.1", r.exit, r.stderr)
		}
		for _, sub := range []string{"new", "cur", "tmp"} {
			ents, err := os.ReadDir(filepath.Join(md, sub))
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 0 {
				t.Fatalf("%s/ holds %d entries after ENOSPC", sub, len(ents))
			}
		}
		// And the space is usable again: a small message goes through.
		if r := f.deliver(u, message("after", "ok\n"), "-dest", "maildir:"+md); r.exit != 0 {
			t.Fatalf("small delivery after ENOSPC: exit %d %s", r.exit, r.stderr)
		}
	})
}

// TestFileSizeLimit: RLIMIT_FSIZE makes writes fail with EFBIG (Go ignores
// SIGXFSZ): 552 5.2.2, exit 73, mbox truncated back.
func TestFileSizeLimit(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	f.mkdirAs(u, filepath.Join(u.Home, "mail"))
	box := filepath.Join(u.Home, "mail", "inbox")
	if r := f.deliver(u, message("first", "small\n"), "-dest", "mbox:"+box); r.exit != 0 {
		t.Fatalf("first delivery: exit %d %s", r.exit, r.stderr)
	}
	before := snapshot(t, box)
	args := []string{"--fsize=200000", f.bin, "deliver", "-policy", f.policy, "-log", f.log, "-d", u.Name, "-dest", "mbox:" + box}
	cmd := exec.Command("prlimit", args...)
	cmd.Stdin = bytes.NewReader(message("big", strings.Repeat("y", 150000)+"\n"))
	// The spool file (root's, in /tmp) is under the same limit: keep the
	// message below it, and the mbox plus message above it.
	testutilWriteFill(t, box, u)
	before = snapshot(t, box)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 73 || !strings.Contains(string(out), "552 5.2.2") {
		t.Fatalf("err %v, output %q; want exit 73 and 552 5.2.2", err, out)
	}
	if after := snapshot(t, box); !bytes.Equal(before, after) {
		t.Fatalf("mbox changed: %d bytes before, %d after", len(before), len(after))
	}
}

// testutilWriteFill grows the mbox to about 100 kB with ordinary messages,
// so that the next 150 kB message crosses a 200 kB file size limit.
func testutilWriteFill(t *testing.T, box string, u interface{}) {
	t.Helper()
	fh, err := os.OpenFile(box, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	for i := 0; i < 100; i++ {
		fmt.Fprintf(fh, "From filler@example.org Sun Nov 22 05:00:00 2026\nSubject: fill %d\n\n%s\n\n", i, strings.Repeat("f", 1000))
	}
}

// workerPid finds the running `lda worker` of uid.
func workerPid(bin string, uid int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || string(cmdline) != bin+"\x00worker\x00" {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name()), &st) == nil && int(st.Uid) == uid {
			return pid
		}
	}
	return 0
}

// TestWorkerKilledMidAppend: the user (or the OOM killer) kills a worker
// while it appends. lda answers 4xx, and the mbox is cut back to its old
// size by a recovery worker, so the next delivery starts cleanly.
func TestWorkerKilledMidAppend(t *testing.T) {
	f := newFixture(t)
	u := f.u1
	f.mkdirAs(u, filepath.Join(u.Home, "mail"))
	box := filepath.Join(u.Home, "mail", "inbox")
	if r := f.deliver(u, message("first", "small\n"), "-dest", "mbox:"+box); r.exit != 0 {
		t.Fatalf("first delivery: exit %d %s", r.exit, r.stderr)
	}
	before := snapshot(t, box)
	// 90 MiB: under -max-size, and long enough to be caught mid-write.
	big := message("big", strings.Repeat("From line to quote\nplain line of text\n", 90<<20/37))
	var killedMidway bool
	for attempt := 0; attempt < 3 && !killedMidway; attempt++ {
		cmd := exec.Command(f.bin, "deliver", "-policy", f.policy, "-log", f.log, "-d", u.Name, "-dest", "mbox:"+box)
		cmd.Stdin = bytes.NewReader(big)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			fi, err := os.Stat(box)
			if err == nil && fi.Size() > int64(len(before)) {
				if pid := workerPid(f.bin, u.UID); pid > 0 && fi.Size() < int64(len(before)+len(big)) {
					syscall.Kill(pid, syscall.SIGKILL)
					killedMidway = true
				}
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if !killedMidway {
			t.Logf("attempt %d: the append finished before the kill (exit %d); trying again", attempt, code)
			if code == 0 {
				testutilTruncate(t, box, int64(len(before)))
			}
			continue
		}
		if code != 75 || !strings.Contains(stderr.String(), "451 4.3.0") {
			t.Fatalf("exit %d %q, want 75 and 451 4.3.0", code, stderr.String())
		}
	}
	if !killedMidway {
		t.Skip("could not catch the worker mid-append in 3 attempts")
	}
	if after := snapshot(t, box); !bytes.Equal(before, after) {
		t.Fatalf("mbox not restored: %d bytes before, %d after", len(before), len(after))
	}
	if r := f.deliver(u, message("next", "clean\n"), "-dest", "mbox:"+box); r.exit != 0 {
		t.Fatalf("next delivery: exit %d %s", r.exit, r.stderr)
	}
	if n := len(readMbox(t, box)); n != 2 {
		t.Fatalf("mbox holds %d messages, want 2", n)
	}
	if !strings.Contains(strings.Join(f.logLines(), "\n"), "msg=\"mbox recovery\"") {
		t.Fatalf("no recovery line in the log:\n%s", strings.Join(f.logLines(), "\n"))
	}
}

func testutilTruncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// TestFsyncBeforeSuccess uses strace to show, for Maildir and mbox, that
// the message file is fsync'ed (and, for Maildir, linked into new/ and new/
// fsync'ed) before the worker reports 250 and before lda exits 0.
func TestFsyncBeforeSuccess(t *testing.T) {
	f := newFixture(t)
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace not installed (.ci/run installs it)")
	}
	u := f.u1
	f.mkdirAs(u, filepath.Join(u.Home, "mail"))
	for _, tc := range []struct {
		name string
		dest string
	}{
		{"maildir", "maildir:" + filepath.Join(u.Home, "Maildir")},
		{"mbox", "mbox:" + filepath.Join(u.Home, "mail", "inbox")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trace := filepath.Join(f.base, tc.name+".trace")
			cmd := exec.Command("strace", "-f", "-qq", "-s", "64", "-o", trace,
				"-e", "trace=openat,openat2,fsync,fdatasync,linkat,renameat2,write,exit_group",
				f.bin, "deliver", "-policy", f.policy, "-log", f.log, "-f", "sender@example.org", "-d", u.Name, "-dest", tc.dest)
			cmd.Stdin = bytes.NewReader(message("traced", "body\n"))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("traced delivery: %v %s", err, out)
			}
			lines := joinResumed(strings.Split(string(snapshot(t, trace)), "\n"))
			if os.Getenv("LDA_DUMP_TRACE") != "" {
				os.WriteFile("/tmp/"+tc.name+".trace", snapshot(t, trace), 0o644)
			}
			find := func(from int, re string) (int, []string) {
				rx := regexp.MustCompile(re)
				for i := from; i < len(lines); i++ {
					if m := rx.FindStringSubmatch(lines[i]); m != nil {
						return i, m
					}
				}
				return -1, nil
			}
			var fsyncFile int
			if tc.name == "maildir" {
				iOpen, m := find(0, `openat\((\d+), "(\d+\.[^"]+)", O_WRONLY\|O_CREAT\|O_EXCL[^)]*\)\s+= (\d+)`)
				if iOpen < 0 {
					t.Fatalf("no O_EXCL create in tmp/:\n%s", snapshot(t, trace))
				}
				fd := m[3]
				fsyncFile, _ = find(iOpen, `fsync\(`+fd+`\)\s+= 0`)
				iLink, lm := find(fsyncFile+1, `linkat\(\d+, "`+regexp.QuoteMeta(m[2])+`", (\d+), "[^"]+", 0\)\s+= 0|renameat2\(\d+, "`+regexp.QuoteMeta(m[2])+`", (\d+), .*RENAME_NOREPLACE\)\s+= 0`)
				if fsyncFile < 0 || iLink < 0 {
					t.Fatalf("no fsync of the file before its link into new/ (fsync at %d, link at %d)", fsyncFile, iLink)
				}
				newfd := lm[1] + lm[2]
				iDirSync, _ := find(iLink, `fsync\(`+newfd+`\)\s+= 0`)
				if iDirSync < 0 {
					t.Fatalf("new/ (fd %s) not fsync'ed after the link", newfd)
				}
				fsyncFile = iDirSync
			} else {
				iOpen, _ := find(0, `openat2?\(\d+, "inbox", .*\)\s+= (\d+)`)
				if iOpen < 0 {
					t.Fatalf("mbox open not found:\n%s", snapshot(t, trace))
				}
				// The writer may use a duplicate of the opened descriptor:
				// follow the one that carries the From_ line.
				iWrite, wm := find(iOpen, `write\((\d+), "From sender@example.org`)
				if iWrite < 0 {
					t.Fatalf("mbox write missing:\n%s", snapshot(t, trace))
				}
				fsyncFile, _ = find(iWrite+1, `fsync\(`+wm[1]+`\)\s+= 0`)
				if fsyncFile < 0 {
					t.Fatalf("mbox (fd %s) not fsync'ed after the write", wm[1])
				}
			}
			iStatus, _ := find(0, `write\(1, "status 250`)
			if iStatus < 0 || iStatus < fsyncFile {
				t.Fatalf("status 250 reported at line %d, before the last fsync at line %d", iStatus, fsyncFile)
			}
			// exit_group never returns: strace shows it as "exit_group(0)
			// = ?" or, when another thread's call comes first, unfinished.
			iExit, _ := find(iStatus, `exit_group\(0(\)| <unfinished)`)
			if iExit < 0 {
				t.Fatalf("no exit_group(0) after the status line")
			}
		})
	}
}

// joinResumed puts back together the system calls that strace -f splits
// when another traced thread or process makes a call meanwhile:
//
//	5557  fsync(10 <unfinished ...>
//	5553  write(1, "status 250 ...", 20) = 20
//	5557  <... fsync resumed>)             = 0
//
// becomes "5557  fsync(10)  = 0" at the place of the resumed line, which
// is when the call returned. An unfinished line that is never resumed
// (exit_group) stays where it is.
func joinResumed(lines []string) []string {
	unfinished := regexp.MustCompile(`^(\d+)\s+(.*) <unfinished \.\.\.>$`)
	resumed := regexp.MustCompile(`^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$`)
	pending := map[string]int{} // pid -> index of its unfinished line in out
	var out []string
	for _, l := range lines {
		if m := unfinished.FindStringSubmatch(l); m != nil {
			pending[m[1]] = len(out)
			out = append(out, l)
			continue
		}
		if m := resumed.FindStringSubmatch(l); m != nil {
			if i, ok := pending[m[1]]; ok {
				start := unfinished.FindStringSubmatch(out[i])[2]
				if strings.HasPrefix(start, m[2]+"(") {
					delete(pending, m[1])
					out[i] = "" // the call is placed where it returned
					out = append(out, m[1]+"  "+start+m[3])
					continue
				}
			}
		}
		out = append(out, l)
	}
	return out
}

func TestJoinResumed(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{
			name: "split by another process",
			in:   []string{"5557  fsync(10 <unfinished ...>", `5553  write(1, "status 250", 10) = 10`, "5557  <... fsync resumed>)             = 0"},
			want: []string{"", `5553  write(1, "status 250", 10) = 10`, "5557  fsync(10)             = 0"},
		},
		{
			name: "whole lines untouched",
			in:   []string{"5557  fsync(10)  = 0", "5557  fsync(7)  = 0"},
			want: []string{"5557  fsync(10)  = 0", "5557  fsync(7)  = 0"},
		},
		{
			name: "exit_group never resumed",
			in:   []string{"5557  exit_group(0 <unfinished ...>", "5553  +++ exited with 0 +++"},
			want: []string{"5557  exit_group(0 <unfinished ...>", "5553  +++ exited with 0 +++"},
		},
		{
			name: "resumed by another pid is not joined",
			in:   []string{"10  fsync(3 <unfinished ...>", "11  <... fsync resumed>) = 0"},
			want: []string{"10  fsync(3 <unfinished ...>", "11  <... fsync resumed>) = 0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := joinResumed(tc.in)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
