package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lda/internal/job"
	"lda/internal/testutil"
)

// TestWorkerCredentials checks, from inside a delivery program (credprobe)
// run by the real worker, what threats.md's Privilege section demands of
// the worker and the program: the user's uid and gid in all four fields,
// no supplementary groups, no capabilities, no_new_privs, no inherited
// descriptor and a fixed environment; also under load, and with
// descriptors and environment variables that the MTA leaked to lda. And
// that the worker refuses to run with any root credential.
func TestWorkerCredentials(t *testing.T) {
	f := newFixture(t)
	probe := testutil.Build(t, filepath.Join(f.base, "prog"), "./internal/testprog/credprobe")
	out := filepath.Join(f.base, "out")
	testutil.Must(t, os.Mkdir(out, 0o1777))
	testutil.Must(t, os.Chmod(out, 0o1777))
	wantFds := credBaseline(t, f, probe)
	// bind makes the fixture report to the running subtest.
	bind := func(t *testing.T) func() {
		saved := f.t
		f.t = t
		return func() { f.t = saved }
	}
	probeFile := func(u *testutil.User, suffix string) string {
		return filepath.Join(out, u.Name+".probe"+suffix)
	}

	for _, u := range []*testutil.User{f.u1, f.u2} {
		t.Run("probe as "+u.Name, func(t *testing.T) {
			defer bind(t)()
			os.Remove(probeFile(u, ""))
			msg := message("creds", "probe body\n")
			r := f.deliver(u, msg, "-a", "rcpt+"+u.Name+"@example.org", "-dest", "program:probe")
			if r.exit != 0 {
				t.Fatalf("exit %d: %s", r.exit, r.stderr)
			}
			credCheckProbe(t, snapshot(t, probeFile(u, "")), u, "rcpt+"+u.Name+"@example.org", len(msg), wantFds)
		})
	}

	t.Run("leaked descriptors and environment", func(t *testing.T) {
		defer bind(t)()
		u := f.u1
		os.Remove(probeFile(u, ""))
		secret := filepath.Join(f.base, "secret")
		testutil.WriteFile(t, secret, []byte("root only\n"), 0o600, 0, 0)
		// An MTA that leaks descriptors 3..9 (without close-on-exec) and
		// its environment into lda.
		var leak []*os.File
		for i := 0; i < 7; i++ {
			fh, err := os.Open(secret)
			testutil.Must(t, err)
			defer fh.Close()
			leak = append(leak, fh)
		}
		msg := message("creds", "leak\n")
		r, err := credRun(f, leak, []string{"HOME=/root", "LD_PRELOAD=/nonexistent.so", "SECRET_TOKEN=x", "PATH=/tmp/evil:/usr/bin"}, msg,
			"deliver", "-policy", f.policy, "-log", f.log, "-f", "sender@example.org", "-d", u.Name, "-a", "r@example.org", "-dest", "program:probe")
		if err != nil || r.exit != 0 {
			t.Fatalf("exit %d %v: %s", r.exit, err, r.stderr)
		}
		credCheckProbe(t, snapshot(t, probeFile(u, "")), u, "r@example.org", len(msg), wantFds)
	})

	// The probe sees only its own descriptors, and the worker seals again
	// what it inherited; so look at the running worker and its program
	// from outside: neither may hold a descriptor the MTA leaked to lda.
	t.Run("running worker holds no leaked descriptor", func(t *testing.T) {
		defer bind(t)()
		u := f.u1
		sleeper := filepath.Join(f.base, "progs", "sleeper")
		testutil.WriteFile(t, sleeper, []byte("#!/bin/sh\ncat >/dev/null\nexec sleep 2\n"), 0o755, 0, 0)
		p := strings.Replace(defaultPolicy, "  - {program: probe}\n", "  - {program: probe}\n  - {program: sleeper}\n", 1)
		f.writePolicy(strings.Replace(p, "programs:\n", "programs:\n  sleeper: {argv: ["+sleeper+"], timeout: 20s}\n", 1))
		defer f.writePolicy(defaultPolicy)
		secret := filepath.Join(f.base, "leaked-secret")
		testutil.WriteFile(t, secret, []byte("root only\n"), 0o600, 0, 0)
		var leak []*os.File
		for i := 0; i < 7; i++ {
			fh, err := os.Open(secret)
			testutil.Must(t, err)
			defer fh.Close()
			leak = append(leak, fh)
		}
		type ret struct {
			r   result
			err error
		}
		done := make(chan ret, 1)
		go func() {
			r, err := credRun(f, leak, nil, message("x", "y\n"), "deliver", "-policy", f.policy, "-log", f.log, "-d", u.Name, "-dest", "program:sleeper")
			done <- ret{r, err}
		}()
		var worker int
		var kids []int
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && len(kids) == 0; time.Sleep(20 * time.Millisecond) {
			if worker == 0 {
				worker = credFindWorker(f.bin, u.UID)
			}
			if worker != 0 {
				// The sleeper's shell first runs cat, which comes and
				// goes; wait for the long-lived sleep.
				kids = kids[:0]
				for _, k := range credChildrenOf(worker) {
					if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(k) + "/comm"); strings.TrimSpace(string(comm)) == "sleep" {
						kids = append(kids, k)
					}
				}
			}
		}
		if worker == 0 || len(kids) == 0 {
			t.Fatalf("did not catch the worker (%d) and its program (%v) running", worker, kids)
		}
		for _, pid := range append([]int{worker}, kids...) {
			dir := "/proc/" + strconv.Itoa(pid) + "/fd"
			ents, err := os.ReadDir(dir)
			if err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
			for _, e := range ents {
				if l, _ := os.Readlink(dir + "/" + e.Name()); l == secret {
					t.Errorf("pid %d (worker %d) holds the leaked descriptor as fd %s", pid, worker, e.Name())
				}
			}
		}
		if r := <-done; r.err != nil || r.r.exit != 0 {
			t.Fatalf("exit %d %v: %s", r.r.exit, r.err, r.r.stderr)
		}
	})

	t.Run("20 concurrent deliveries", func(t *testing.T) {
		defer bind(t)()
		const n = 20
		var allow, progs strings.Builder
		for i := 0; i < n; i++ {
			fmt.Fprintf(&allow, "  - {program: probe%d}\n", i)
			fmt.Fprintf(&progs, "  probe%d: {argv: [{{BASE}}/prog/credprobe, \"{{BASE}}/out/%%u.probe%d\"], timeout: 20s}\n", i, i)
		}
		p := strings.Replace(defaultPolicy, "  - {program: probe}\n", "  - {program: probe}\n"+allow.String(), 1)
		f.writePolicy(strings.Replace(p, "programs:\n", "programs:\n"+progs.String(), 1))
		defer f.writePolicy(defaultPolicy)
		us := []*testutil.User{f.u1, f.u2}
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				u := us[i%2]
				r, err := credRun(f, nil, nil, message("load", strconv.Itoa(i)+"\n"),
					"deliver", "-policy", f.policy, "-log", f.log, "-f", "sender@example.org", "-d", u.Name, "-a", "load@example.org", "-dest", "program:probe"+strconv.Itoa(i))
				if err == nil && r.exit != 0 {
					err = fmt.Errorf("exit %d: %s", r.exit, r.stderr)
				}
				errs[i] = err
			}(i)
		}
		wg.Wait()
		for i := 0; i < n; i++ {
			u := us[i%2]
			t.Run("probe"+strconv.Itoa(i), func(t *testing.T) {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				credCheckProbe(t, snapshot(t, probeFile(u, strconv.Itoa(i))), u, "load@example.org", len(message("load", strconv.Itoa(i)+"\n")), wantFds)
			})
		}
	})

	t.Run("worker refuses root", func(t *testing.T) {
		defer bind(t)()
		u := f.u1
		f.mkdirAs(u, filepath.Join(u.Home, "mail"))
		box := filepath.Join(u.Home, "mail", "inbox")
		msg := message("root", "must not be delivered\n")
		for _, tc := range []struct {
			name    string
			setpriv []string // nil: run as root
			gid     int      // gid in the job
		}{
			{"uid 0", nil, u.GID},
			{"euid 0", []string{"--ruid=" + strconv.Itoa(u.UID), "--euid=0", "--regid=" + strconv.Itoa(u.GID), "--clear-groups"}, u.GID},
			{"egid 0", []string{"--reuid=" + strconv.Itoa(u.UID), "--rgid=" + strconv.Itoa(u.GID), "--egid=0", "--clear-groups"}, u.GID},
			{"gid 0", []string{"--reuid=" + strconv.Itoa(u.UID), "--regid=0", "--clear-groups"}, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rec, err := (&job.Job{
					Mode: job.ModeDeliver, User: u.Name, UID: u.UID, GID: tc.gid, Home: u.Home,
					Kind: job.KindMbox, Path: box, Sender: "sender@example.org", Headers: true,
					Policy: f.policy, Size: int64(len(msg)),
				}).Encode()
				testutil.Must(t, err)
				stdout := credRunWorker(t, f, tc.setpriv, rec, msg)
				if !strings.Contains(stdout, "\nstatus 451") {
					t.Fatalf("worker output lacks \"status 451\":\n%s", stdout)
				}
				res, err := job.DecodeResult([]byte(stdout))
				if err != nil {
					t.Fatalf("result: %v\n%s", err, stdout)
				}
				if res.Status.Code != 451 || !strings.Contains(res.Detail, "root credentials") {
					t.Fatalf("status %d %s, detail %q: not refused for its root credential", res.Status.Code, res.Status.Enhanced, res.Detail)
				}
				if _, err := os.Lstat(box); err == nil {
					t.Fatalf("the worker delivered to %s before refusing", box)
				}
			})
		}
	})
}

// credRunWorker runs `lda worker` (through setpriv when args are given) with the
// job on standard input, the message on fd 3 and the policy on fd 4, and
// returns its standard output.
func credRunWorker(t *testing.T, f *fixture, setpriv []string, rec, msg []byte) string {
	t.Helper()
	mf, err := os.CreateTemp("", "lda-msg-")
	testutil.Must(t, err)
	defer os.Remove(mf.Name())
	defer mf.Close()
	_, err = mf.Write(msg)
	testutil.Must(t, err)
	pf, err := os.Open(f.policy)
	testutil.Must(t, err)
	defer pf.Close()
	argv := []string{f.bin, "worker"}
	if setpriv != nil {
		argv = append(append(append([]string{"setpriv"}, setpriv...), "--"), argv...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.Env = []string{}
	cmd.Stdin = bytes.NewReader(rec)
	cmd.ExtraFiles = []*os.File{mf, pf}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("worker hung")
	}
	if err != nil {
		t.Fatalf("worker: %v\nstdout %q\nstderr %q", err, out.String(), errb.String())
	}
	return out.String()
}

// credFindWorker returns the pid of a process running bin as uid, or 0.
func credFindWorker(bin string, uid int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, _ := os.Readlink("/proc/" + e.Name() + "/exe"); exe != bin {
			continue
		}
		st, _ := os.ReadFile("/proc/" + e.Name() + "/status")
		if v, _ := credStatusField(string(st), "Uid"); len(strings.Fields(v)) > 0 && strings.Fields(v)[0] == strconv.Itoa(uid) {
			return pid
		}
	}
	return 0
}

// credChildrenOf returns the pids whose parent is pid.
func credChildrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, _ := os.ReadFile("/proc/" + e.Name() + "/status")
		if v, _ := credStatusField(string(st), "PPid"); v == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

// credRun runs lda with args, leaking extra as descriptors 3, 4, ... and
// env as its environment. Safe for concurrent use (it never calls t).
func credRun(f *fixture, extra []*os.File, env []string, stdin []byte, args ...string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.ExtraFiles = extra
	if env != nil {
		cmd.Env = env
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		return result{}, fmt.Errorf("lda %v hung", args)
	}
	r := result{stderr: errb.String(), stdout: out.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.exit = ee.ExitCode()
	} else if err != nil {
		return r, err
	}
	return r, nil
}

// credSections splits credprobe's output into its "== name" sections;
// the lines before the first one are under "".
func credSections(b []byte) map[string]string {
	m := map[string]string{}
	name := ""
	var cur strings.Builder
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if s, ok := strings.CutPrefix(line, "== "); ok {
			m[name] = cur.String()
			cur.Reset()
			name = strings.TrimSpace(s)
			continue
		}
		cur.WriteString(line)
	}
	m[name] = cur.String()
	return m
}

// credStatusField returns the value of key in a /proc/PID/status text, and
// whether it is there.
func credStatusField(status, key string) (string, bool) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// credBaseline runs credprobe as u1 with nothing but descriptors 0, 1
// and 2 and returns the descriptors it reports. A Go program holds some of
// its own: its ReadDir handle, the runtime's netpoller (epoll, eventfd)
// after its first open, and since Go 1.25 the cgroup CPU limit files
// (container-aware GOMAXPROCS). So "[0 1 2 3]" is not what a clean Go
// probe reports; what it reports when started clean is.
func credBaseline(t *testing.T, f *fixture, probe string) string {
	t.Helper()
	// Whatever this test process inherited (from a CI runner or a shell)
	// must not reach the baseline run.
	ents, err := os.ReadDir("/proc/self/fd")
	testutil.Must(t, err)
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > 2 {
			syscall.CloseOnExec(n)
		}
	}
	dst := filepath.Join(f.base, "out", "baseline.probe")
	cmd := exec.Command("setpriv", "--reuid="+strconv.Itoa(f.u1.UID), "--regid="+strconv.Itoa(f.u1.GID), "--clear-groups", "--", probe, dst)
	cmd.Stdin = strings.NewReader("x")
	cmd.Env = []string{}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("baseline probe: %v\n%s", err, b)
	}
	fds := strings.TrimSpace(credSections(snapshot(t, dst))["fds"])
	if !strings.HasPrefix(fds, "[0 1 2 3") {
		t.Fatalf("baseline probe descriptors %q", fds)
	}
	t.Logf("a clean credprobe holds %s", fds)
	return fds
}

func credCheckProbe(t *testing.T, b []byte, u *testutil.User, rcpt string, msgLen int, wantFds string) {
	t.Helper()
	if b == nil {
		t.Fatal("the probe wrote nothing: it did not run")
	}
	sec := credSections(b)
	hdr := "Return-Path: <sender@example.org>\nDelivered-To: " + rcpt + "\n"
	if want := fmt.Sprintf("message-bytes: %d\n", len(hdr)+msgLen); sec[""] != want {
		t.Errorf("probe saw %q, want %q", sec[""], want)
	}
	uid, gid := strconv.Itoa(u.UID), strconv.Itoa(u.GID)
	for _, who := range []struct{ section, name string }{{"self", "credprobe"}, {"parent", "lda"}} {
		st, ok := sec[who.section]
		if !ok || st == "" {
			t.Errorf("no %q section:\n%s", who.section, b)
			continue
		}
		if name, _ := credStatusField(st, "Name"); name != who.name {
			t.Errorf("%s: Name %q, want %q (is the parent the worker?)", who.section, name, who.name)
		}
		for key, want := range map[string]string{"Uid": uid, "Gid": gid} {
			v, _ := credStatusField(st, key)
			fs := strings.Fields(v)
			if len(fs) != 4 {
				t.Errorf("%s: %s %q: want 4 fields", who.section, key, v)
				continue
			}
			for i, x := range fs {
				if x != want {
					t.Errorf("%s: %s field %d is %s, want %s (%q)", who.section, key, i, x, want, v)
				}
			}
		}
		if v, ok := credStatusField(st, "Groups"); !ok || v != "" {
			t.Errorf("%s: Groups %q (present %v), want none", who.section, v, ok)
		}
		for _, key := range []string{"CapEff", "CapPrm", "CapAmb"} {
			v, ok := credStatusField(st, key)
			n, err := strconv.ParseUint(v, 16, 64)
			if !ok || err != nil || n != 0 {
				t.Errorf("%s: %s %q, want 0", who.section, key, v)
			}
		}
		if v, _ := credStatusField(st, "NoNewPrivs"); v != "1" {
			t.Errorf("%s: NoNewPrivs %q, want 1", who.section, v)
		}
	}
	if fds := strings.TrimSpace(sec["fds"]); fds != wantFds {
		t.Errorf("program descriptors %s, want %s (those of a probe started with only 0, 1, 2)", fds, wantFds)
	}
	want := []string{
		"HOME=" + u.Home,
		"LOGNAME=" + u.Name,
		"PATH=/usr/bin:/bin",
		"RECIPIENT=" + rcpt,
		"SENDER=sender@example.org",
		"USER=" + u.Name,
	}
	if env := strings.TrimSpace(sec["env"]); env != strings.Join(want, "\n") {
		t.Errorf("program environment:\n%s\nwant exactly:\n%s", env, strings.Join(want, "\n"))
	}
}
