package mbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDotLock(t *testing.T) {
	old := time.Now().Add(-time.Hour)
	deadPid := func(t *testing.T) int {
		cmd := exec.Command("/bin/true")
		if err := cmd.Run(); err != nil {
			t.Skip("cannot run /bin/true:", err)
		}
		return cmd.Process.Pid
	}
	tests := []struct {
		name    string
		plant   func(t *testing.T, lock, victim string)
		ok      bool // delivery succeeds (the lock was broken)
		lockEnd string
	}{
		{"fresh dot-lock", func(t *testing.T, lock, victim string) {
			writeFile(t, lock, "12345\n")
		}, false, "file:-rw-------:12345\n"},
		{"stale dot-lock broken", func(t *testing.T, lock, victim string) {
			writeFile(t, lock, "12345\n")
			setMtime(t, lock, old)
		}, true, "<missing>"},
		{"stale empty dot-lock broken", func(t *testing.T, lock, victim string) {
			writeFile(t, lock, "")
			setMtime(t, lock, old)
		}, true, "<missing>"},
		{"fresh symlink dot-lock to victim", func(t *testing.T, lock, victim string) {
			symlink(t, victim, lock)
		}, false, ""},
		{"stale symlink dot-lock to victim removed, not followed", func(t *testing.T, lock, victim string) {
			symlink(t, victim, lock)
			setMtime(t, lock, old)
		}, true, "<missing>"},
		{"dot-lock of a dead lda process broken", func(t *testing.T, lock, victim string) {
			writeFile(t, lock, fmt.Sprintf("%d %s\n", deadPid(t), hostname()))
		}, true, "<missing>"},
		{"dot-lock of a dead process on another host kept", func(t *testing.T, lock, victim string) {
			writeFile(t, lock, fmt.Sprintf("%d %s\n", deadPid(t), "elsewhere.example"))
		}, false, ""},
		{"dot-lock of a live lda process kept", func(t *testing.T, lock, victim string) {
			writeFile(t, lock, fmt.Sprintf("%d %s\n", os.Getpid(), hostname()))
		}, false, ""},
		{"dot-lock is a directory", func(t *testing.T, lock, victim string) {
			mkdir(t, lock)
			setMtime(t, lock, old)
		}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, d := testDir(t)
			victim := filepath.Join(t.TempDir(), "victim")
			writeFile(t, victim, victimContent)
			mb := filepath.Join(p, "inbox")
			const original = testFrom + "original\n\n"
			writeFile(t, mb, original)
			lock := mb + ".lock"
			tc.plant(t, lock, victim)
			lockBefore := describe(t, lock)
			opt := testOptions()
			opt.Locks = DotLock
			opt.LockTimeout = 300 * time.Millisecond
			start := time.Now()
			_, err := Append(d, "inbox", strings.NewReader("new\n"), opt)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				if got := readFile(t, mb); got != original+testFrom+"new\n\n" {
					t.Errorf("mailbox %q", got)
				}
			} else {
				wantStatus(t, err, 450, "4.2.0")
				if el := time.Since(start); el < 250*time.Millisecond || el > 3*time.Second {
					t.Errorf("gave up after %v, want about 300ms", el)
				}
				if got := readFile(t, mb); got != original {
					t.Errorf("mailbox changed: %q", got)
				}
			}
			want := tc.lockEnd
			if want == "" {
				want = lockBefore // someone else's lock is left alone
			}
			if got := describe(t, lock); got != want {
				t.Errorf("lock afterwards %q, want %q", got, want)
			}
			if got := readFile(t, victim); got != victimContent {
				t.Errorf("victim changed: %q", got)
			}
		})
	}
}

func setMtime(t *testing.T, p string, when time.Time) {
	t.Helper()
	ts := unix.NsecToTimespec(when.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

// TestKernelLockContention holds an OFD lock or a flock on another open
// file description of the mailbox in this process.
func TestKernelLockContention(t *testing.T) {
	tests := []struct {
		name  string
		locks Locking
		hold  func(fd int) error
	}{
		{"fcntl OFD", FcntlLock, func(fd int) error {
			lk := unix.Flock_t{Type: unix.F_WRLCK}
			return unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
		}},
		{"fcntl OFD read lock", FcntlLock, func(fd int) error {
			lk := unix.Flock_t{Type: unix.F_RDLCK}
			return unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
		}},
		{"flock", Flock, func(fd int) error { return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) }},
		{"flock shared", Flock, func(fd int) error { return unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB) }},
		{"flock held, all locks", DotLock | FcntlLock | Flock, func(fd int) error { return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, d := testDir(t)
			mb := filepath.Join(p, "inbox")
			const original = testFrom + "original\n\n"
			writeFile(t, mb, original)
			f, err := os.OpenFile(mb, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := tc.hold(int(f.Fd())); err != nil {
				t.Fatal(err)
			}
			opt := testOptions()
			opt.Locks = tc.locks
			opt.LockTimeout = 300 * time.Millisecond
			start := time.Now()
			_, err = Append(d, "inbox", strings.NewReader("new\n"), opt)
			wantStatus(t, err, 450, "4.2.0")
			if el := time.Since(start); el < 250*time.Millisecond || el > 3*time.Second {
				t.Errorf("gave up after %v, want about 300ms", el)
			}
			if got := readFile(t, mb); got != original {
				t.Errorf("mailbox changed: %q", got)
			}
			if _, err := os.Lstat(mb + ".lock"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dot-lock left behind after timeout")
			}
			// Once released, delivery proceeds.
			f.Close()
			if _, err := Append(d, "inbox", strings.NewReader("new\n"), opt); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLocksReleased: once Append or Recover returns, with any set of
// locks, after a delivery or after a failure, another open file
// description takes an exclusive OFD lock and a flock at once, and no
// dot-lock is left.
func TestLocksReleased(t *testing.T) {
	for _, locks := range []Locking{FcntlLock, Flock, FcntlLock | Flock, DotLock | FcntlLock, DotLock | FcntlLock | Flock} {
		for _, fail := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v, failing %v", locks, fail), func(t *testing.T) {
				p, d := testDir(t)
				mb := filepath.Join(p, "inbox")
				writeFile(t, mb, testFrom+"original\n\n")
				opt := testOptions()
				opt.Locks = locks
				if fail {
					setHook(t, func(stage string) error {
						if stage == "sync" {
							return errors.New("injected")
						}
						return nil
					})
				}
				_, err := Append(d, "inbox", strings.NewReader("new\n"), opt)
				if (err != nil) != fail {
					t.Fatalf("Append: %v", err)
				}
				if fail {
					setHook(t, nil)
				}
				// A record that does not match the file: Recover locks,
				// looks, changes nothing (without intents, as on a file
				// system without user attributes; with them, no intent
				// is left and it does not look further).
				noIntents(t)
				var st unix.Stat_t
				if err := unix.Stat(mb, &st); err != nil {
					t.Fatal(err)
				}
				rp := Progress{Offset: 0, Dev: st.Dev, Ino: st.Ino, FromLine: "From nobody@example.org Thu Jan  1 00:00:00 2026\n"}
				if cut, err := Recover(d, "inbox", rp, opt); cut || !errors.Is(err, ErrRecoverMismatch) {
					t.Fatalf("Recover: %v, %v; want a mismatch", cut, err)
				}
				f, err := os.OpenFile(mb, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				lk := unix.Flock_t{Type: unix.F_WRLCK}
				if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
					t.Fatalf("OFD lock still held: %v", err)
				}
				if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
					t.Fatalf("flock still held: %v", err)
				}
				if _, err := os.Lstat(mb + ".lock"); !errors.Is(err, os.ErrNotExist) {
					t.Fatal("dot-lock left behind")
				}
			})
		}
	}
}

// TestLockWaits checks that a lock released within the timeout is waited
// for rather than failed.
func TestLockWaits(t *testing.T) {
	p, d := testDir(t)
	mb := filepath.Join(p, "inbox")
	writeFile(t, mb, "")
	writeFile(t, mb+".lock", "")
	f, err := os.OpenFile(mb, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		os.Remove(mb + ".lock")
		time.Sleep(100 * time.Millisecond)
		f.Close()
	}()
	opt := testOptions()
	opt.LockTimeout = 5 * time.Second
	if _, err := Append(d, "inbox", strings.NewReader("x\n"), opt); err != nil {
		t.Fatal(err)
	}
}

// TestDotLockDirNotWritable: a dot-lock that cannot be created is
// MailboxUnavail, and the mailbox is unchanged.
func TestDotLockDirNotWritable(t *testing.T) {
	p, d := testDir(t)
	mb := filepath.Join(p, "inbox")
	const original = testFrom + "original\n\n"
	writeFile(t, mb, original)
	if os.Getuid() == 0 {
		// Root ignores permissions; an immutable directory refuses even root.
		if err := setImmutable(p, true); err != nil {
			t.Skip("cannot make the directory immutable:", err)
		}
		t.Cleanup(func() { setImmutable(p, false) })
	} else {
		if err := os.Chmod(p, 0o500); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(p, 0o700) })
	}
	opt := testOptions()
	opt.Locks = DotLock | FcntlLock
	_, err := Append(d, "inbox", strings.NewReader("x\n"), opt)
	wantStatus(t, err, 450, "4.2.0")
	if got := readFile(t, mb); got != original {
		t.Errorf("mailbox changed: %q", got)
	}
}

func setImmutable(p string, on bool) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return err
	}
	if on {
		flags |= fsImmutableFl
	} else {
		flags &^= fsImmutableFl
	}
	return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags)
}

// TestDotLockTouched: a long append refreshes its dot-lock so that it does
// not look stale to others.
func TestDotLockTouched(t *testing.T) {
	p, d := testDir(t)
	mb := filepath.Join(p, "inbox")
	opt := testOptions()
	opt.Locks = DotLock
	opt.StaleLock = 400 * time.Millisecond
	var mtimes []time.Time
	body := &slowReader{n: 6, pause: 60 * time.Millisecond, each: func() {
		fi, err := os.Lstat(mb + ".lock")
		if err == nil {
			mtimes = append(mtimes, fi.ModTime())
		}
	}}
	if _, err := Append(d, "inbox", body, opt); err != nil {
		t.Fatal(err)
	}
	if len(mtimes) < 2 || !mtimes[len(mtimes)-1].After(mtimes[0]) {
		t.Errorf("dot-lock not refreshed: %v", mtimes)
	}
}

type slowReader struct {
	n     int
	pause time.Duration
	each  func()
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	s.n--
	time.Sleep(s.pause)
	s.each()
	return copy(p, "line\n"), nil
}

// fsImmutableFl is FS_IMMUTABLE_FL from linux/fs.h.
const fsImmutableFl = 0x10

// TestDotLockOwnerLine: while the dot-lock is held it names its owner,
// whether it was made nameless and linked (O_TMPFILE) or created O_EXCL,
// and nothing else is left in the directory afterwards.
func TestDotLockOwnerLine(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noTmpfile bool
	}{{"linked O_TMPFILE", false}, {"O_EXCL", true}} {
		t.Run(tc.name, func(t *testing.T) {
			noTmpfileLock = tc.noTmpfile
			defer func() { noTmpfileLock = false }()
			p, d := testDir(t)
			mb := filepath.Join(p, "inbox")
			opt := testOptions()
			opt.Locks = DotLock
			var during string
			opt.Progress = func(Progress) { during = readFile(t, mb+".lock") }
			if _, err := Append(d, "inbox", strings.NewReader("new\n"), opt); err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%d %s\n", os.Getpid(), hostname()); during != want {
				t.Fatalf("lock held during the append reads %q, want %q", during, want)
			}
			ents, err := os.ReadDir(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 1 || ents[0].Name() != "inbox" {
				t.Fatalf("directory afterwards: %v", ents)
			}
		})
	}
}

// TestSleepSlack: a wait for a lock leaves its thread the timer slack it
// had (lda's workers run with 10 ms), whatever it sets for the wait.
func TestSleepSlack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		slack time.Duration
	}{
		{"large", 10 * time.Millisecond},
		{"the kernel's default", 50 * time.Microsecond},
		{"below the wait's own", time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
			if err != nil {
				t.Skip("PR_GET_TIMERSLACK:", err)
			}
			defer unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0)
			if err := unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(tc.slack.Nanoseconds()), 0, 0, 0); err != nil {
				t.Skip("PR_SET_TIMERSLACK:", err)
			}
			sleep(time.Microsecond)
			got, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if time.Duration(got) != tc.slack {
				t.Fatalf("slack after the wait %v, want %v", time.Duration(got), tc.slack)
			}
		})
	}
}
