package maildir

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"

	gomaildir "github.com/emersion/go-maildir"
	"golang.org/x/sys/unix"

	"lda/internal/status"
)

// messages cover line-ending oddities, every byte value, buffer boundaries
// and the empty message.
func messages() map[string][]byte {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789abcdef\r\n.\r\n\n\r"), (1<<20)/23+7) // > 1 MiB, not a multiple of the buffer
	return map[string][]byte{
		"small": []byte("From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"),
		"bytes": all,
		"big":   big,
		"empty": {},
	}
}

// sources give the message as different reader types: a WriterTo, a plain
// reader, an *os.File (kernel copy) and a pipe.
var sources = map[string]func(t *testing.T, b []byte) io.Reader{
	"bytes": func(t *testing.T, b []byte) io.Reader { return bytes.NewReader(b) },
	"plain": func(t *testing.T, b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
	"file": func(t *testing.T, b []byte) io.Reader {
		p := filepath.Join(t.TempDir(), "msg")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	},
	"pipe": func(t *testing.T, b []byte) io.Reader {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() { w.Write(b); w.Close() }()
		t.Cleanup(func() { r.Close() })
		return r
	},
}

// checkDelivered verifies the one delivered file: where it is, its name,
// size, mode and content, and that tmp/ and the other of new/ cur/ are
// empty.
func checkDelivered(t *testing.T, box string, res Result, prefix, dst, flags string, msg []byte) {
	t.Helper()
	dir, file, ok := strings.Cut(strings.TrimPrefix(res.Path, prefix), "/")
	if !strings.HasPrefix(res.Path, prefix) || !ok || dir != dst {
		t.Fatalf("Result.Path = %q, want %s%s/...", res.Path, prefix, dst)
	}
	if got := names(t, filepath.Join(box, dst)); len(got) != 1 || got[0] != file {
		t.Errorf("%s/ holds %q, want only %q", dst, got, file)
	}
	other := map[string]string{"new": "cur", "cur": "new"}[dst]
	if got := names(t, filepath.Join(box, other)); len(got) != 0 {
		t.Errorf("%s/ holds %q, want nothing", other, got)
	}
	if got := names(t, filepath.Join(box, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ holds %q, want nothing", got)
	}
	m := nameRE.FindStringSubmatch(file)
	if m == nil {
		t.Fatalf("name %q does not match %v", file, nameRE)
	}
	if m[1] != strconv.FormatInt(fixed.Unix(), 10) || m[2] != "123456" || m[3] != strconv.Itoa(os.Getpid()) {
		t.Errorf("name %q: want seconds %d, M123456, P%d", file, fixed.Unix(), os.Getpid())
	}
	if m[7] != strconv.Itoa(len(msg)) || res.Size != int64(len(msg)) {
		t.Errorf("name %q, Size %d: want S=%d", file, res.Size, len(msg))
	}
	if dst == "cur" && m[8] != ":2,"+flags || dst == "new" && m[8] != "" {
		t.Errorf("name %q: info %q, want flags %q", file, m[8], flags)
	}
	p := filepath.Join(box, dst, file)
	if got := perm(t, p); got != 0o600 {
		t.Errorf("file mode %v, want 0600", got)
	}
	if st, err := os.Lstat(p); err == nil && st.Sys().(*syscall.Stat_t).Nlink != 1 {
		t.Errorf("file has %d links, want 1 (tmp name left behind?)", st.Sys().(*syscall.Stat_t).Nlink)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Errorf("content differs: got %d bytes, want %d", len(got), len(msg))
	}
}

func TestDeliver(t *testing.T) {
	cases := []struct {
		name     string
		maildir  string
		folder   string
		opt      Options
		pre      func(t *testing.T, base string) // existing state
		dst      string
		flags    string
		created  []string // directories Deliver must make, mode 0700
		markerAt string   // folder whose maildirfolder Deliver must make
	}{
		{name: "inbox", maildir: "Maildir", pre: func(t *testing.T, b string) { mkMaildir(t, filepath.Join(b, "Maildir")) }, dst: "new"},
		{name: "inbox-dot", maildir: ".", pre: func(t *testing.T, b string) { mkMaildir(t, b) }, dst: "new"},
		{name: "inbox-deep", maildir: "home/u/Maildir", pre: func(t *testing.T, b string) { mkMaildir(t, filepath.Join(b, "home/u/Maildir")) }, dst: "new"},
		{name: "flags", maildir: "Maildir", opt: Options{Flags: "SF"}, pre: func(t *testing.T, b string) { mkMaildir(t, filepath.Join(b, "Maildir")) }, dst: "cur", flags: "FS"},
		{name: "all-flags", maildir: "Maildir", opt: Options{Flags: "TSRPFDS"}, pre: func(t *testing.T, b string) { mkMaildir(t, filepath.Join(b, "Maildir")) }, dst: "cur", flags: "DFPRST"},
		{name: "folder", maildir: "Maildir", folder: "Work", pre: func(t *testing.T, b string) {
			mkMaildir(t, filepath.Join(b, "Maildir"))
			mkMaildir(t, filepath.Join(b, "Maildir/.Work"))
		}, dst: "new"},
		{name: "subfolder-flags", maildir: "Maildir", folder: "Lists.golang-nuts ü", opt: Options{Flags: "S"}, pre: func(t *testing.T, b string) {
			mkMaildir(t, filepath.Join(b, "Maildir"))
			mkMaildir(t, filepath.Join(b, "Maildir/.Lists.golang-nuts ü"))
		}, dst: "cur", flags: "S"},
		{name: "create", maildir: "a/b/Maildir", opt: Options{Create: true}, dst: "new",
			created: []string{"a", "a/b", "a/b/Maildir", "a/b/Maildir/tmp", "a/b/Maildir/new", "a/b/Maildir/cur"}},
		{name: "create-missing-subdirs", maildir: "Maildir", opt: Options{Create: true, Flags: "S"}, pre: func(t *testing.T, b string) {
			os.MkdirAll(filepath.Join(b, "Maildir/new"), 0o755)
		}, dst: "cur", flags: "S", created: []string{"Maildir/tmp", "Maildir/cur"}},
		{name: "create-folder", maildir: "Maildir", folder: "Work.Sub", opt: Options{Create: true, CreateFolders: true}, dst: "new",
			created:  []string{"Maildir", "Maildir/tmp", "Maildir/new", "Maildir/cur", "Maildir/.Work.Sub", "Maildir/.Work.Sub/tmp", "Maildir/.Work.Sub/new", "Maildir/.Work.Sub/cur"},
			markerAt: "Maildir/.Work.Sub"},
		{name: "create-folder-only", maildir: "Maildir", folder: "Work", opt: Options{CreateFolders: true, Flags: "R"},
			pre: func(t *testing.T, b string) { mkMaildir(t, filepath.Join(b, "Maildir")) },
			dst: "cur", flags: "R",
			created: []string{"Maildir/.Work", "Maildir/.Work/tmp", "Maildir/.Work/new", "Maildir/.Work/cur"}, markerAt: "Maildir/.Work"},
	}
	msgs := messages()
	for _, umask := range []int{0, 0o277} {
		t.Run("umask"+strconv.FormatInt(int64(umask), 8), func(t *testing.T) {
			withUmask(t, umask)
			modes(t, func(t *testing.T) {
				for _, c := range cases {
					t.Run(c.name, func(t *testing.T) {
						for mname, msg := range msgs {
							t.Run(mname, func(t *testing.T) {
								_, base, dir := setup(t)
								if c.pre != nil {
									c.pre(t, base)
								}
								opt := c.opt
								opt.Now = fixedNow
								res, err := Deliver(dir, c.maildir, c.folder, bytes.NewReader(msg), opt)
								if err != nil {
									t.Fatalf("Deliver: %v", err)
								}
								box, prefix := filepath.Join(base, c.maildir), ""
								if c.folder != "" {
									box, prefix = filepath.Join(box, "."+c.folder), "."+c.folder+"/"
								}
								checkDelivered(t, box, res, prefix, c.dst, c.flags, msg)
								for _, d := range c.created {
									if got := perm(t, filepath.Join(base, d)); got != fs0700 {
										t.Errorf("%s: mode %v, want drwx------", d, got)
									}
								}
								if c.markerAt != "" {
									p := filepath.Join(base, c.markerAt, "maildirfolder")
									if got := perm(t, p); got != 0o600 {
										t.Errorf("maildirfolder mode %v, want 0600", got)
									}
								}
							})
						}
					})
				}
			})
		})
	}
}

const fs0700 = os.ModeDir | 0o700

// TestNoRenameNoReplace plays a file system without RENAME_NOREPLACE
// (renameat2 says EINVAL): the message goes in with linkat, the tmp name
// is removed, and a name taken in new/ is still never replaced.
func TestNoRenameNoReplace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		taken bool // the first final name already exists in new/
	}{{"free name", false}, {"taken name", true}} {
		t.Run(tc.name, func(t *testing.T) {
			_, base, dir := setup(t)
			box := filepath.Join(base, "Maildir")
			mkMaildir(t, box)
			tries := 0
			renameNoReplace = func(int, string, int, string) error { tries++; return unix.EINVAL }
			t.Cleanup(func() {
				renameNoReplace = func(olddirfd int, oldpath string, newdirfd int, newpath string) error {
					return unix.Renameat2(olddirfd, oldpath, newdirfd, newpath, unix.RENAME_NOREPLACE)
				}
			})
			msg := []byte("Subject: x\n\nbody\n")
			planted := []byte("planted\n")
			if tc.taken {
				// The name Deliver will draw first, at fixedNow with the
				// process's next counter, cannot be known; plant on its
				// first link instead.
				plant := true
				withHook(t, func(stage, name string) error {
					if stage == "link" && plant {
						plant = false
						return os.WriteFile(filepath.Join(box, "new", name), planted, 0o600)
					}
					return nil
				})
			}
			res, err := Deliver(dir, "Maildir", "", bytes.NewReader(msg), Options{Now: fixedNow})
			if err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if tries == 0 {
				t.Fatal("renameat2 was not tried first")
			}
			if !tc.taken {
				checkDelivered(t, box, res, "", "new", "", msg)
			} else if b, err := os.ReadFile(filepath.Join(box, res.Path)); err != nil || !bytes.Equal(b, msg) {
				t.Fatalf("the message reads %q (%v)", b, err)
			}
			if n := names(t, filepath.Join(box, "tmp")); len(n) != 0 {
				t.Fatalf("tmp/ holds %q", n)
			}
			if tc.taken {
				news := names(t, filepath.Join(box, "new"))
				if len(news) != 2 {
					t.Fatalf("new/ holds %q, want the planted name and the message", news)
				}
				for _, n := range news {
					if n == filepath.Base(res.Path) {
						continue
					}
					if b, _ := os.ReadFile(filepath.Join(box, "new", n)); !bytes.Equal(b, planted) {
						t.Fatalf("the planted file now reads %q", b)
					}
				}
			}
		})
	}
}

func TestSources(t *testing.T) {
	for sname, src := range sources {
		for mname, msg := range messages() {
			t.Run(sname+"/"+mname, func(t *testing.T) {
				_, base, dir := setup(t)
				mkMaildir(t, filepath.Join(base, "M"))
				res, err := Deliver(dir, "M", "", src(t, msg), Options{Now: fixedNow})
				if err != nil {
					t.Fatal(err)
				}
				checkDelivered(t, filepath.Join(base, "M"), res, "", "new", "", msg)
			})
		}
	}
}

// TestGoMaildirReads cross-checks with a third-party reader that the result
// is a valid maildir: go-maildir finds each message, its flags and content.
func TestGoMaildirReads(t *testing.T) {
	_, base, dir := setup(t)
	opt := Options{Create: true, CreateFolders: true, Now: fixedNow}
	want := map[string]string{} // key -> content
	deliver := func(folder, flags, body string) {
		t.Helper()
		o := opt
		o.Flags = flags
		if _, err := Deliver(dir, "Maildir", folder, strings.NewReader(body), o); err != nil {
			t.Fatal(err)
		}
	}
	deliver("", "", "inbox new\r\n")
	deliver("", "SF", "inbox cur\r\n")
	deliver("Work", "", "work new\r\n")

	inbox := gomaildir.Dir(filepath.Join(base, "Maildir"))
	cur, err := inbox.Messages()
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) != 1 || string(cur[0].Flags()) != "FS" {
		t.Fatalf("go-maildir: cur has %d messages; flags %q, want 1 with FS", len(cur), flagsOf(cur))
	}
	want[cur[0].Key()] = "inbox cur\r\n"
	unseen, err := inbox.Unseen()
	if err != nil {
		t.Fatal(err)
	}
	if len(unseen) != 1 {
		t.Fatalf("go-maildir: %d unseen in INBOX, want 1", len(unseen))
	}
	want[unseen[0].Key()] = "inbox new\r\n"
	work := gomaildir.Dir(filepath.Join(base, "Maildir", ".Work"))
	wu, err := work.Unseen()
	if err != nil || len(wu) != 1 {
		t.Fatalf("go-maildir: .Work unseen %d, %v; want 1", len(wu), err)
	}
	for key, body := range want {
		m, err := inbox.MessageByKey(key)
		if err != nil {
			t.Fatalf("MessageByKey(%q): %v", key, err)
		}
		checkBody(t, m, body)
	}
	checkBody(t, wu[0], "work new\r\n")
}

func flagsOf(ms []*gomaildir.Message) []string {
	var s []string
	for _, m := range ms {
		s = append(s, string(m.Flags()))
	}
	return s
}

func checkBody(t *testing.T, m *gomaildir.Message, want string) {
	t.Helper()
	r, err := m.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil || string(b) != want {
		t.Errorf("go-maildir read %q, %v; want %q", b, err, want)
	}
}

func TestHostEscaping(t *testing.T) {
	cases := []struct{ host, want string }{
		{"mx.example.org", "mx.example.org"},
		{"a/b:c", `a\057b\072c`},
		{"a,S=1", `a\054S=1`},
		{`back\slash`, `back\134slash`},
		{"nl\nnul\x00del\x7f", `nl\012nul\000del\177`},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			_, base, dir := setup(t)
			mkMaildir(t, filepath.Join(base, "M"))
			res, err := Deliver(dir, "M", "", strings.NewReader("x"), Options{Host: c.host, Now: fixedNow})
			if err != nil {
				t.Fatal(err)
			}
			m := nameRE.FindStringSubmatch(strings.TrimPrefix(res.Path, "new/"))
			if m == nil || m[6] != c.want {
				t.Errorf("Path %q: host part %q, want %q", res.Path, m, c.want)
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		h, _ := os.Hostname()
		want, _ := escapeHost(h)
		if got, _ := escapeHost(""); got != want || got == "" {
			t.Errorf("escapeHost(\"\") = %q, want %q", got, want)
		}
	})
	t.Run("too-long", func(t *testing.T) {
		_, base, dir := setup(t)
		mkMaildir(t, filepath.Join(base, "M"))
		_, err := Deliver(dir, "M", "", strings.NewReader("x"), Options{Host: strings.Repeat("/", 43)}) // 172 bytes escaped
		var st *status.Status
		if !errors.As(err, &st) || st != nil && st.Enhanced != status.ConfigError.Enhanced {
			t.Errorf("err = %v, want %v", err, status.ConfigError)
		}
		if n := names(t, filepath.Join(base, "M/tmp")); len(n) != 0 {
			t.Errorf("tmp/ holds %q", n)
		}
	})
}

func TestFlags(t *testing.T) {
	good := map[string]string{"": "", "S": "S", "SF": "FS", "TSRPFD": "DFPRST", "SSS": "S", "FSF": "FS"}
	for in, want := range good {
		t.Run("good/"+in, func(t *testing.T) {
			if got, err := ParseFlags(in); got != want || err != nil {
				t.Errorf("ParseFlags(%q) = %q, %v; want %q", in, got, err, want)
			}
		})
	}
	for _, in := range []string{"s", "a", "S:", "S,", "2,S", "S\x00", "SX", " S"} {
		t.Run("bad/"+strconv.Quote(in), func(t *testing.T) {
			if got, err := ParseFlags(in); err == nil {
				t.Errorf("ParseFlags(%q) = %q, nil; want an error", in, got)
			}
			top, base, dir := setup(t)
			mkMaildir(t, filepath.Join(base, "M"))
			before := snapshot(t, top)
			_, err := Deliver(dir, "M", "", strings.NewReader("x"), Options{Flags: in})
			wantStatus(t, err, 501, "5.5.4")
			sameSnapshot(t, before, snapshot(t, top))
		})
	}
}

func TestConcurrent(t *testing.T) {
	_, base, dir := setup(t)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				body := "msg " + strconv.Itoa(w) + "/" + strconv.Itoa(i)
				// Same clock for everyone: uniqueness must not depend on it.
				res, err := Deliver(dir, "Maildir", "F", strings.NewReader(body), Options{Create: true, CreateFolders: true, Now: fixedNow})
				if err == nil {
					var b []byte
					b, err = os.ReadFile(filepath.Join(base, "Maildir", res.Path))
					if err == nil && string(b) != body {
						err = errors.New("content mismatch in " + res.Path)
					}
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(names(t, filepath.Join(base, "Maildir/.F/new"))); n != workers*each {
		t.Errorf("%d messages in new/, want %d", n, workers*each)
	}
	if n := names(t, filepath.Join(base, "Maildir/.F/tmp")); len(n) != 0 {
		t.Errorf("tmp/ holds %q", n)
	}
}

func BenchmarkDeliver(b *testing.B) {
	_, base, dir := setup(b)
	mkMaildir(b, filepath.Join(base, "Maildir"))
	msg := bytes.Repeat([]byte("x"), 1024)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Deliver(dir, "Maildir", "", bytes.NewReader(msg), Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
