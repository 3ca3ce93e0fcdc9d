package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"lda/internal/status"
)

// fixed is the clock of most tests.
var fixed = time.Unix(1700000000, 123456000)

func fixedNow() time.Time { return fixed }

// nameRE is the naming scheme of delivered files.
var nameRE = regexp.MustCompile(`^(\d+)\.M(\d+)P(\d+)Q(\d+)R([0-9a-f]{16})\.([^/:,]+),S=(\d+)(:2,([DFPRST]*))?$`)

// setup makes top/base (the trusted directory handed to Deliver) and
// returns top, base's path, and base opened.
func setup(t testing.TB) (top, base string, dir *os.File) {
	t.Helper()
	top = t.TempDir()
	base = filepath.Join(top, "base")
	if err := os.Mkdir(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	return top, base, dir
}

// mkMaildir makes a maildir with tmp/ new/ cur/ at p.
func mkMaildir(t testing.TB, p string) {
	t.Helper()
	for _, d := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(p, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func mkFile(t testing.TB, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// snapshot describes every entry beneath root (not following symlinks):
// type, permission bits, size, content of small files and link targets.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fmt.Sprintf("%v %d", fi.Mode(), fi.Size())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			v += " -> " + l
		case fi.Mode().IsRegular() && fi.Size() < 4096:
			b, _ := os.ReadFile(p)
			v += " " + strconv.Quote(string(b))
		}
		m[p] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sameSnapshot fails unless nothing beneath the snapshot's root changed.
func sameSnapshot(t testing.TB, before, after map[string]string) {
	t.Helper()
	for p, v := range after {
		if w, ok := before[p]; !ok {
			t.Errorf("new entry %s (%s)", p, v)
		} else if w != v {
			t.Errorf("changed %s: %s -> %s", p, w, v)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("removed %s", p)
		}
	}
}

// names lists a directory, sorted; a missing directory is empty.
func names(t testing.TB, p string) []string {
	t.Helper()
	es, err := os.ReadDir(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var n []string
	for _, e := range es {
		n = append(n, e.Name())
	}
	sort.Strings(n)
	return n
}

func perm(t testing.TB, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// withUmask sets the process umask for the test (tests using it are not
// parallel).
func withUmask(t testing.TB, mask int) {
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

// withHook installs faultHook for the test.
func withHook(t testing.TB, h func(stage, name string) error) {
	faultHook = h
	t.Cleanup(func() { faultHook = nil })
}

// modes runs f in each implementation mode: openat2 +
// renameat2(RENAME_NOREPLACE) (the normal path), linkat and unlinkat
// instead of renameat2, and the O_NOFOLLOW walk instead of openat2.
func modes(t *testing.T, f func(t *testing.T)) {
	for _, m := range []struct {
		name         string
		link, noOat2 bool
	}{{"rename", false, false}, {"link", true, false}, {"walk", false, true}} {
		t.Run(m.name, func(t *testing.T) {
			useLink, noOpenat2 = m.link, m.noOat2
			t.Cleanup(func() { useLink, noOpenat2 = false, false })
			f(t)
		})
	}
}

// wantStatus fails unless status.From(err) has the given enhanced code
// and reply code.
func wantStatus(t testing.TB, err error, code int, enhanced string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Deliver succeeded, want %d %s", code, enhanced)
	}
	st := status.From(err)
	if st.Code != code || st.Enhanced != enhanced {
		t.Errorf("status.From(%v) = %d %s, want %d %s", err, st.Code, st.Enhanced, code, enhanced)
	}
}
