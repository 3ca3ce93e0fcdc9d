package worker

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRootCache: a root is reused only while its path still leads to the
// directory held open; a replaced, moved or symlinked-away path is opened
// afresh, and an entry pushed out is closed.
func TestRootCache(t *testing.T) {
	top := t.TempDir()
	a, b, c := filepath.Join(top, "a"), filepath.Join(top, "b"), filepath.Join(top, "c")
	for _, d := range []string{a, b, c} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ino := func(f *os.File) uint64 {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	pathIno := func(p string) uint64 {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	var c1 rootCache
	t.Cleanup(func() {
		for i := range c1.ents {
			c1.ents[i].close()
		}
	})
	open := func(p string) *os.File {
		t.Helper()
		f, err := c1.open(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ino(f) != pathIno(p) {
			t.Fatalf("open(%s) returned a directory that is not at the path", p)
		}
		return f
	}

	t.Run("reused while unchanged", func(t *testing.T) {
		if f1, f2 := open(a), open(a); f1 != f2 {
			t.Fatal("the same unchanged root was opened twice")
		}
	})
	t.Run("replaced by another directory", func(t *testing.T) {
		f1 := open(a)
		if err := os.Rename(a, a+".old"); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(a, 0o755); err != nil {
			t.Fatal(err)
		}
		if f2 := open(a); f2 == f1 {
			t.Fatal("the old directory was handed out for the new path")
		}
		if f1.Fd() != ^uintptr(0) {
			t.Fatal("the stale entry was not closed")
		}
	})
	t.Run("replaced by a symlink to it", func(t *testing.T) {
		f1 := open(b)
		if err := os.Rename(b, b+".old"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("b.old", b); err != nil {
			t.Fatal(err)
		}
		// open(2) follows a symlink in the root's path, so the same
		// directory, reached through it, may be reused: it is what opening
		// the path gives.
		if f2 := open(b); f2 != f1 {
			t.Fatal("the directory the path still leads to was opened again")
		}
	})
	t.Run("removed", func(t *testing.T) {
		open(c)
		if err := os.Rename(c, c+".gone"); err != nil {
			t.Fatal(err)
		}
		if _, err := c1.open(c, nil); err == nil {
			t.Fatal("a root whose path is gone was handed out")
		}
	})
	t.Run("the job's own stat", func(t *testing.T) {
		// A stat the job made of the path (the home's, by its probe)
		// stands for the path at that instant: it decides, not a second
		// stat. One naming another directory closes the entry.
		f1 := open(a)
		var st unix.Stat_t
		if err := unix.Stat(a, &st); err != nil {
			t.Fatal(err)
		}
		seen := idOf(&st)
		if f2, err := c1.open(a, &seen); err != nil || f2 != f1 {
			t.Fatalf("a root the job's stat still leads to was not reused: %v", err)
		}
		if err := unix.Stat(b, &st); err != nil {
			t.Fatal(err)
		}
		seen = idOf(&st)
		f3, err := c1.open(a, &seen)
		if err != nil {
			t.Fatal(err)
		}
		if f3 == f1 || f1.Fd() != ^uintptr(0) {
			t.Fatal("a root was reused though the job's stat named another directory")
		}
		if ino(f3) != pathIno(a) {
			t.Fatal("the root opened afresh is not the path's")
		}
	})
	t.Run("pushed out and closed", func(t *testing.T) {
		d1 := filepath.Join(top, "d1")
		d2 := filepath.Join(top, "d2")
		os.Mkdir(d1, 0o755)
		os.Mkdir(d2, 0o755)
		fa := open(a)
		open(d1)
		open(d2)
		if fa.Fd() != ^uintptr(0) {
			t.Fatal("three roots held in a two-entry cache")
		}
	})
}
