package maildir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCreatingHook: Options.Creating hears the tmp/ name before the file
// exists, the file is then created under exactly that name, and an error
// from the hook stops the delivery with nothing in tmp/ or new/.
func TestCreatingHook(t *testing.T) {
	_, base, dir := setup(t)
	mkMaildir(t, filepath.Join(base, "Maildir"))
	var heard []string
	existed := false
	opt := Options{Now: fixedNow, Creating: func(tmp string) error {
		heard = append(heard, tmp)
		if _, err := os.Lstat(filepath.Join(base, "Maildir/tmp", tmp)); err == nil {
			existed = true
		}
		return nil
	}}
	r, err := Deliver(dir, "Maildir", "", strings.NewReader("Subject: x\n\nbody\n"), opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(heard) != 1 || existed {
		t.Fatalf("hook heard %v (existed before creation: %v), want one name not yet there", heard, existed)
	}
	if !strings.HasPrefix(strings.TrimPrefix(r.Path, "new/"), heard[0]) {
		t.Fatalf("delivered %s, announced %s", r.Path, heard[0])
	}
	refuse := errors.New("no record")
	opt.Creating = func(string) error { return refuse }
	before := snapshot(t, base)
	if _, err := Deliver(dir, "Maildir", "", strings.NewReader("Subject: y\n\nbody\n"), opt); !errors.Is(err, refuse) {
		t.Fatalf("Deliver with a failing hook: %v", err)
	}
	sameSnapshot(t, before, snapshot(t, base))
}

// TestRemoveTmp removes what a dead delivery left in tmp/, in INBOX or a
// folder, and nothing else: a name that is gone is no error, and a bad
// name, a symlink, a directory or a missing maildir change nothing.
func TestRemoveTmp(t *testing.T) {
	const tmp = "1700000000.M123456P42Q1R0123456789abcdef.host"
	for _, tc := range []struct {
		name, maildir, folder, tmp string
		pre                        func(t *testing.T, base string)
		removed                    bool
		fail                       bool
	}{
		{name: "inbox", maildir: "Maildir", tmp: tmp, pre: func(t *testing.T, b string) {
			mkMaildir(t, filepath.Join(b, "Maildir"))
			mkFile(t, filepath.Join(b, "Maildir/tmp", tmp), "partial")
		}, removed: true},
		{name: "folder", maildir: "Maildir", folder: "Work", tmp: tmp, pre: func(t *testing.T, b string) {
			mkMaildir(t, filepath.Join(b, "Maildir"))
			mkMaildir(t, filepath.Join(b, "Maildir/.Work"))
			mkFile(t, filepath.Join(b, "Maildir/.Work/tmp", tmp), "partial")
			mkFile(t, filepath.Join(b, "Maildir/tmp", tmp), "INBOX's, kept")
		}, removed: true},
		{name: "already gone", maildir: "Maildir", tmp: tmp, pre: func(t *testing.T, b string) {
			mkMaildir(t, filepath.Join(b, "Maildir"))
		}},
		{name: "symlink", maildir: "Maildir", tmp: tmp, pre: func(t *testing.T, b string) {
			mkMaildir(t, filepath.Join(b, "Maildir"))
			mkFile(t, filepath.Join(b, "victim"), "keep")
			symlink(t, filepath.Join(b, "victim"), filepath.Join(b, "Maildir/tmp", tmp))
		}, fail: true},
		{name: "directory", maildir: "Maildir", tmp: tmp, pre: func(t *testing.T, b string) {
			mkMaildir(t, filepath.Join(b, "Maildir"))
			mkMaildir(t, filepath.Join(b, "Maildir/tmp", tmp))
		}, fail: true},
		{name: "name with a slash", maildir: "Maildir", tmp: "../new/x", pre: func(t *testing.T, b string) {
			mkMaildir(t, filepath.Join(b, "Maildir"))
			mkFile(t, filepath.Join(b, "Maildir/new/x"), "delivered")
		}, fail: true},
		{name: "dot name", maildir: "Maildir", tmp: "..", pre: func(t *testing.T, b string) {
			mkMaildir(t, filepath.Join(b, "Maildir"))
		}, fail: true},
		{name: "maildir through a symlink", maildir: "Maildir", tmp: tmp, pre: func(t *testing.T, b string) {
			mkMaildir(t, filepath.Join(b, "elsewhere"))
			mkFile(t, filepath.Join(b, "elsewhere/tmp", tmp), "not ours")
			symlink(t, filepath.Join(b, "elsewhere"), filepath.Join(b, "Maildir"))
		}, fail: true},
		{name: "no maildir", maildir: "Maildir", tmp: tmp, pre: func(t *testing.T, b string) {}, fail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, base, dir := setup(t)
			tc.pre(t, base)
			before := snapshot(t, base)
			removed, err := RemoveTmp(dir, tc.maildir, tc.folder, tc.tmp)
			if (err != nil) != tc.fail || removed != tc.removed {
				t.Fatalf("RemoveTmp = %v, %v; want removed=%v fail=%v", removed, err, tc.removed, tc.fail)
			}
			after := snapshot(t, base)
			if !tc.removed {
				sameSnapshot(t, before, after)
				return
			}
			box := filepath.Join(base, tc.maildir)
			if tc.folder != "" {
				box = filepath.Join(box, "."+tc.folder)
			}
			gone := filepath.Join(box, "tmp", tc.tmp)
			if _, ok := after[gone]; ok {
				t.Fatalf("%s still there", gone)
			}
			delete(before, gone)
			sameSnapshot(t, before, after)
		})
	}
}
