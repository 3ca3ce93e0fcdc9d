package maildir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"lda/internal/status"

	"lda/internal/testutil"
)

// TestSymlinkAttacks plants symlinks (and a non-directory) on every level.
// Each delivery must fail with 450 4.2.0, and nothing anywhere in the test
// tree may change: not the victim directories the links point to, nor the
// maildir. Create and CreateFolders are on, so a delivery that would make
// a missing directory through a link is caught too.
func TestSymlinkAttacks(t *testing.T) {
	cases := []struct {
		name    string
		plant   func(t *testing.T, top, base string)
		maildir string
		folder  string
		flags   string
		errno   []error // any of these
	}{
		{name: "maildir-abs", maildir: "Maildir", plant: func(t *testing.T, top, base string) {
			mkMaildir(t, filepath.Join(top, "victim"))
			symlink(t, filepath.Join(top, "victim"), filepath.Join(base, "Maildir"))
		}},
		{name: "maildir-rel", maildir: "Maildir", plant: func(t *testing.T, top, base string) {
			mkMaildir(t, filepath.Join(top, "victim"))
			symlink(t, "../victim", filepath.Join(base, "Maildir"))
		}},
		{name: "maildir-inside", maildir: "Maildir", plant: func(t *testing.T, top, base string) {
			mkMaildir(t, filepath.Join(base, "Real"))
			symlink(t, "Real", filepath.Join(base, "Maildir"))
		}},
		{name: "maildir-dangling", maildir: "Maildir", plant: func(t *testing.T, top, base string) {
			symlink(t, filepath.Join(top, "nothing"), filepath.Join(base, "Maildir"))
		}},
		{name: "parent", maildir: "home/Maildir", plant: func(t *testing.T, top, base string) {
			mkMaildir(t, filepath.Join(top, "victim/Maildir"))
			symlink(t, filepath.Join(top, "victim"), filepath.Join(base, "home"))
		}},
		{name: "parent-missing-maildir", maildir: "home/Maildir", plant: func(t *testing.T, top, base string) {
			os.Mkdir(filepath.Join(top, "victim"), 0o755)
			symlink(t, filepath.Join(top, "victim"), filepath.Join(base, "home"))
		}},
		{name: "proc-magic", maildir: "Maildir", plant: func(t *testing.T, top, base string) {
			mkMaildir(t, filepath.Join(top, "victim"))
			symlink(t, "/proc/self/root"+filepath.Join(top, "victim"), filepath.Join(base, "Maildir"))
		}},
		{name: "tmp", maildir: "Maildir", plant: func(t *testing.T, top, base string) {
			mkMaildir(t, filepath.Join(top, "victim"))
			for _, d := range []string{"new", "cur"} {
				os.MkdirAll(filepath.Join(base, "Maildir", d), 0o755)
			}
			symlink(t, filepath.Join(top, "victim/tmp"), filepath.Join(base, "Maildir/tmp"))
		}},
		{name: "new", maildir: "Maildir", plant: func(t *testing.T, top, base string) {
			mkMaildir(t, filepath.Join(top, "victim"))
			for _, d := range []string{"tmp", "cur"} {
				os.MkdirAll(filepath.Join(base, "Maildir", d), 0o755)
			}
			symlink(t, filepath.Join(top, "victim/new"), filepath.Join(base, "Maildir/new"))
		}},
		{name: "cur", maildir: "Maildir", flags: "S", plant: func(t *testing.T, top, base string) {
			mkMaildir(t, filepath.Join(top, "victim"))
			for _, d := range []string{"tmp", "new"} {
				os.MkdirAll(filepath.Join(base, "Maildir", d), 0o755)
			}
			symlink(t, filepath.Join(top, "victim/cur"), filepath.Join(base, "Maildir/cur"))
		}},
		{name: "folder", maildir: "Maildir", folder: "Work", plant: func(t *testing.T, top, base string) {
			mkMaildir(t, filepath.Join(top, "victim"))
			mkMaildir(t, filepath.Join(base, "Maildir"))
			symlink(t, filepath.Join(top, "victim"), filepath.Join(base, "Maildir/.Work"))
		}},
		{name: "folder-tmp", maildir: "Maildir", folder: "Work", plant: func(t *testing.T, top, base string) {
			mkMaildir(t, filepath.Join(top, "victim"))
			mkMaildir(t, filepath.Join(base, "Maildir"))
			os.MkdirAll(filepath.Join(base, "Maildir/.Work/new"), 0o755)
			symlink(t, filepath.Join(top, "victim/tmp"), filepath.Join(base, "Maildir/.Work/tmp"))
		}},
		{name: "folder-new", maildir: "Maildir", folder: "Work", plant: func(t *testing.T, top, base string) {
			mkMaildir(t, filepath.Join(top, "victim"))
			mkMaildir(t, filepath.Join(base, "Maildir"))
			os.MkdirAll(filepath.Join(base, "Maildir/.Work/tmp"), 0o755)
			symlink(t, filepath.Join(top, "victim/new"), filepath.Join(base, "Maildir/.Work/new"))
		}},
		{name: "tmp-is-file", maildir: "Maildir", errno: []error{unix.ENOTDIR}, plant: func(t *testing.T, top, base string) {
			mkFile(t, filepath.Join(base, "Maildir/tmp"), "not a directory")
			os.MkdirAll(filepath.Join(base, "Maildir/new"), 0o755)
		}},
		{name: "new-is-fifo", maildir: "Maildir", errno: []error{unix.ENOTDIR}, plant: func(t *testing.T, top, base string) {
			os.MkdirAll(filepath.Join(base, "Maildir/tmp"), 0o755)
			if err := unix.Mkfifo(filepath.Join(base, "Maildir/new"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	modes(t, func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				top, base, dir := setup(t)
				c.plant(t, top, base)
				before := snapshot(t, top)
				_, err := Deliver(dir, c.maildir, c.folder, strings.NewReader("attack\n"),
					Options{Create: true, CreateFolders: true, Flags: c.flags})
				wantStatus(t, err, 450, "4.2.0")
				errnos := c.errno
				if errnos == nil {
					errnos = []error{unix.ELOOP, unix.EXDEV}
				}
				found := false
				for _, e := range errnos {
					found = found || errors.Is(err, e)
				}
				if !found {
					t.Errorf("err = %v, want one of %v", err, errnos)
				}
				sameSnapshot(t, before, snapshot(t, top))
				if _, err := os.Lstat(filepath.Join(top, "nothing")); err == nil {
					t.Error("dangling symlink target was created")
				}
			})
		}
	})
}

// TestBadNames: maildir and folder names are refused before any system
// call, with nothing written anywhere.
func TestBadNames(t *testing.T) {
	long := strings.Repeat("a", 300)
	badMaildir := []string{"", "/abs", "/", "..", "../x", "../base/M", "a/../M", "M/..", "a//M", "a/./M", "./M", "M/",
		"M\x00", "M\n", "M\r", "M\x01", "M\x7f", "M\u0085", "M\xff", strings.Repeat("a/", 2048) + "M"}
	badFolder := []string{"../x", "..", ".", "a/b", "/a", "a..b", ".a", "a.", "a.", "..a", "a\x00", "a\x01", "a\tb", "a\nb",
		"a\x7f", "a\u009b", "a\xffb", long, strings.Repeat("a", 255), "a/../../x"}
	for _, name := range badMaildir {
		t.Run("maildir/"+strconv.Quote(trunc(name)), func(t *testing.T) {
			if validName(name) == nil {
				t.Errorf("validName(%q) = nil", name)
			}
			top, base, dir := setup(t)
			mkMaildir(t, filepath.Join(base, "M"))
			before := snapshot(t, top)
			_, err := Deliver(dir, name, "", strings.NewReader("x"), Options{Create: true, CreateFolders: true})
			wantStatus(t, err, 451, "4.3.5")
			sameSnapshot(t, before, snapshot(t, top))
		})
	}
	for _, folder := range badFolder {
		t.Run("folder/"+strconv.Quote(trunc(folder)), func(t *testing.T) {
			if ValidFolder(folder) == nil {
				t.Errorf("ValidFolder(%q) = nil", folder)
			}
			top, base, dir := setup(t)
			mkMaildir(t, filepath.Join(base, "M"))
			before := snapshot(t, top)
			_, err := Deliver(dir, "M", folder, strings.NewReader("x"), Options{Create: true, CreateFolders: true})
			var st *status.Status
			if !errors.As(err, &st) {
				t.Fatalf("err = %v, want a *status.Status", err)
			}
			wantStatus(t, err, 550, "5.7.1")
			sameSnapshot(t, before, snapshot(t, top))
		})
	}
	t.Run("folder/empty", func(t *testing.T) {
		// "" is not a folder name; Deliver reads it as INBOX.
		if ValidFolder("") == nil {
			t.Error(`ValidFolder("") = nil`)
		}
	})
	t.Run("nil-dir", func(t *testing.T) {
		_, err := Deliver(nil, "M", "", strings.NewReader("x"), Options{})
		wantStatus(t, err, 451, "4.3.5")
	})
}

func trunc(s string) string {
	if len(s) > 20 {
		return s[:20] + "..." + strconv.Itoa(len(s))
	}
	return s
}

func TestGoodNames(t *testing.T) {
	for _, n := range []string{".", "M", "a/b/M", "Maildir-ü", ".hidden", "a.b", "...x"} {
		t.Run("maildir/"+strconv.Quote(trunc(n)), func(t *testing.T) {
			if err := validName(n); err != nil {
				t.Errorf("validName(%q) = %v", n, err)
			}
		})
	}
	for _, f := range []string{"Work", "Work.Sub", "a b", "Ärger", "&AOQ-", strings.Repeat("a", 254), "x-y_z", `back\slash`} {
		t.Run("folder/"+strconv.Quote(trunc(f)), func(t *testing.T) {
			if err := ValidFolder(f); err != nil {
				t.Errorf("ValidFolder(%q) = %v", f, err)
			}
		})
	}
	t.Run("254-bytes-deliverable", func(t *testing.T) {
		_, _, dir := setup(t)
		if _, err := Deliver(dir, "M", strings.Repeat("a", 254), strings.NewReader("x"),
			Options{Create: true, CreateFolders: true}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPlantedTmp: names planted in tmp/ (files, a symlink to a victim, a
// FIFO, and the exact name Deliver is about to use) are never opened,
// changed or removed.
func TestPlantedTmp(t *testing.T) {
	modes(t, func(t *testing.T) {
		top, base, dir := setup(t)
		md := filepath.Join(base, "Maildir")
		mkMaildir(t, md)
		mkFile(t, filepath.Join(top, "victim"), "victim file")
		mkFile(t, filepath.Join(md, "tmp/old"), "planted file")
		symlink(t, filepath.Join(top, "victim"), filepath.Join(md, "tmp/link"))
		if err := unix.Mkfifo(filepath.Join(md, "tmp/fifo"), 0o600); err != nil {
			t.Fatal(err)
		}
		var planted []string
		withHook(t, func(stage, name string) error {
			if stage == "create" && len(planted) < 3 {
				// The very name about to be created: a file, a symlink, a FIFO.
				p := filepath.Join(md, "tmp", name)
				switch len(planted) {
				case 0:
					mkFile(t, p, "planted exact")
				case 1:
					symlink(t, filepath.Join(top, "victim"), p)
				case 2:
					unix.Mkfifo(p, 0o600)
				}
				planted = append(planted, name)
			}
			return nil
		})
		before := snapshot(t, top)
		res, err := Deliver(dir, "Maildir", "", strings.NewReader("real message\n"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(planted) != 3 {
			t.Fatalf("hook planted %d names, want 3", len(planted))
		}
		after := snapshot(t, top)
		delete(after, filepath.Join(md, res.Path))
		// Only the maildir's own tmp/ may gain entries (the planted ones);
		// t.TempDir() itself is often under /tmp, so match the maildir's.
		mdTmp := filepath.Join(md, "tmp") + "/"
		for p, v := range after {
			if _, ok := before[p]; !ok && !strings.HasPrefix(p, mdTmp) {
				t.Errorf("unexpected new entry %s (%s)", p, v)
			}
		}
		for p, v := range before {
			if after[p] != v {
				t.Errorf("%s changed: %s -> %s", p, v, after[p])
			}
		}
		if b, _ := os.ReadFile(filepath.Join(md, res.Path)); string(b) != "real message\n" {
			t.Errorf("delivered %q", b)
		}
		if got, want := len(names(t, filepath.Join(md, "tmp"))), 6; got != want {
			t.Errorf("tmp/ has %d entries, want the %d planted", got, want)
		}
	})
}

// TestPlantedNew: the final name already taken in new/ or cur/ (planted just
// before the link) is never replaced; another name is used.
func TestPlantedNew(t *testing.T) {
	for _, flags := range []string{"", "S"} {
		t.Run("flags="+flags, func(t *testing.T) {
			modes(t, func(t *testing.T) {
				top, base, dir := setup(t)
				md := filepath.Join(base, "Maildir")
				mkMaildir(t, md)
				dst := map[string]string{"": "new", "S": "cur"}[flags]
				n := 0
				withHook(t, func(stage, name string) error {
					if stage == "link" && n < 2 {
						n++
						mkFile(t, filepath.Join(md, dst, name), "planted "+strconv.Itoa(n))
					}
					return nil
				})
				res, err := Deliver(dir, "Maildir", "", strings.NewReader("real\n"), Options{Flags: flags})
				if err != nil {
					t.Fatal(err)
				}
				if n != 2 {
					t.Fatalf("planted %d, want 2", n)
				}
				got := map[string]bool{}
				for p, v := range snapshot(t, filepath.Join(md, dst)) {
					if strings.Contains(v, "planted") {
						got[v] = true
					} else if p != filepath.Join(md, res.Path) && p != filepath.Join(md, dst) {
						t.Errorf("unexpected %s", p)
					}
				}
				if len(got) != 2 {
					t.Errorf("planted files now %v, want both intact", got)
				}
				if b, _ := os.ReadFile(filepath.Join(md, res.Path)); string(b) != "real\n" {
					t.Errorf("delivered %q", b)
				}
				if n := names(t, filepath.Join(md, "tmp")); len(n) != 0 {
					t.Errorf("tmp/ holds %q", n)
				}
				_ = top
			})
		})
	}
}

// TestNameExhaustion: when every name is taken, Deliver gives up with
// EEXIST (450 4.2.0) after a bounded number of tries and leaves nothing.
func TestNameExhaustion(t *testing.T) {
	for _, stage := range []string{"create", "link"} {
		t.Run(stage, func(t *testing.T) {
			_, base, dir := setup(t)
			md := filepath.Join(base, "Maildir")
			mkMaildir(t, md)
			tries := 0
			withHook(t, func(s, name string) error {
				if s == stage {
					tries++
					mkFile(t, filepath.Join(md, map[string]string{"create": "tmp", "link": "new"}[stage], name), "planted")
				}
				return nil
			})
			_, err := Deliver(dir, "Maildir", "", strings.NewReader("x"), Options{})
			if !errors.Is(err, unix.EEXIST) {
				t.Errorf("err = %v, want EEXIST", err)
			}
			wantStatus(t, err, 450, "4.2.0")
			if tries != maxTries {
				t.Errorf("%d tries, want %d", tries, maxTries)
			}
			for _, d := range []string{"tmp", "new", "cur"} {
				for p, v := range snapshot(t, filepath.Join(md, d)) {
					if p != filepath.Join(md, d) && !strings.Contains(v, "planted") {
						t.Errorf("left behind: %s", p)
					}
				}
			}
		})
	}
}

// errReader gives n bytes, then err (errBroken if nil).
type errReader struct {
	n   int
	err error
}

var errBroken = errors.New("reader broke")

func (r *errReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		if r.err != nil {
			return 0, r.err
		}
		return 0, errBroken
	}
	n := min(len(p), r.n)
	for i := range n {
		p[i] = 'x'
	}
	r.n -= n
	return n, nil
}

// TestFaults injects an error at each stage: the error is returned with its
// errno (so status.From maps it), tmp/ is empty and nothing is in new/ or
// cur/.
func TestFaults(t *testing.T) {
	errnos := []struct {
		errno    syscall.Errno
		code     int
		enhanced string
	}{
		{unix.EIO, 451, "4.3.0"},
		{unix.ENOSPC, 452, "4.3.1"},
		{unix.EDQUOT, 552, "5.2.2"},
	}
	stages := []string{"create", "write", "fsync", "close", "link", "dirsync"}
	for _, flags := range []string{"", "FS"} {
		for _, stage := range stages {
			for _, e := range errnos {
				t.Run(strings.Join([]string{"flags=" + flags, stage, e.errno.Error()}, "/"), func(t *testing.T) {
					modes(t, func(t *testing.T) {
						_, base, dir := setup(t)
						md := filepath.Join(base, "Maildir")
						mkMaildir(t, md)
						hit := 0
						withHook(t, func(s, name string) error {
							if s == stage {
								hit++
								return e.errno
							}
							return nil
						})
						_, err := Deliver(dir, "Maildir", "", strings.NewReader("message\n"), Options{Flags: flags})
						if hit != 1 {
							t.Errorf("stage %q reached %d times, want 1", stage, hit)
						}
						if !errors.Is(err, e.errno) {
							t.Errorf("err = %v, want errno %v", err, e.errno)
						}
						wantStatus(t, err, e.code, e.enhanced)
						for _, d := range []string{"tmp", "new", "cur"} {
							if n := names(t, filepath.Join(md, d)); len(n) != 0 {
								t.Errorf("%s/ holds %q", d, n)
							}
						}
					})
				})
			}
		}
	}
	t.Run("reader", func(t *testing.T) {
		// io.ErrUnexpectedEOF from the reader itself (a DATA reader cut
		// off before its end marker, say) is an error like any other,
		// not the end of the message.
		for _, rerr := range []error{errBroken, io.ErrUnexpectedEOF} {
			for _, n := range []int{0, 10, 300 << 10} {
				t.Run(fmt.Sprintf("%v/%d", rerr, n), func(t *testing.T) {
					_, base, dir := setup(t)
					md := filepath.Join(base, "Maildir")
					mkMaildir(t, md)
					_, err := Deliver(dir, "Maildir", "", &errReader{n: n, err: rerr}, Options{})
					if !errors.Is(err, rerr) {
						t.Errorf("err = %v, want %v", err, rerr)
					}
					for _, d := range []string{"tmp", "new", "cur"} {
						if n := names(t, filepath.Join(md, d)); len(n) != 0 {
							t.Errorf("%s/ holds %q", d, n)
						}
					}
				})
			}
		}
	})
}

// TestMissing: without Create, a missing maildir, folder or subdirectory is
// 450 4.2.0 and nothing is created.
func TestMissing(t *testing.T) {
	cases := []struct {
		name, maildir, folder string
		pre                   func(t *testing.T, base string)
	}{
		{name: "maildir", maildir: "Maildir"},
		{name: "parent", maildir: "home/u/Maildir"},
		{name: "tmp", maildir: "Maildir", pre: func(t *testing.T, b string) {
			os.MkdirAll(filepath.Join(b, "Maildir/new"), 0o700)
			os.MkdirAll(filepath.Join(b, "Maildir/cur"), 0o700)
		}},
		{name: "new", maildir: "Maildir", pre: func(t *testing.T, b string) {
			os.MkdirAll(filepath.Join(b, "Maildir/tmp"), 0o700)
		}},
		{name: "folder", maildir: "Maildir", folder: "Work", pre: func(t *testing.T, b string) { mkMaildir(t, filepath.Join(b, "Maildir")) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			top, base, dir := setup(t)
			if c.pre != nil {
				c.pre(t, base)
			}
			before := snapshot(t, top)
			// Create covers the maildir only; CreateFolders the folder only.
			opt := Options{}
			if c.folder != "" {
				opt.Create = true
			}
			_, err := Deliver(dir, c.maildir, c.folder, strings.NewReader("x"), opt)
			if !errors.Is(err, unix.ENOENT) {
				t.Errorf("err = %v, want ENOENT", err)
			}
			wantStatus(t, err, 450, "4.2.0")
			sameSnapshot(t, before, snapshot(t, top))
		})
	}
}

// TestForeignOwner: a maildir, or one of its directories, owned by another
// user is refused with 4.2.0 when CheckOwner is set.
func TestForeignOwner(t *testing.T) {
	for _, sub := range []string{"", "tmp", "new"} {
		t.Run("owner of "+sub, func(t *testing.T) {
			testutil.RequireRoot(t) // to chown
			top := t.TempDir()
			for _, d := range []string{"tmp", "new", "cur"} {
				if err := os.MkdirAll(filepath.Join(top, "md", d), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chown(filepath.Join(top, "md", sub), 4242, 4242); err != nil {
				t.Fatal(err)
			}
			dir, err := os.Open(top)
			if err != nil {
				t.Fatal(err)
			}
			defer dir.Close()
			_, err = Deliver(dir, "md", "", strings.NewReader("x\n"), Options{CheckOwner: true, Owner: 0})
			var st *status.Status
			if !errors.As(err, &st) || st.Enhanced != "4.2.0" {
				t.Fatalf("err = %v, want 450 4.2.0", err)
			}
			if ents, _ := os.ReadDir(filepath.Join(top, "md", "new")); len(ents) != 0 {
				t.Fatalf("delivered into a foreign-owned maildir")
			}
			if _, err := Deliver(dir, "md", "", strings.NewReader("x\n"), Options{}); err != nil {
				t.Fatalf("without CheckOwner: %v", err)
			}
		})
	}
	t.Run("no uid to check", func(t *testing.T) {
		// CheckOwner with a negative Owner is a caller's error, not
		// "check nothing".
		top := t.TempDir()
		mkMaildir(t, filepath.Join(top, "md"))
		dir, err := os.Open(top)
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		_, err = Deliver(dir, "md", "", strings.NewReader("x\n"), Options{CheckOwner: true, Owner: -1})
		var st *status.Status
		if !errors.As(err, &st) || st.Code != 451 {
			t.Fatalf("err = %v, want a 451 configuration error", err)
		}
	})
	t.Run("create in a foreign maildir", func(t *testing.T) {
		// Another user's empty maildir: refused before tmp/ new/ cur/
		// are made in it.
		top := t.TempDir()
		md := filepath.Join(top, "md")
		if err := os.Mkdir(md, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(md, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		dir, err := os.Open(top)
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		_, err = Deliver(dir, "md", "", strings.NewReader("x\n"), Options{CheckOwner: true, Owner: 0, Create: true})
		var st *status.Status
		if !errors.As(err, &st) || st.Enhanced != "4.2.0" {
			t.Fatalf("err = %v, want 450 4.2.0", err)
		}
		if ents, _ := os.ReadDir(md); len(ents) != 0 {
			t.Fatalf("made %d entries in a foreign-owned maildir", len(ents))
		}
	})
}
