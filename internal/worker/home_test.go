package worker

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"lda/internal/job"
	"lda/policy"
	"lda/sieve"
)

// TestHomeCache: the per-user files are looked for until a job has found
// none of them in a home seen unchanged for homeSettle; then jobs skip the
// lookups until the home changes, and whatever the user creates in it is
// seen by the very next job.
func TestHomeCache(t *testing.T) {
	sys := policy.Default() // user_file: .lda.yaml
	script := `require "envelope"; if envelope :is "from" "a@x.example" { discard; }` + "\n"
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, home string) // made after the cache is in use
		// what the next job must find: a user policy, a script
		policy, scripts bool
	}{
		{"policy file created", func(t *testing.T, home string) {
			write(t, filepath.Join(home, sys.UserFile), "version: 1\n")
		}, true, false},
		{"script created", func(t *testing.T, home string) {
			write(t, filepath.Join(home, UserScripts[0]), script)
		}, false, true},
		{"Dovecot's script linked in", func(t *testing.T, home string) {
			write(t, filepath.Join(home, "sieve-active"), script)
			must(t, os.Symlink("sieve-active", filepath.Join(home, UserScripts[1])))
		}, false, true},
		{"home replaced", func(t *testing.T, home string) {
			must(t, os.Rename(home, home+".old"))
			must(t, os.Mkdir(home, 0o755))
			write(t, filepath.Join(home, UserScripts[0]), script)
		}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home, other := homeFixture(t)
			clock := useClock(t)
			jobs := jobRunner(t, sys, home)
			// The first job sees the home; the cache is not used before
			// the home has been seen unchanged for homeSettle.
			if hp := jobs(false, false); hp.absent {
				t.Fatal("the first job skipped the lookups")
			}
			if hp := jobs(false, false); hp.absent {
				t.Fatal("a job skipped the lookups before the home settled")
			}
			*clock = clock.Add(2 * settle)
			if hp := jobs(false, false); hp.absent || !hp.settled {
				t.Fatalf("the job that remembers: absent %v, settled %v", hp.absent, hp.settled)
			}
			if hp := jobs(false, false); !hp.absent {
				t.Fatal("the next job looked again in an unchanged home")
			}
			tickIn(t, home, other) // as a user who edits their home a while after the worker looked
			tc.change(t, home)
			if hp := jobs(tc.policy, tc.scripts); hp.absent {
				t.Fatal("a job skipped the lookups after the change")
			}
		})
	}

	t.Run("racy: nothing remembered before the home settles", func(t *testing.T) {
		home, _ := homeFixture(t)
		useClock(t) // never moves
		jobs := jobRunner(t, sys, home)
		for i := 0; i < 3; i++ {
			if hp := jobs(false, false); hp.absent {
				t.Fatalf("job %d skipped the lookups in a home seen for no time", i)
			}
		}
		// Created in the same tick as the home's last change, for all the
		// file system's times can tell: seen all the same.
		write(t, filepath.Join(home, UserScripts[0]), script)
		jobs(false, true)
	})
	t.Run("dangling symlink: nothing remembered", func(t *testing.T) {
		home, other := homeFixture(t)
		clock := useClock(t)
		target := filepath.Join(other, "later.sieve")
		must(t, os.Symlink(target, filepath.Join(home, UserScripts[0])))
		jobs := jobRunner(t, sys, home)
		jobs(false, false)
		*clock = clock.Add(2 * settle)
		for i := 0; i < 2; i++ {
			if hp := jobs(false, false); hp.absent {
				t.Fatal("a dangling symlink was taken for no entry")
			}
		}
		write(t, target, script) // the home does not change
		jobs(false, true)
	})
	t.Run("a policy file in a subdirectory turns it off", func(t *testing.T) {
		home, _ := homeFixture(t)
		clock := useClock(t)
		sub := *sys
		sub.UserFile = ".config/lda.yaml"
		jobs := jobRunner(t, &sub, home)
		jobs(false, false)
		*clock = clock.Add(2 * settle)
		for i := 0; i < 2; i++ {
			if hp := jobs(false, false); hp.absent {
				t.Fatal("the cache was used for a policy file beneath a subdirectory")
			}
		}
	})
}

func write(t *testing.T, path, s string) {
	t.Helper()
	must(t, os.WriteFile(path, []byte(s), 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// homeFixture makes a home and another directory beside it, and empties
// the caches when the test ends.
func homeFixture(t *testing.T) (home, other string) {
	base := t.TempDir()
	home, other = filepath.Join(base, "home"), filepath.Join(base, "other")
	must(t, os.Mkdir(home, 0o755))
	must(t, os.Mkdir(other, 0o755))
	t.Cleanup(func() {
		homeCache.mu.Lock()
		homeCache.path, homeCache.valid = "", false
		homeCache.mu.Unlock()
		scriptCache = fileCache[struct{}, *sieve.Script]{}
		userPolicyCache = fileCache[userPolicyKey, *policy.UserPolicy]{}
	})
	return home, other
}

// useClock makes cacheClock a clock the test moves.
func useClock(t *testing.T) *time.Time {
	clock := time.Now()
	old := cacheClock
	cacheClock = func() time.Time { return clock }
	t.Cleanup(func() { cacheClock = old })
	return &clock
}

// jobRunner returns a function that runs one job's lookups, as execute
// and filter do, checks what they found and returns the probe.
func jobRunner(t *testing.T, sys *policy.System, home string) func(wantPolicy, wantScript bool) *homeProbe {
	u := policy.User{Name: "someone", Home: home}
	j := &job.Job{Home: home}
	return func(wantPolicy, wantScript bool) *homeProbe {
		t.Helper()
		hp := probeHome(home, sys.UserFile)
		up, _, err := loadUser(sys, u, hp)
		if err != nil {
			t.Fatal(err)
		}
		scripts, userErr, st := loadScripts(j, hp)
		if userErr != nil || st != nil {
			t.Fatal(userErr, st)
		}
		hp.record()
		if (up != nil) != wantPolicy || (len(scripts) > 0) != wantScript {
			t.Fatalf("found a policy %v and %d scripts, want %v and %v", up != nil, len(scripts), wantPolicy, wantScript)
		}
		return hp
	}
}
