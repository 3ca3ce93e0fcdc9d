package spawn

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/testutil"
)

// TestCredentialsOnlyHere guards the rule that no code but this package's
// spawn.go changes credentials: the long-running daemon must never call
// setuid and friends (Go applies them to all threads only through
// syscall.*, and a half-changed process is a vulnerability).
func TestCredentialsOnlyHere(t *testing.T) {
	forbidden := map[string]bool{
		"Credential": true, "Setuid": true, "Seteuid": true, "Setreuid": true, "Setresuid": true,
		"Setgid": true, "Setegid": true, "Setregid": true, "Setresgid": true, "Setgroups": true,
		"Setfsuid": true, "Setfsgid": true, "SetsockoptUcred": false,
	}
	root := testutil.ModuleRoot()
	allowed := filepath.Join(root, "internal", "spawn", "spawn.go")
	var checked int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok || !forbidden[sel.Sel.Name] {
				return true
			}
			pkg, ok := sel.X.(*ast.Ident)
			if !ok || (pkg.Name != "syscall" && pkg.Name != "unix") {
				return true
			}
			if path != allowed {
				t.Errorf("%s: %s.%s outside internal/spawn/spawn.go", path, pkg.Name, sel.Sel.Name)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("only %d Go files checked; the walk is broken", checked)
	}
	// The guard itself must be able to fail: this file names the
	// forbidden selector in a string only, so plant a real one and parse it.
	src := "package x\nimport \"syscall\"\nvar _ = syscall.Setuid\n"
	f, err := parser.ParseFile(token.NewFileSet(), "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok && forbidden[sel.Sel.Name] {
			found = true
		}
		return true
	})
	if !found {
		t.Fatal("the guard does not recognise syscall.Setuid")
	}
}

func TestMain(m *testing.M) {
	SealDescriptors(3)
	os.Exit(m.Run())
}

func TestRunRefuses(t *testing.T) {
	me := os.Getuid()
	other := me + 1
	if me == 0 {
		other = 4242
	}
	for _, tc := range []struct {
		name     string
		uid, gid int
		min      int
		rootOnly bool
		userOnly bool
	}{
		{"uid 0", 0, 1000, 0, false, false},
		{"gid 0", 1000, 0, 0, false, false},
		{"below min uid", 500, 500, 1000, false, false},
		{"another uid without root", other, other, 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.userOnly && me == 0 {
				t.Skip("only meaningful without root")
			}
			_, err := Run(context.Background(), Request{Exe: "/bin/true", UID: tc.uid, GID: tc.gid, MinUID: tc.min})
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Run(uid %d gid %d min %d) err = %v, want ErrRefused", tc.uid, tc.gid, tc.min, err)
			}
		})
	}
}

// TestRunAsUser checks the child's credentials, environment and
// descriptors, as root, with /bin/sh reading /proc/self (the worker's own
// checks are in the end-to-end tests).
func TestRunAsUser(t *testing.T) {
	testutil.RequireRoot(t)
	out, err := Run(context.Background(), Request{
		Exe:  "/bin/sh",
		Args: []string{"-c", "grep -E '^(Uid|Gid|Groups|CapEff|CapPrm|CapAmb):' /proc/self/status; echo fds $(ls /proc/self/fd); env"},
		UID:  65534, GID: 65534, MinUID: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out.Stdout)
	for _, want := range []string{
		"Uid:\t65534\t65534\t65534\t65534", "Gid:\t65534\t65534\t65534\t65534",
		"CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapAmb:\t0000000000000000",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("child status lacks %q:\n%s", want, s)
		}
	}
	if !regexp.MustCompile(`(?m)^Groups:\s*$`).MatchString(s) {
		t.Errorf("supplementary groups not cleared:\n%s", s)
	}
	// ls lists its own descriptors: 0, 1, 2 and its directory handle.
	if !strings.Contains(s, "fds 0 1 2 3\n") {
		t.Errorf("descriptors other than 0-2 inherited:\n%s", s)
	}
	if strings.Contains(s, "HOME=") || strings.Contains(s, "GOPATH") {
		t.Errorf("environment inherited:\n%s", s)
	}
}

func TestRunTimeoutKillsGroup(t *testing.T) {
	uid := os.Getuid()
	if uid == 0 {
		uid = 65534
	}
	out, err := Run(context.Background(), Request{
		Exe: "/bin/sh", Args: []string{"-c", "sleep 30 & sleep 30"},
		UID: uid, GID: uid, Timeout: 200 * 1e6,
	})
	if os.Getuid() != 0 && uid != os.Getgid() {
		t.Skip("gid differs from uid for this user")
	}
	if err != nil {
		t.Fatal(err)
	}
	if !out.TimedOut || out.ExitCode != -1 {
		t.Fatalf("TimedOut=%v ExitCode=%d, want a killed worker", out.TimedOut, out.ExitCode)
	}
}

// threadSlack reads the timer slack of thread tid.
func threadSlack(t *testing.T, tid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/timerslack_ns")
	if err != nil {
		t.Skipf("no timerslack_ns: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// TestTimerSlack: the child runs with the requested timer slack (or the
// parent's, for 0), and the parent's thread gets its own back.
func TestTimerSlack(t *testing.T) {
	uid := os.Getuid()
	if uid == 0 {
		uid = 65534
	} else if uid != os.Getgid() {
		t.Skip("gid differs from uid for this user")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	mine := threadSlack(t, unix.Gettid())
	for _, tc := range []struct {
		name  string
		slack time.Duration
		want  string
	}{
		{"3 ms", 3 * time.Millisecond, "3000000"},
		{"the default", DefaultTimerSlack, strconv.FormatInt(DefaultTimerSlack.Nanoseconds(), 10)},
		{"0 keeps the parent's", 0, mine},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Run(context.Background(), Request{
				Exe: "/bin/cat", Args: []string{"/proc/self/timerslack_ns"},
				UID: uid, GID: uid, TimerSlack: tc.slack,
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(out.Stdout)); got != tc.want || out.ExitCode != 0 {
				t.Fatalf("child's slack %q (exit %d, %q), want %q", got, out.ExitCode, out.Stderr, tc.want)
			}
			if got := threadSlack(t, unix.Gettid()); got != mine {
				t.Fatalf("parent's thread left with slack %s, had %s", got, mine)
			}
		})
	}
}
