package mbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFromLine(t *testing.T) {
	tests := []struct {
		name   string
		sender string
		t      time.Time
		want   string
	}{
		{"plain", "alice@example.org", testTime, testFrom},
		{"null sender", "", testTime, "From MAILER-DAEMON Tue Mar  5 07:08:09 2024\n"},
		{"two-digit day", "b@x", time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), "From b@x Wed Dec 31 23:59:59 2025\n"},
		{"quoted local part", `"john doe"@x`, testTime, "From \"john doe\"@x Tue Mar  5 07:08:09 2024\n"},
		{"zone of the time", "a@b", time.Date(2024, 3, 5, 7, 8, 9, 0, time.FixedZone("X", 3600)), "From a@b Tue Mar  5 07:08:09 2024\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FromLine(tc.sender, tc.t); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAppendGolden(t *testing.T) {
	tests := []struct {
		name     string
		existing *string // nil: no mailbox
		body     string
		mod      func(*Options)
		want     string // whole file afterwards
		offset   int64
	}{
		{name: "new mailbox", body: "Subject: hi\n\nHello\n",
			want: testFrom + "Subject: hi\n\nHello\n\n"},
		{name: "existing empty", existing: ptr(""), body: "a\n",
			want: testFrom + "a\n\n"},
		{name: "existing with message", existing: ptr(testFrom + "old\n\n"), body: "new\n",
			want: testFrom + "old\n\n" + testFrom + "new\n\n", offset: int64(len(testFrom) + 5)},
		{name: "existing without separator", existing: ptr(testFrom + "old\n"), body: "new\n",
			want: testFrom + "old\n\n" + testFrom + "new\n\n", offset: int64(len(testFrom) + 5)},
		{name: "existing with partial line", existing: ptr(testFrom + "ol"), body: "new\n",
			want: testFrom + "ol\n\n" + testFrom + "new\n\n", offset: int64(len(testFrom) + 4)},
		{name: "existing single newline", existing: ptr("\n"), body: "x\n",
			want: "\n\n" + testFrom + "x\n\n", offset: 2},
		{name: "null sender", body: "x\n", mod: func(o *Options) { o.Sender = "" },
			want: "From MAILER-DAEMON Tue Mar  5 07:08:09 2024\nx\n\n"},
		{name: "quoted sender written as given", body: "x\n", mod: func(o *Options) { o.Sender = `"a b"@c` },
			want: "From \"a b\"@c Tue Mar  5 07:08:09 2024\nx\n\n"},
		{name: "no final newline", body: "abc",
			want: testFrom + "abc\n\n"},
		{name: "empty body", body: "",
			want: testFrom + "\n"},
		{name: "only a newline", body: "\n",
			want: testFrom + "\n\n"},
		{name: "mboxrd quoting", body: "From x\n>From y\n>>From z\nFrom\nFrom:\n From a\nFROM b\n>\n>From",
			want: testFrom + ">From x\n>>From y\n>>>From z\nFrom\nFrom:\n From a\nFROM b\n>\n>From\n\n"},
		{name: "mboxo quoting", body: "From x\n>From y\n>>From z\n", mod: func(o *Options) { o.Quoting = MboxO },
			want: testFrom + ">From x\n>From y\n>>From z\n\n"},
		{name: "CRLF left as is", body: "a\r\nFrom b\r\n\r\n",
			want: testFrom + "a\r\n>From b\r\n\r\n\n"},
		{name: "first line From", body: "From ", want: testFrom + ">From \n\n"},
		{name: "trailing blank lines kept", body: "a\n\n\n", want: testFrom + "a\n\n\n\n"},
		{name: "NUL bytes kept", body: "a\x00b\n", want: testFrom + "a\x00b\n\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, d := testDir(t)
			mb := filepath.Join(p, "inbox")
			if tc.existing != nil {
				writeFile(t, mb, *tc.existing)
			}
			opt := testOptions()
			if tc.mod != nil {
				tc.mod(&opt)
			}
			res, err := Append(d, "inbox", strings.NewReader(tc.body), opt)
			if err != nil {
				t.Fatal(err)
			}
			got := readFile(t, mb)
			if got != tc.want {
				t.Errorf("file:\n got %q\nwant %q", got, tc.want)
			}
			if res.Offset != tc.offset || res.Offset+res.Size != int64(len(got)) {
				t.Errorf("result %+v, want offset %d and end %d", res, tc.offset, len(got))
			}
			if _, err := os.Lstat(mb + ".lock"); !os.IsNotExist(err) {
				t.Errorf("dot-lock left behind: %v", err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestAppendSubdirectory(t *testing.T) {
	p, d := testDir(t)
	if err := os.MkdirAll(filepath.Join(p, "Mail", "lists"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Append(d, "Mail/lists/go", strings.NewReader("x\n"), testOptions()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(p, "Mail", "lists", "go")); got != testFrom+"x\n\n" {
		t.Errorf("got %q", got)
	}
}

func TestAppendCreateMode(t *testing.T) {
	for _, mask := range []int{0, 0o022, 0o277, 0o777} {
		t.Run(strings.ReplaceAll(os.FileMode(mask).String(), "-", "_"), func(t *testing.T) {
			p, d := testDir(t)
			old := syscall.Umask(mask)
			defer syscall.Umask(old)
			if _, err := Append(d, "inbox", strings.NewReader("x\n"), testOptions()); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(filepath.Join(p, "inbox"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode())
			}
		})
	}
}

func TestAppendMissingNoCreate(t *testing.T) {
	tests := []struct {
		name   string
		mbox   string
		create bool
	}{
		{"missing file", "inbox", false},
		{"missing directory", "Mail/inbox", true}, // Create never makes directories
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, d := testDir(t)
			opt := testOptions()
			opt.Create = tc.create
			_, err := Append(d, tc.mbox, strings.NewReader("x\n"), opt)
			wantStatus(t, err, 450, "4.2.0")
			if _, err := os.Lstat(filepath.Join(p, tc.mbox)); !os.IsNotExist(err) {
				t.Errorf("mailbox exists after failure: %v", err)
			}
		})
	}
}

func TestAppendCreateChown(t *testing.T) {
	requireRoot(t)
	p, d := testDir(t)
	opt := testOptions()
	opt.Owner = 65534
	opt.Locks = FcntlLock // a dot-lock would be root's; irrelevant here
	if _, err := Append(d, "inbox", strings.NewReader("x\n"), opt); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(p, "inbox"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 65534 {
		t.Errorf("owner %d, want 65534", uid)
	}
}

func TestAppendBadSender(t *testing.T) {
	for _, tc := range []struct{ name, s string }{
		{"LF", "a\nb@x"},
		{"CR", "a\rb@x"},
		{"NUL", "a\x00b"},
		{"tab", "a\tb"},
		{"DEL", "a\x7fb"},
		{"C1 NEL", "a\u0085b"},
		{"C1 CSI", "a\u009bb"},
		{"line separator", "a\u2028b@x"},
		{"paragraph separator", "a\u2029b@x"},
		{"invalid UTF-8", "\xff@x"},
		{"injected From line", "x\n\nFrom evil@x Mon Jan  1"},
		{"999 bytes", strings.Repeat("a", 999)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, d := testDir(t)
			opt := testOptions()
			opt.Sender = tc.s
			_, err := Append(d, "inbox", strings.NewReader("x\n"), opt)
			wantStatus(t, err, 501, "5.5.4")
			if _, err := os.Lstat(filepath.Join(p, "inbox")); !os.IsNotExist(err) {
				t.Errorf("mailbox created for a refused sender")
			}
		})
	}
	t.Run("998 bytes accepted", func(t *testing.T) {
		_, d := testDir(t)
		opt := testOptions()
		opt.Sender = strings.Repeat("a", 998)
		if _, err := Append(d, "inbox", strings.NewReader("x\n"), opt); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("UTF-8 accepted", func(t *testing.T) {
		_, d := testDir(t)
		opt := testOptions()
		opt.Sender = "jörg@bücher.example"
		if _, err := Append(d, "inbox", strings.NewReader("x\n"), opt); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAppendBadName(t *testing.T) {
	for _, name := range []string{"", "/etc/passwd", "a//b", "./inbox", "../inbox", "a/../../inbox", "a/..", "inbox/",
		"in\x00box", "in\nbox", "."} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			_, d := testDir(t)
			_, err := Append(d, name, strings.NewReader("x\n"), testOptions())
			wantStatus(t, err, 501, "5.5.4")
		})
	}
}

func TestAppendBadOptions(t *testing.T) {
	_, d := testDir(t)
	opt := testOptions()
	opt.Locks = 0x80
	_, err := Append(d, "inbox", strings.NewReader("x\n"), opt)
	wantStatus(t, err, 501, "5.5.4")
	opt = testOptions()
	opt.Quoting = 7
	_, err = Append(d, "inbox", strings.NewReader("x\n"), opt)
	wantStatus(t, err, 501, "5.5.4")
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want Locking
		ok   bool
	}{
		{nil, 0, true},
		{[]string{"dotlock"}, DotLock, true},
		{[]string{"fcntl", "dotlock"}, DotLock | FcntlLock, true},
		{[]string{"dotlock", "fcntl", "flock"}, DotLock | FcntlLock | Flock, true},
		{[]string{"fcntl", "fcntl"}, 0, false},
		{[]string{"lockf"}, 0, false},
		{[]string{""}, 0, false},
	} {
		t.Run(fmt.Sprintf("locking %q", tc.in), func(t *testing.T) {
			got, err := ParseLocking(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("ParseLocking(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
	for _, tc := range []struct {
		in   string
		want Quoting
		ok   bool
	}{{"mboxrd", MboxRD, true}, {"mboxo", MboxO, true}, {"mboxcl", 0, false}, {"", 0, false}} {
		t.Run(fmt.Sprintf("quoting %q", tc.in), func(t *testing.T) {
			got, err := ParseQuoting(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("ParseQuoting(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
}

func TestProgress(t *testing.T) {
	p, d := testDir(t)
	mb := filepath.Join(p, "inbox")
	writeFile(t, mb, testFrom+"old")
	var got []Progress
	opt := testOptions()
	opt.Progress = func(pr Progress) {
		// Nothing has been written yet.
		if s := readFile(t, mb); s != testFrom+"old" {
			t.Errorf("file changed before Progress: %q", s)
		}
		got = append(got, pr)
	}
	res, err := Append(d, "inbox", strings.NewReader("x\n"), opt)
	if err != nil {
		t.Fatal(err)
	}
	dev, ino, _ := stat(t, mb)
	want := Progress{Offset: res.Offset, Dev: dev, Ino: ino, FromLine: testFrom}
	if len(got) != 1 || got[0] != want {
		t.Errorf("progress %+v, want %+v", got, want)
	}
}
