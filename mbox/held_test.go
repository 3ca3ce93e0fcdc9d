package mbox

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/status"
	"lda/internal/testutil"
)

// TestHeld: a held mailbox is reused only while the name beneath the same
// directory still leads to it, with one link and the owner's uid, checked
// under the lock; anything else opens the name afresh with every check,
// and the held file is never written.
func TestHeld(t *testing.T) {
	for _, mbox := range []string{"box", "sub/box"} {
		t.Run(mbox, func(t *testing.T) { testHeld(t, mbox) })
	}
}

// TestHeldUnprivileged runs TestHeld's cases that root cannot (its
// CAP_DAC_OVERRIDE opens a file whatever its mode) in a copy of this test
// binary as nobody, so that they run in CI, which is root.
func TestHeldUnprivileged(t *testing.T) {
	requireRoot(t)
	dir := testutil.RootDir(t)
	bin := filepath.Join(dir, "mbox.test")
	src, err := os.Open(os.Args[0])
	testutil.Must(t, err)
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	testutil.Must(t, err)
	_, err = io.Copy(dst, src)
	testutil.Must(t, err)
	testutil.Must(t, dst.Close())
	tmp := filepath.Join(dir, "tmp")
	testutil.Must(t, os.Mkdir(tmp, 0o777))
	testutil.Must(t, os.Chmod(tmp, 0o1777))
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		bin, "-test.run", "^TestHeld$", "-test.v", "-test.count=1")
	cmd.Env = []string{"TMPDIR=" + tmp, "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("TestHeld as nobody: %v\n%s", err, out)
	}
	for _, mbox := range []string{"box", "sub/box"} {
		if want := "--- PASS: TestHeld/" + mbox + "/made_unwritable "; !strings.Contains(string(out), want) {
			t.Fatalf("TestHeld as nobody did not pass %q:\n%s", want, out)
		}
	}
}

func testHeld(t *testing.T, mbox string) {
	otherBase := t.TempDir()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(otherBase, mbox)), 0o700); err != nil {
		t.Fatal(err)
	}
	other, err := os.Open(otherBase)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	nested := strings.Contains(mbox, "/")
	for _, tc := range []struct {
		name string
		// between runs after the first append: p is the mailbox's path;
		// it may change the directory, the name or the options of the
		// second append.
		between func(t *testing.T, p string, dir **os.File, name *string, opt *Options)
		reused  bool   // the second append reuses the held file
		wantErr string // the second append fails with this enhanced code
		second  string // the second append goes to this path beneath the directory, "" for the mailbox
		nested  bool   // only for a name of more than one component
		// unprivileged: only without CAP_DAC_OVERRIDE (not as root),
		// which opens any file whatever its mode.
		unprivileged bool
	}{
		{name: "same mailbox", reused: true},
		{name: "replaced by rename", between: func(t *testing.T, p string, _ **os.File, _ *string, _ *Options) {
			writeFile(t, p+".new", "")
			if err := os.Rename(p+".new", p); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "removed, created afresh", between: func(t *testing.T, p string, _ **os.File, _ *string, _ *Options) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "removed, no create", wantErr: "4.2.0", between: func(t *testing.T, p string, _ **os.File, _ *string, opt *Options) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			opt.Create = false
		}},
		{name: "hard link", wantErr: "4.2.0", between: func(t *testing.T, p string, _ **os.File, _ *string, _ *Options) {
			if err := os.Link(p, p+".link"); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "symlink to it", wantErr: "4.2.0", between: func(t *testing.T, p string, _ **os.File, _ *string, _ *Options) {
			if err := os.Rename(p, p+".moved"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(p+".moved", p); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "another owner required", wantErr: "4.2.0", between: func(_ *testing.T, _ string, _ **os.File, _ *string, opt *Options) {
			opt.Owner = os.Getuid() + 1
		}},
		{name: "another name", second: "other", between: func(_ *testing.T, _ string, _ **os.File, name *string, _ *Options) {
			*name = "other"
		}},
		{name: "another directory", second: "elsewhere", between: func(_ *testing.T, _ string, dir **os.File, _ *string, _ *Options) {
			*dir = other
		}},
		{name: "made unwritable", wantErr: "4.2.0", unprivileged: true, between: func(t *testing.T, p string, _ **os.File, _ *string, _ *Options) {
			// A fresh open (O_RDWR) is refused; so must the held file be.
			if err := os.Chmod(p, 0o400); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "parent directory replaced by a symlink to it", nested: true, wantErr: "4.2.0", between: func(t *testing.T, p string, _ **os.File, _ *string, _ *Options) {
			parent := filepath.Dir(p)
			if err := os.Rename(parent, parent+".moved"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(parent+".moved", parent); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "parent directory replaced", nested: true, between: func(t *testing.T, p string, _ **os.File, _ *string, _ *Options) {
			parent := filepath.Dir(p)
			if err := os.Rename(parent, parent+".moved"); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(parent, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		if tc.nested && !nested || tc.unprivileged && os.Geteuid() == 0 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			base, dir := testDir(t)
			p := filepath.Join(base, mbox)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			var h Held
			defer h.Close()
			opt := testOptions()
			opt.Held = &h
			if _, err := Append(dir, mbox, strings.NewReader("one\n"), opt); err != nil {
				t.Fatal(err)
			}
			if !h.held {
				t.Fatal("nothing held after an append")
			}
			// The test's own descriptor of the file held, to see it
			// after Held has closed its own.
			firstFd, err := unix.Dup(h.fd)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(firstFd)
			var first unix.Stat_t
			if err := unix.Fstat(firstFd, &first); err != nil {
				t.Fatal(err)
			}
			before := readFile(t, p)
			d, name := dir, mbox
			if tc.between != nil {
				tc.between(t, p, &d, &name, &opt)
			}
			if name != mbox { // another name, in the same directory
				name = filepath.Join(filepath.Dir(mbox), name)
			}
			opened := 0
			setHook(t, func(stage string) error {
				if stage == "open" || stage == "opened" || stage == "create" {
					opened++
				}
				return nil
			})
			_, err = Append(d, name, strings.NewReader("two\n"), opt)
			if tc.wantErr != "" {
				// As the worker answers it (an errno maps through
				// status.From).
				if err == nil || status.From(err).Enhanced != tc.wantErr {
					t.Fatalf("second append: %v, want %s", err, tc.wantErr)
				}
				if h.held {
					t.Fatal("a failed append left a mailbox held")
				}
			} else if err != nil {
				t.Fatalf("second append: %v", err)
			}
			if tc.reused && opened != 0 {
				t.Fatalf("the name was opened %d times for a held mailbox", opened)
			}
			// The file held before is changed only by a reuse.
			var now unix.Stat_t
			if err := unix.Fstat(firstFd, &now); err != nil {
				t.Fatal(err)
			}
			grew := now.Size != first.Size
			if grew != tc.reused {
				t.Fatalf("held file went from %d to %d bytes; reused %v", first.Size, now.Size, tc.reused)
			}
			if tc.reused {
				if got, want := readFile(t, p), before+testFrom+"two\n\n"; got != want {
					t.Fatalf("mailbox:\n%q\nwant\n%q", got, want)
				}
				return
			}
			if tc.wantErr == "" {
				target := filepath.Join(base, name)
				if tc.second == "elsewhere" {
					target = filepath.Join(d.Name(), name)
				}
				if got, want := readFile(t, target), testFrom+"two\n\n"; got != want {
					t.Fatalf("%s:\n%q\nwant\n%q", target, got, want)
				}
			}
		})
	}
}

// TestHeldUnlocked: between appends a held mailbox is open but locked by
// nothing, so a mail reader can lock it (each kind of lock tried from its
// own open file, without waiting).
func TestHeldUnlocked(t *testing.T) {
	base, dir := testDir(t)
	p := filepath.Join(base, "box")
	var h Held
	defer h.Close()
	opt := testOptions() // dot-lock, fcntl and flock
	opt.Held = &h
	for i := range 2 { // opened afresh, then reused
		if _, err := Append(dir, "box", strings.NewReader("x\n"), opt); err != nil {
			t.Fatal(err)
		}
		if !h.held {
			t.Fatalf("append %d: nothing held", i)
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			t.Errorf("append %d: fcntl lock of the held mailbox: %v", i, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Errorf("append %d: flock of the held mailbox: %v", i, err)
		}
		f.Close()
		if _, err := os.Lstat(p + ".lock"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("append %d: dot-lock left: %v", i, err)
		}
	}
}

// TestHeldFailure: an append that fails, whether it started from a held
// mailbox or not, leaves nothing held and the mailbox as it was.
func TestHeldFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		held bool // a first append holds the mailbox
	}{
		{"opened afresh", false},
		{"held", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, dir := testDir(t)
			p := filepath.Join(base, "box")
			writeFile(t, p, "")
			var h Held
			defer h.Close()
			opt := testOptions()
			opt.Held = &h
			if tc.held {
				if _, err := Append(dir, "box", strings.NewReader("one\n"), opt); err != nil {
					t.Fatal(err)
				}
			}
			before := readFile(t, p)
			setHook(t, func(stage string) error {
				if stage == "sync" {
					return unix.EIO
				}
				return nil
			})
			if _, err := Append(dir, "box", strings.NewReader("two\n"), opt); !errors.Is(err, unix.EIO) {
				t.Fatalf("append: %v, want EIO", err)
			}
			if h.held {
				t.Fatal("a failed append left the mailbox held")
			}
			if got := readFile(t, p); got != before {
				t.Fatalf("mailbox after the failure %q, want %q", got, before)
			}
		})
	}
}

// TestHeldStaleLocked: the held file was renamed away and a new mailbox
// put in its place, and a mail reader still holds the old file locked (as
// one that writes a new mbox and renames it over the old one may). The
// append must go to the new mailbox at once, not wait for the old file's
// lock and time out.
func TestHeldStaleLocked(t *testing.T) {
	base, dir := testDir(t)
	p := filepath.Join(base, "box")
	var h Held
	defer h.Close()
	opt := testOptions()
	opt.Locks = FcntlLock
	opt.LockTimeout = 300 * time.Millisecond
	opt.Held = &h
	if _, err := Append(dir, "box", strings.NewReader("one\n"), opt); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p, p+".old"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, "")
	old, err := os.OpenFile(p+".old", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(old.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		t.Fatal(err)
	}
	if _, err := Append(dir, "box", strings.NewReader("two\n"), opt); err != nil {
		t.Fatalf("append with the old mailbox locked: %v", err)
	}
	if got, want := readFile(t, p), testFrom+"two\n\n"; got != want {
		t.Fatalf("new mailbox %q, want %q", got, want)
	}
}

// panicReader panics on its first read.
type panicReader struct{}

func (panicReader) Read([]byte) (int, error) { panic("reader") }

// TestHeldPanic: an append that panics (here, its reader) keeps nothing
// held, whatever the caller recovers.
func TestHeldPanic(t *testing.T) {
	base, dir := testDir(t)
	var h Held
	defer h.Close()
	opt := testOptions()
	opt.Held = &h
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		Append(dir, "box", panicReader{}, opt)
	}()
	if h.Holds() {
		t.Fatal("a panicking append left the mailbox held")
	}
	if _, err := os.Lstat(filepath.Join(base, "box.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dot-lock left after the panic: %v", err)
	}
}
