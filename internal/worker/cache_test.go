package worker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/job"
	"lda/policy"
	"lda/sieve"
)

func statPath(t *testing.T, path string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

// tick waits until the file system that holds path stamps a new change
// with a later time than path's, so that a change made now shows in the
// times. It skips the test if that takes longer than a few seconds.
func tick(t *testing.T, path string) {
	t.Helper()
	tickIn(t, path, filepath.Dir(path))
}

// tickIn is tick, touching only dir (on the same file system) to see the
// time move.
func tickIn(t *testing.T, path, dir string) {
	t.Helper()
	old := statPath(t, path).Ctim
	probe := filepath.Join(dir, ".tick")
	defer os.Remove(probe)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if err := os.WriteFile(probe, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if c := statPath(t, probe).Ctim; c.Sec > old.Sec || c.Sec == old.Sec && c.Nsec > old.Nsec {
			return
		}
	}
	t.Skip("the file system's timestamps did not move in 5 s")
}

func TestFileCache(t *testing.T) {
	later := func() time.Time { return time.Now().Add(2 * settle) } // as if read long after the last change
	for _, tc := range []struct {
		name   string
		readAt func() time.Time
		change func(t *testing.T, path string) // between put and get
		key    string
		hit    bool
	}{
		{"unchanged", later, nil, "k", true},
		{"changed just before it was read", time.Now, nil, "k", false},
		{"rewritten in place, same size", later, func(t *testing.T, p string) {
			tick(t, p)
			if err := os.WriteFile(p, []byte("version 2"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "k", false},
		{"replaced by a rename", later, func(t *testing.T, p string) {
			if err := os.WriteFile(p+".new", []byte("version 1"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(p+".new", p); err != nil {
				t.Fatal(err)
			}
		}, "k", false},
		{"mode changed", later, func(t *testing.T, p string) {
			tick(t, p)
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "k", false},
		{"parsed against something else", later, nil, "other", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(p, []byte("version 1"), 0o600); err != nil {
				t.Fatal(err)
			}
			var c fileCache[string, string]
			c.put(p, statPath(t, p), tc.readAt(), "k", "parsed 1")
			if tc.change != nil {
				tc.change(t, p)
			}
			v, ok := c.get(p, statPath(t, p), tc.key)
			if ok != tc.hit || ok && v != "parsed 1" {
				t.Fatalf("get = %q, %v; want a hit: %v", v, ok, tc.hit)
			}
		})
	}
}

func TestFileCacheBounded(t *testing.T) {
	dir := t.TempDir()
	var c fileCache[struct{}, int]
	for i := range maxCached + 1 {
		p := filepath.Join(dir, string(rune('a'+i)))
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		c.put(p, statPath(t, p), time.Now().Add(2*settle), struct{}{}, i)
		if len(c.m) > maxCached {
			t.Fatalf("%d entries, the bound is %d", len(c.m), maxCached)
		}
	}
	if len(c.m) != 1 {
		t.Fatalf("a full cache holds %d entries after one more, want 1 (emptied, then the new one)", len(c.m))
	}
}

// TestScriptCache: loadScripts parses an unchanged script once, and an
// edited one (same inode, same size) again.
func TestScriptCache(t *testing.T) {
	home := t.TempDir()
	path := filepath.Join(home, UserScripts[0])
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`require "envelope"; if envelope :is "from" "a@x.example" { discard; }` + "\n")
	old := cacheClock
	cacheClock = func() time.Time { return time.Now().Add(2 * settle) }
	t.Cleanup(func() { cacheClock = old; scriptCache = fileCache[struct{}, *sieve.Script]{} })
	j := &job.Job{Home: home}
	load := func() *sieve.Script {
		t.Helper()
		scripts, userErr, st := loadScripts(j, nil)
		if userErr != nil || st != nil || len(scripts) != 1 {
			t.Fatalf("loadScripts: %v %v %d scripts", userErr, st, len(scripts))
		}
		return scripts[0]
	}
	first := load()
	if again := load(); again != first {
		t.Fatal("an unchanged script was parsed again")
	}
	tick(t, path)
	write(`require "envelope"; if envelope :is "from" "b@x.example" { discard; }` + "\n")
	edited := load()
	if edited == first {
		t.Fatal("an edited script (same inode, same size) was not parsed again")
	}
}

// TestUserPolicyCache: loadUser parses an unchanged policy file once, an
// edited one again, and never serves one parsed against another system
// policy.
func TestUserPolicyCache(t *testing.T) {
	home := t.TempDir()
	sys := policy.Default()
	path := filepath.Join(home, sys.UserFile)
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("version: 1\ndeny:\n  - {mbox: ~/aaa}\n")
	old := cacheClock
	cacheClock = func() time.Time { return time.Now().Add(2 * settle) }
	t.Cleanup(func() { cacheClock = old; userPolicyCache = fileCache[userPolicyKey, *policy.UserPolicy]{} })
	u := policy.User{Name: "someone", Home: home}
	load := func(sys *policy.System) *policy.UserPolicy {
		t.Helper()
		up, warn, err := loadUser(sys, u, nil)
		if err != nil || warn != "" || up == nil {
			t.Fatalf("loadUser: %v %q", err, warn)
		}
		return up
	}
	first := load(sys)
	if again := load(sys); again != first {
		t.Fatal("an unchanged policy file was parsed again")
	}
	tick(t, path)
	write("version: 1\ndeny:\n  - {mbox: ~/bbb}\n")
	edited := load(sys)
	if edited == first {
		t.Fatal("an edited policy file (same inode, same size) was not parsed again")
	}
	if again := load(sys); again != edited {
		t.Fatal("the edited policy file was not kept")
	}
	if other := load(policy.Default()); other == edited {
		t.Fatal("a policy file parsed against one system policy was served for another")
	}
	// A kept parse does not outlive a change of mode: a file made
	// writable by the group is ignored, with a warning.
	load(sys)
	if err := os.Chmod(path, 0o620); err != nil {
		t.Fatal(err)
	}
	if up, warn, err := loadUser(sys, u, nil); up != nil || err != nil || !strings.Contains(warn, "writable by group or others") {
		t.Fatalf("a group-writable policy file: %v %q %v, want it ignored with a warning", up, warn, err)
	}
}
