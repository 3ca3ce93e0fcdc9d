package mbox

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/status"

	"lda/internal/testutil"
)

// testTime is Tuesday, 5 March 2024.
var testTime = time.Date(2024, 3, 5, 7, 8, 9, 0, time.UTC)

const testFrom = "From alice@example.org Tue Mar  5 07:08:09 2024\n"

// testDir returns a fresh directory and a handle on it, closed at cleanup.
func testDir(t testing.TB) (string, *os.File) {
	t.Helper()
	p := t.TempDir()
	d, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return p, d
}

func testOptions() Options {
	return Options{
		Owner:       os.Getuid(),
		Create:      true,
		Locks:       DotLock | FcntlLock | Flock,
		LockTimeout: 2 * time.Second,
		Sender:      "alice@example.org",
		Time:        testTime,
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// snapshot records what is at each path (without following symlinks), to
// assert later that an attack changed nothing.
type snapshot map[string]string

func takeSnapshot(t testing.TB, paths ...string) snapshot {
	t.Helper()
	s := snapshot{}
	for _, p := range paths {
		s[p] = describe(t, p)
	}
	return s
}

func describe(t testing.TB, p string) string {
	t.Helper()
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return "<missing>"
	}
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		return "symlink:" + target
	case fi.Mode().IsRegular():
		return "file:" + fi.Mode().String() + ":" + readFile(t, p)
	}
	return "other:" + fi.Mode().String()
}

func (s snapshot) check(t testing.TB) {
	t.Helper()
	for p, want := range s {
		if got := describe(t, p); got != want {
			t.Errorf("%s changed:\n got %.200q\nwant %.200q", p, got, want)
		}
	}
}

// wantStatus asserts that err carries a *status.Status with the given codes.
func wantStatus(t testing.TB, err error, code int, enhanced string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %d %s", code, enhanced)
	}
	var st *status.Status
	if !errors.As(err, &st) {
		t.Fatalf("error %q carries no *status.Status, want %d %s", err, code, enhanced)
	}
	if st.Code != code || st.Enhanced != enhanced {
		t.Fatalf("error %q: got %d %s, want %d %s", err, st.Code, st.Enhanced, code, enhanced)
	}
}

// wantMapped asserts the status that status.From derives from err.
func wantMapped(t testing.TB, err error, code int, enhanced string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %d %s", code, enhanced)
	}
	st := status.From(err)
	if st.Code != code || st.Enhanced != enhanced {
		t.Fatalf("error %q maps to %d %s, want %d %s", err, st.Code, st.Enhanced, code, enhanced)
	}
}

// readAll splits an mbox into messages with the strict Reader.
func readAll(t testing.TB, data string, q Quoting) []*Message {
	t.Helper()
	r := NewReader(strings.NewReader(data), q)
	var msgs []*Message
	for {
		m, err := r.Next()
		if err == io.EOF {
			return msgs
		}
		if err != nil {
			t.Fatalf("reading mbox: %v\n%.300q", err, data)
		}
		msgs = append(msgs, m)
	}
}

// normalise is what a body reads back as: a final newline is added.
func normalise(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		return append(bytes.Clone(b), '\n')
	}
	return b
}

// setHook installs faultHook for the duration of the test.
func setHook(t testing.TB, f func(stage string) error) {
	t.Helper()
	faultHook = f
	t.Cleanup(func() { faultHook = nil })
}

// noIntents makes the package write and read no append intents for the
// rest of the test, as on a file system without user attributes.
func noIntents(t testing.TB) {
	t.Helper()
	intentAttrs = false
	t.Cleanup(func() { intentAttrs = true })
}

// requireRoot skips a test that needs root (the project's one helper).
func requireRoot(t testing.TB) { testutil.RequireRoot(t) }

// stat returns dev and ino of path.
func stat(t testing.TB, path string) (dev, ino uint64, size int64) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Dev, st.Ino, st.Size
}

// chunkReader returns the input in pieces of the given sizes, cycling.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := c.sizes[c.i%len(c.sizes)]
	c.i++
	n = max(1, min(n, len(p), len(c.data)))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}
