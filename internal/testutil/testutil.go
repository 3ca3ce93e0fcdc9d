// Package testutil builds the real lda binary for end-to-end tests and
// creates the real users they deliver to. Tests that need root call
// RequireRoot, which skips cleanly for an ordinary user; CI runs as root.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireRoot skips t unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root (CI runs as root)")
	}
}

// ModuleRoot returns the repository's top directory.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// Build compiles the package at pkg (relative to the module root, e.g.
// "./cmd/lda") with CGO_ENABLED=0 into dir, which it makes 0755 so that
// every user can execute the result. It returns the binary's path.
func Build(t testing.TB, dir, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := dir + "|" + pkg
	if p, ok := built[key]; ok {
		return p
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = ModuleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	os.Chmod(out, 0o755)
	built[key] = out
	return out
}

// User is a real account created for a test.
type User struct {
	Name     string
	UID, GID int
	Home     string
}

// CreateUser makes a real user with the given name and a fresh home
// directory (0700, owned by the user) beneath base, and removes it when t
// ends. A leftover user of the same name from a crashed run is replaced.
func CreateUser(t testing.TB, name, base string) *User {
	t.Helper()
	RequireRoot(t)
	exec.Command("userdel", "-f", name).Run()
	home := filepath.Join(base, name)
	if b, err := exec.Command("useradd", "-M", "-U", "-d", home, "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, b)
	}
	t.Cleanup(func() { exec.Command("userdel", "-f", name).Run() })
	u := &User{Name: name, Home: home}
	out, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	u.UID, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	out, err = exec.Command("id", "-g", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	u.GID, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	return u
}

// RootDir makes a root-owned 0755 directory for a test (t.TempDir is 0700,
// which other users could not traverse).
func RootDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "lda-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() {
		exec.Command("umount", "-l", d).Run()
		os.RemoveAll(d)
	})
	return d
}

// WriteFile writes data to path with mode and owner uid/gid.
func WriteFile(t testing.TB, path string, data []byte, mode os.FileMode, uid, gid int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// AsUser runs argv as u (via setpriv from util-linux) and returns its
// combined output. Used only by tests, to make a user plant files.
func AsUser(t testing.TB, u *User, argv ...string) string {
	t.Helper()
	args := append([]string{"--reuid=" + strconv.Itoa(u.UID), "--regid=" + strconv.Itoa(u.GID), "--clear-groups", "--"}, argv...)
	out, err := exec.Command("setpriv", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("as %s: %v: %v\n%s", u.Name, argv, err, out)
	}
	return string(out)
}

// Sysctl sets a sysctl for the duration of t.
func Sysctl(t testing.TB, key, value string) {
	t.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("sysctl %s: %v", key, err)
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		t.Skipf("sysctl %s=%s: %v", key, value, err)
	}
	t.Cleanup(func() { os.WriteFile(path, old, 0o644) })
}

// Must fails t on err.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// SyncBuffer collects output written from other goroutines (a daemon's
// log, say); tests may read it (String) while it is still being written.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FcntlLocked reports whether an fcntl lock held on the file path keeps
// another open file description from taking a write lock on it
// (F_OFD_GETLK), as a mail reader's lock would be kept out.
func FcntlLocked(t testing.TB, path string) bool {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); err != nil {
		t.Fatal(err)
	}
	return lk.Type != unix.F_UNLCK
}

// CPUs returns this process's CPU mask and the highest CPU in it, and
// skips the test when the mask holds fewer than two: there is nothing to
// gather on one CPU (package affinity).
func CPUs(t testing.TB) (all unix.CPUSet, last int) {
	t.Helper()
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	if all.Count() < 2 {
		t.Skip("this process may run on one CPU only")
	}
	for c := 0; c < len(all)*64; c++ {
		if all.IsSet(c) {
			last = c
		}
	}
	return all, last
}
