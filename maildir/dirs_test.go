package maildir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDirsReuse: a second delivery with the same Dirs, dir and name opens
// nothing, and lands in new/.
func TestDirsReuse(t *testing.T) {
	_, base, dir := setup(t)
	mkMaildir(t, filepath.Join(base, "Maildir"))
	d := &Dirs{}
	t.Cleanup(d.Close)
	opt := Options{Now: fixedNow, Host: "h", CheckOwner: true, Owner: os.Getuid(), Dirs: d}
	var opened []string
	openHook = func(name string) { opened = append(opened, name) }
	t.Cleanup(func() { openHook = nil })
	for i := range 3 {
		opened = nil
		if _, err := Deliver(dir, "Maildir", "", strings.NewReader("m\n"), opt); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
		if i == 0 && len(opened) != 3 {
			t.Fatalf("the first delivery opened %q, want the maildir, tmp and new", opened)
		}
		if i > 0 && len(opened) != 0 {
			t.Fatalf("delivery %d opened %q again", i, opened)
		}
	}
	if n := len(names(t, filepath.Join(base, "Maildir", "new"))); n != 3 {
		t.Fatalf("%d messages in new/, want 3", n)
	}
	if len(names(t, filepath.Join(base, "Maildir", "tmp"))) != 0 {
		t.Fatal("tmp/ not empty")
	}
}

// TestDirsRevalidate: whatever changed between two deliveries, the second
// goes where opening everything afresh would put it, or fails as that
// would; never into a directory that is no longer at the maildir's path.
func TestDirsRevalidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, base string, dir *os.File) (*os.File, Options)
		want   string // "" success into base/Maildir/new, else the enhanced code
		reused bool
	}{
		{"nothing", func(t *testing.T, base string, dir *os.File) (*os.File, Options) {
			return dir, Options{}
		}, "", true},
		{"maildir renamed, a new one made", func(t *testing.T, base string, dir *os.File) (*os.File, Options) {
			mv(t, filepath.Join(base, "Maildir"), filepath.Join(base, "old"))
			mkMaildir(t, filepath.Join(base, "Maildir"))
			return dir, Options{}
		}, "", false},
		{"maildir renamed, a symlink to it left", func(t *testing.T, base string, dir *os.File) (*os.File, Options) {
			mv(t, filepath.Join(base, "Maildir"), filepath.Join(base, "old"))
			symlink(t, "old", filepath.Join(base, "Maildir"))
			return dir, Options{}
		}, "4.2.0", false},
		{"new/ replaced by a symlink to it", func(t *testing.T, base string, dir *os.File) (*os.File, Options) {
			mv(t, filepath.Join(base, "Maildir", "new"), filepath.Join(base, "old"))
			symlink(t, "../old", filepath.Join(base, "Maildir", "new"))
			return dir, Options{}
		}, "4.2.0", false},
		{"tmp/ replaced by a symlink to it", func(t *testing.T, base string, dir *os.File) (*os.File, Options) {
			mv(t, filepath.Join(base, "Maildir", "tmp"), filepath.Join(base, "old"))
			symlink(t, "../old", filepath.Join(base, "Maildir", "tmp"))
			return dir, Options{}
		}, "4.2.0", false},
		{"new/ replaced by a file", func(t *testing.T, base string, dir *os.File) (*os.File, Options) {
			mv(t, filepath.Join(base, "Maildir", "new"), filepath.Join(base, "old"))
			mkFile(t, filepath.Join(base, "Maildir", "new"), "x")
			return dir, Options{}
		}, "4.2.0", false},
		{"maildir removed", func(t *testing.T, base string, dir *os.File) (*os.File, Options) {
			mv(t, filepath.Join(base, "Maildir"), filepath.Join(base, "old"))
			return dir, Options{}
		}, "4.2.0", false},
		{"another directory handle", func(t *testing.T, base string, dir *os.File) (*os.File, Options) {
			other, err := os.Open(base)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { other.Close() })
			return other, Options{}
		}, "", false},
		{"another owner required", func(t *testing.T, base string, dir *os.File) (*os.File, Options) {
			return dir, Options{CheckOwner: true, Owner: os.Getuid() + 1}
		}, "4.2.0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, base, dir := setup(t)
			mkMaildir(t, filepath.Join(base, "Maildir"))
			d := &Dirs{}
			t.Cleanup(d.Close)
			first := Options{Now: fixedNow, Host: "h", CheckOwner: true, Owner: os.Getuid(), Dirs: d}
			if _, err := Deliver(dir, "Maildir", "", strings.NewReader("first\n"), first); err != nil {
				t.Fatal(err)
			}
			dir2, o := tc.change(t, base, dir)
			oldNew := snapshotIfAny(t, filepath.Join(base, "old"))
			second := first
			if o.CheckOwner {
				second.Owner = o.Owner
			}
			opened := 0
			openHook = func(string) { opened++ }
			t.Cleanup(func() { openHook = nil })
			_, err := Deliver(dir2, "Maildir", "", strings.NewReader("second\n"), second)
			openHook = nil
			if reused := opened == 0; reused != tc.reused {
				t.Errorf("reused the directories: %v, want %v", reused, tc.reused)
			}
			if tc.want != "" {
				wantStatus(t, err, 450, tc.want)
				if d.held {
					t.Error("Dirs still holds directories after a failed delivery")
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if !hasMessage(t, filepath.Join(base, "Maildir", "new"), "second\n") {
					t.Error("the second message is not in the maildir's new/")
				}
			}
			// Whatever was moved aside is as it was: the second message
			// never went through a directory no longer at its path.
			sameSnapshot(t, oldNew, snapshotIfAny(t, filepath.Join(base, "old")))
		})
	}
}

// TestDirsFolderLeavesInbox: a folder delivery (or one into cur/) with
// the same Dirs opens its own directories and keeps the INBOX's.
func TestDirsFolderLeavesInbox(t *testing.T) {
	_, base, dir := setup(t)
	mkMaildir(t, filepath.Join(base, "Maildir"))
	d := &Dirs{}
	t.Cleanup(d.Close)
	opt := Options{Now: fixedNow, Host: "h", CreateFolders: true, Dirs: d}
	if _, err := Deliver(dir, "Maildir", "", strings.NewReader("a\n"), opt); err != nil {
		t.Fatal(err)
	}
	box := d.box
	if _, err := Deliver(dir, "Maildir", "Work", strings.NewReader("b\n"), opt); err != nil {
		t.Fatal(err)
	}
	flagged := opt
	flagged.Flags = "S"
	if _, err := Deliver(dir, "Maildir", "", strings.NewReader("c\n"), flagged); err != nil {
		t.Fatal(err)
	}
	if !d.held || d.box != box {
		t.Fatal("a folder or cur/ delivery replaced the INBOX's directories")
	}
	if !hasMessage(t, filepath.Join(base, "Maildir", ".Work", "new"), "b\n") || !hasMessage(t, filepath.Join(base, "Maildir", "cur"), "c\n") {
		t.Fatal("the folder or cur/ delivery is missing")
	}
}

// TestDirsFailureReleases: a delivery that fails with reused directories
// leaves nothing in new/ and lets them go.
func TestDirsFailureReleases(t *testing.T) {
	for _, stage := range []string{"create", "fsync", "link", "dirsync"} {
		t.Run(stage, func(t *testing.T) {
			_, base, dir := setup(t)
			mkMaildir(t, filepath.Join(base, "Maildir"))
			d := &Dirs{}
			t.Cleanup(d.Close)
			opt := Options{Now: fixedNow, Host: "h", Dirs: d}
			if _, err := Deliver(dir, "Maildir", "", strings.NewReader("a\n"), opt); err != nil {
				t.Fatal(err)
			}
			withHook(t, func(s, name string) error {
				if s == stage {
					return errors.New("injected")
				}
				return nil
			})
			if _, err := Deliver(dir, "Maildir", "", strings.NewReader("b\n"), opt); err == nil {
				t.Fatal("the injected fault was not reported")
			}
			if d.held {
				t.Fatal("Dirs still holds directories after a failed delivery")
			}
			if n := len(names(t, filepath.Join(base, "Maildir", "new"))); n != 1 {
				t.Fatalf("%d messages in new/, want the first one only", n)
			}
			if n := len(names(t, filepath.Join(base, "Maildir", "tmp"))); n != 0 {
				t.Fatalf("%d files left in tmp/", n)
			}
		})
	}
}

func mv(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// snapshotIfAny is snapshot, or nothing for a path that does not exist.
func snapshotIfAny(t *testing.T, p string) map[string]string {
	t.Helper()
	if _, err := os.Lstat(p); err != nil {
		return map[string]string{}
	}
	return snapshot(t, p)
}

// hasMessage reports whether a file in dir holds content.
func hasMessage(t *testing.T, dir, content string) bool {
	t.Helper()
	for _, n := range names(t, dir) {
		if b, err := os.ReadFile(filepath.Join(dir, n)); err == nil && string(b) == content {
			return true
		}
	}
	return false
}
