package e2e

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"lda/internal/testutil"
)

// fixture is one test's world: a root-owned 0755 base directory holding
// the binary, a policy file, a log file, and two real users whose homes
// live under base/home.
type fixture struct {
	t      testing.TB
	base   string
	bin    string
	policy string
	log    string
	u1, u2 *testutil.User
}

var (
	binOnce sync.Once
	binDir  string
)

// TestMain removes the directory of the binaries built for the run, which
// outlives any one test.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// userSeq keeps user names unique across the tests of one run.
var (
	userMu  sync.Mutex
	userSeq int
)

func nextUserName() string {
	userMu.Lock()
	defer userMu.Unlock()
	userSeq++
	return "ldat" + strconv.Itoa(os.Getpid()%10000) + "u" + strconv.Itoa(userSeq)
}

// newFixture needs root; it builds the binary once per run.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	testutil.RequireRoot(t)
	base := testutil.RootDir(t)
	binOnce.Do(func() {
		d, err := os.MkdirTemp("", "lda-e2e-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = d
	})
	f := &fixture{
		t:      t,
		base:   base,
		bin:    testutil.Build(t, binDir, "./cmd/lda"),
		policy: filepath.Join(base, "policy.yaml"),
		log:    filepath.Join(base, "lda.log"),
	}
	home := filepath.Join(base, "home")
	testutil.Must(t, os.Mkdir(home, 0o755))
	f.u1 = testutil.CreateUser(t, nextUserName(), home)
	f.u2 = testutil.CreateUser(t, nextUserName(), home)
	f.writePolicy(defaultPolicy)
	return f
}

// defaultPolicy is the test system policy; {{BASE}} is replaced by the
// fixture's base directory.
const defaultPolicy = `version: 1
min_uid: 1000
user_file: .lda.yaml
default: {maildir: ~/Maildir}
allow:
  - {maildir: ~/Maildir}
  - {mbox: {{BASE}}/spool/%u}
  - {mbox: ~/mail/**}
  - {program: probe}
deny:
  - {mbox: ~/mail/private/**}
user_may_add:
  - {mbox: ~/**}
  - {maildir: ~/**}
programs:
  probe: {argv: [{{BASE}}/prog/credprobe, "{{BASE}}/out/%u.probe"], timeout: 20s}
mbox: {locking: [dotlock, fcntl], lock_timeout: 2s, stale_lock: 5m, quoting: mboxrd, create: true}
maildir: {create: true, create_folders: true}
`

func (f *fixture) writePolicy(text string) {
	f.t.Helper()
	text = strings.ReplaceAll(text, "{{BASE}}", f.base)
	testutil.WriteFile(f.t, f.policy, []byte(text), 0o644, 0, 0)
}

// result of one lda invocation.
type result struct {
	exit   int
	stderr string
	stdout string
}

// run runs lda with args and stdin, as root, with a deadline: a hang is a
// failure, never a stuck test.
func (f *fixture) run(stdin []byte, args ...string) result {
	f.t.Helper()
	return f.runCmd(bytes.NewReader(stdin), f.bin, args...)
}

// runCmd runs name (lda itself, or a shell that execs it) with stdin
// (nil: /dev/null, read-only, as os/exec opens it), for at most 60 s.
func (f *fixture) runCmd(stdin io.Reader, name string, args ...string) result {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		f.t.Fatalf("%s %v hung", name, args)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatalf("lda %v: %v", args, err)
	}
	return result{exit: code, stderr: errb.String(), stdout: out.String()}
}

// deliver runs `lda deliver` to user u with extra flags.
func (f *fixture) deliver(u *testutil.User, msg []byte, extra ...string) result {
	f.t.Helper()
	args := append([]string{"deliver", "-policy", f.policy, "-log", f.log, "-f", "sender@example.org", "-d", u.Name}, extra...)
	return f.run(msg, args...)
}

// asUser makes u run argv (to plant files as an attacker would).
func (f *fixture) asUser(u *testutil.User, argv ...string) string {
	f.t.Helper()
	return testutil.AsUser(f.t, u, argv...)
}

// mkdirAs creates dir (0700) owned by u.
func (f *fixture) mkdirAs(u *testutil.User, dir string) {
	f.t.Helper()
	testutil.Must(f.t, os.MkdirAll(dir, 0o700))
	testutil.Must(f.t, os.Chown(dir, u.UID, u.GID))
}

// snapshot returns the bytes of path, or nil if it does not exist.
func snapshot(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logLines returns the structured lines of the fixture's log.
func (f *fixture) logLines() []string {
	b, _ := os.ReadFile(f.log)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func message(subject, body string) []byte {
	return []byte("From: a@example.org\nSubject: " + subject + "\n\n" + body)
}
