package maildir

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func ino(t testing.TB, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestDurability records every fsync (by inode) and the link stage: the
// message file must be fsync'ed before it is linked, new/ (cur/) after it,
// as the last step, and every directory Deliver created must have had its
// parent fsync'ed before the message was linked.
func TestDurability(t *testing.T) {
	cases := []struct {
		name, maildir, folder string
		opt                   Options
		pre                   func(t *testing.T, base string)
		dst                   string
		synced                []string // directories whose fsync must precede the link
	}{
		{name: "inbox", maildir: "M", pre: func(t *testing.T, b string) { mkMaildir(t, filepath.Join(b, "M")) }, dst: "M/new"},
		{name: "cur", maildir: "M", opt: Options{Flags: "S"}, pre: func(t *testing.T, b string) { mkMaildir(t, filepath.Join(b, "M")) }, dst: "M/cur"},
		{name: "create", maildir: "a/b/M", opt: Options{Create: true}, dst: "a/b/M/new",
			synced: []string{".", "a", "a/b", "a/b/M"}},
		{name: "create-folder", maildir: "M", folder: "W", opt: Options{CreateFolders: true},
			pre: func(t *testing.T, b string) { mkMaildir(t, filepath.Join(b, "M")) }, dst: "M/.W/new",
			synced: []string{"M", "M/.W"}},
	}
	modes(t, func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				_, base, dir := setup(t)
				if c.pre != nil {
					c.pre(t, base)
				}
				var events []string
				fsyncFn = func(fd int) error {
					var st unix.Stat_t
					if err := unix.Fstat(fd, &st); err != nil {
						t.Error(err)
					}
					events = append(events, "fsync:"+strconv.FormatUint(st.Ino, 10))
					return unix.Fsync(fd)
				}
				t.Cleanup(func() { fsyncFn = unix.Fsync })
				withHook(t, func(stage, name string) error {
					events = append(events, stage)
					return nil
				})
				res, err := Deliver(dir, c.maildir, c.folder, strings.NewReader("x\n"), c.opt)
				if err != nil {
					t.Fatal(err)
				}
				link := slices.Index(events, "link")
				file := "fsync:" + strconv.FormatUint(ino(t, filepath.Join(base, c.maildir, res.Path)), 10)
				dst := "fsync:" + strconv.FormatUint(ino(t, filepath.Join(base, c.dst)), 10)
				if i := slices.Index(events, file); i < 0 || i > link {
					t.Errorf("file fsync at %d, link at %d: %q", i, link, events)
				}
				if i := len(events) - 1; events[i] != dst || i < link {
					t.Errorf("%s fsync at %d, want last, after link at %d: %q", c.dst, i, link, events)
				}
				for _, d := range c.synced {
					want := "fsync:" + strconv.FormatUint(ino(t, filepath.Join(base, d)), 10)
					if i := slices.Index(events, want); i < 0 || i > link {
						t.Errorf("%s fsync at %d, want before link at %d: %q", d, i, link, events)
					}
				}
			})
		}
	})
}
