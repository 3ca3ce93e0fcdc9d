package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lda/internal/testutil"
)

// TestThreats attacks the real binary with every filesystem and path-policy
// class of threats.md that applies to `lda deliver`, once with the kernel's
// link protections on and once with them off, so that the kernel cannot
// hide a missing check in lda. Every case snapshots the whole fixture tree
// (both homes, the spool, the root-owned victims) before the delivery and
// compares it afterwards: a refused delivery must change nothing at all, a
// successful one only the paths the case names.
func TestThreats(t *testing.T) {
	for _, mode := range []struct{ name, value string }{
		// "protected": what distributions ship (systemd sets all four to
		// at least 1); set explicitly, because a container may have them off.
		{"protected", "1"},
		{"unprotected", "0"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			f := newFixture(t)
			for _, k := range []string{"fs.protected_symlinks", "fs.protected_hardlinks", "fs.protected_regular", "fs.protected_fifos"} {
				testutil.Sysctl(t, k, mode.value)
			}
			for i, tc := range thrCases() {
				t.Run(tc.name, func(t *testing.T) {
					thrRunCase(t, f, mode.name, i, tc)
				})
			}
		})
	}
	// lda(8): "on failure, prints one line "lda: code enhanced text"", and
	// a malformed destination is "64 501 5.5.4".
	t.Run("usage error line carries 501 5.5.4", func(t *testing.T) {
		f := newFixture(t)
		r := f.deliver(f.u1, message("x", "y\n"), "-dest", "mbox:"+f.u1.Home+"/mail/../x")
		if r.exit != 64 || !strings.HasPrefix(r.stderr, "lda: 501 5.5.4 ") {
			t.Fatalf("exit %d, stderr %q; lda(8) says exit 64 and \"lda: 501 5.5.4 ...\"", r.exit, r.stderr)
		}
		// An unknown flag too: one line, not the flag package's usage.
		r = f.deliver(f.u1, message("x", "y\n"), "-no-such-flag")
		if r.exit != 64 || !strings.HasPrefix(r.stderr, "lda: 501 5.5.4 ") || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("unknown flag: exit %d, stderr %q; want exit 64 and one line \"lda: 501 5.5.4 ...\"", r.exit, r.stderr)
		}
	})
}

// thrEnv is one case's world, prepared by its setup.
type thrEnv struct {
	t      *testing.T
	f      *fixture
	mode   string
	u1, u2 *testutil.User // u1 is the recipient, u2 the other user

	policy   string   // policy template ({{BASE}}); "" is defaultPolicy
	user     string   // -d value; "" is u1
	args     []string // extra flags of lda deliver
	victims  []string // files, besides the common ones, that must stay byte-identical
	allow    []string // glob patterns of paths a successful delivery may create or change
	umask000 bool     // start lda with umask 000
	marker   string   // unique text in the message body
}

func (e *thrEnv) home(p ...string) string { return filepath.Join(append([]string{e.u1.Home}, p...)...) }
func (e *thrEnv) home2(p ...string) string {
	return filepath.Join(append([]string{e.u2.Home}, p...)...)
}
func (e *thrEnv) base(p ...string) string { return filepath.Join(append([]string{e.f.base}, p...)...) }
func (e *thrEnv) inbox() string           { return e.home("mail", "inbox") }
func (e *thrEnv) spoolBox() string        { return e.base("spool", e.u1.Name) }
func (e *thrEnv) dest(kind, path string)  { e.args = append(e.args, "-dest", kind+":"+path) }

// The common victims, present in every case.
func (e *thrEnv) notes() string     { return e.home("notes") }              // u1's own file: only lda's checks protect it
func (e *thrEnv) u2box() string     { return e.home2("mail", "inbox") }     // u2's mbox, 0666 in a 0777 directory
func (e *thrEnv) root644() string   { return e.base("victims", "root644") } // root's file, 0644
func (e *thrEnv) root666() string   { return e.base("victims", "root666") } // root's file, 0666
func (e *thrEnv) emptyDir() string  { return e.base("victims", "empty") }   // root's 0777 directory, must stay empty
func (e *thrEnv) u2maildir() string { return e.home2("Maildir") }           // u2's maildir, 0777 directories

// as makes u run argv; a failure fails the case.
func (e *thrEnv) as(u *testutil.User, argv ...string) {
	e.t.Helper()
	testutil.AsUser(e.t, u, argv...)
}

// try makes u run argv and returns its error.
func (e *thrEnv) try(u *testutil.User, argv ...string) error {
	args := append([]string{"--reuid=" + strconv.Itoa(u.UID), "--regid=" + strconv.Itoa(u.GID), "--clear-groups", "--"}, argv...)
	out, err := exec.Command("setpriv", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// hardLink makes u plant a hard link name -> target. With the kernel's
// protected_hardlinks on, a user may not link a file they cannot write;
// then root plants it, so that lda's own check is still what is tested.
// With it off, the user must be able to.
func (e *thrEnv) hardLink(u *testutil.User, target, name string) {
	e.t.Helper()
	err := e.try(u, "ln", target, name)
	if err == nil {
		return
	}
	if e.mode != "protected" {
		e.t.Fatalf("protected_hardlinks=0 but %s cannot link %s: %v", u.Name, target, err)
	}
	e.t.Logf("kernel refused the user's hard link (%v); planted by root", err)
	testutil.Must(e.t, os.Link(target, name))
}

// mkdirs makes directories (each parent must exist) owned by u with mode
// perm.
func (e *thrEnv) mkdirs(u *testutil.User, perm os.FileMode, dirs ...string) {
	e.t.Helper()
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			e.t.Fatal(err)
		}
		testutil.Must(e.t, os.Chown(d, u.UID, u.GID))
		testutil.Must(e.t, os.Chmod(d, perm))
	}
}

// maildir makes a maildir (tmp, new, cur) owned by u with mode perm.
func (e *thrEnv) maildir(u *testutil.User, perm os.FileMode, dir string) {
	e.t.Helper()
	e.mkdirs(u, perm, dir, filepath.Join(dir, "tmp"), filepath.Join(dir, "new"), filepath.Join(dir, "cur"))
}

func (e *thrEnv) symlink(u *testutil.User, target, name string) {
	e.t.Helper()
	e.as(u, "ln", "-s", target, name)
}

func (e *thrEnv) remove(p string) { testutil.Must(e.t, os.RemoveAll(p)) }

// userFile writes u1's ~/.lda.yaml.
func (e *thrEnv) userFile(text string, mode os.FileMode, owner *testutil.User) {
	e.t.Helper()
	testutil.WriteFile(e.t, e.home(".lda.yaml"), []byte(text), mode, owner.UID, owner.GID)
}

// reset empties the fixture between cases: everything under base but the
// homes and the policy, and everything inside the homes.
func (e *thrEnv) reset() {
	e.t.Helper()
	ents, err := os.ReadDir(e.f.base)
	testutil.Must(e.t, err)
	for _, en := range ents {
		if en.Name() != "home" && en.Name() != "policy.yaml" {
			e.remove(filepath.Join(e.f.base, en.Name()))
		}
	}
	for _, u := range []*testutil.User{e.u1, e.u2} {
		ents, err := os.ReadDir(u.Home)
		testutil.Must(e.t, err)
		for _, en := range ents {
			e.remove(filepath.Join(u.Home, en.Name()))
		}
		e.mkdirs(u, 0o700, u.Home)
	}
}

// common builds what every case has: the victims, the spool, ~/mail.
func (e *thrEnv) common() {
	t, u1, u2 := e.t, e.u1, e.u2
	e.mkdirs(u1, 0o700, e.home("mail"))
	testutil.WriteFile(t, e.notes(), []byte("u1 notes: only lda's checks protect me\n"), 0o644, u1.UID, u1.GID)
	// u2 opens everything up, so that only lda's checks stop u1's worker.
	testutil.Must(t, os.Chmod(u2.Home, 0o755))
	e.mkdirs(u2, 0o777, e.home2("mail"))
	testutil.WriteFile(t, e.u2box(), []byte("From u2@example.org Thu Jan  1 00:00:00 2026\nSubject: u2's own mail\n\nbody\n\n"), 0o666, u2.UID, u2.GID)
	e.maildir(u2, 0o777, e.u2maildir())
	e.mkdirs(thrRoot, 0o755, e.base("victims"))
	testutil.WriteFile(t, e.root644(), []byte("root 0644 victim\n"), 0o644, 0, 0)
	testutil.WriteFile(t, e.root666(), []byte("root 0666 victim\n"), 0o666, 0, 0)
	e.mkdirs(thrRoot, 0o777, e.emptyDir())
	e.mkdirs(thrRoot, 0o1777, e.base("spool"), e.base("out"))
}

var thrRoot = &testutil.User{Name: "root", UID: 0, GID: 0, Home: "/root"}

// thrCase is one attack.
type thrCase struct {
	name  string
	setup func(e *thrEnv)
	exit  int
	// reply is the code and enhanced code of the one stderr line; "" for
	// exit 0 (stderr must be empty) and for usage errors found while
	// parsing flags (one "lda: " line).
	reply string
	// why is a regular expression the log line's detail must match, so
	// that a refusal is known to come from the check the case is about.
	why      string
	min, max time.Duration   // bounds on the delivery's duration (0: none)
	check    func(e *thrEnv) // extra assertions after the delivery
}

const (
	thrUnavail  = "450 4.2.0"
	thrNotReg   = "550 5.2.0"
	thrRefused  = "550 5.7.1"
	thrNoUser   = "550 5.1.1"
	thrUsage    = "501 5.5.4"
	thrConfErr  = "451 4.3.5"
	thrLockWait = 2 * time.Second // lock_timeout of the test policy
	thrPrompt   = 1500 * time.Millisecond
)

// thrLoggedDuration returns the longest duration_ms in the log lines.
func thrLoggedDuration(log string) (time.Duration, bool) {
	var longest time.Duration
	found := false
	for _, m := range regexp.MustCompile(`\bduration_ms=([0-9.]+)`).FindAllStringSubmatch(log, -1) {
		ms, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			continue
		}
		found = true
		longest = max(longest, time.Duration(ms*float64(time.Millisecond)))
	}
	return longest, found
}

// Policy variants.
func thrStalePolicy(d string) string {
	return strings.Replace(defaultPolicy, "stale_lock: 5m", "stale_lock: "+d, 1)
}

const thrStarRule = `  - {mbox: "{{BASE}}/star/*.box"}
`

// thrMaildirSpoolPolicy adds a shared spool of maildirs, one per user.
func thrMaildirSpoolPolicy() string {
	return strings.Replace(defaultPolicy, "  - {program: probe}\n", "  - {program: probe}\n  - {maildir: \"{{BASE}}/mdspool/%u\"}\n", 1)
}

func thrStarPolicy() string {
	return strings.Replace(defaultPolicy, "  - {program: probe}\n", "  - {program: probe}\n"+thrStarRule, 1)
}

// thrProgramNames are the programs of thrProgramPolicy: good is trusted, every
// other one is not.
var thrProgramNames = []string{"good", "ww", "gw", "link", "userdir", "wwdir", "userowned"}

func thrProgramPolicy() string {
	var allow, progs strings.Builder
	for _, n := range thrProgramNames {
		fmt.Fprintf(&allow, "  - {program: %s}\n", n)
	}
	paths := thrProgramPaths("{{BASE}}")
	for _, n := range thrProgramNames {
		fmt.Fprintf(&progs, "  %s: {argv: [%s, \"{{BASE}}/out/marker-%s\"], timeout: 20s}\n", n, paths[n], n)
	}
	p := strings.Replace(defaultPolicy, "  - {program: probe}\n", "  - {program: probe}\n"+allow.String(), 1)
	return strings.Replace(p, "programs:\n", "programs:\n"+progs.String(), 1)
}

func thrProgramPaths(base string) map[string]string {
	return map[string]string{
		"good":      base + "/progs/good.sh",
		"ww":        base + "/progs/ww.sh",
		"gw":        base + "/progs/gw.sh",
		"link":      base + "/progs/link.sh",
		"userdir":   base + "/udir/prog.sh",
		"wwdir":     base + "/wwdir/prog.sh",
		"userowned": base + "/progs/uown.sh",
	}
}

// thrScript copies its standard input (the message) to the marker file: if it
// runs at all, the marker exists.
const thrScript = "#!/bin/sh\ncat > \"$1\"\n"

// plantPrograms makes the programs of thrProgramPolicy.
func (e *thrEnv) plantPrograms() {
	t, u1 := e.t, e.u1
	paths := thrProgramPaths(e.f.base)
	e.mkdirs(thrRoot, 0o755, e.base("progs"))
	e.mkdirs(u1, 0o755, e.base("udir"))
	e.mkdirs(thrRoot, 0o777, e.base("wwdir"))
	testutil.WriteFile(t, paths["good"], []byte(thrScript), 0o755, 0, 0)
	testutil.WriteFile(t, paths["ww"], []byte(thrScript), 0o777, 0, 0)
	testutil.WriteFile(t, paths["gw"], []byte(thrScript), 0o775, 0, 0)
	testutil.WriteFile(t, paths["userdir"], []byte(thrScript), 0o755, 0, 0)
	testutil.WriteFile(t, paths["wwdir"], []byte(thrScript), 0o755, 0, 0)
	testutil.WriteFile(t, paths["userowned"], []byte(thrScript), 0o755, u1.UID, u1.GID)
	// A root-owned symlink in the trusted directory into a place the
	// user controls.
	e.mkdirs(u1, 0o755, e.home("bin"))
	testutil.WriteFile(t, e.home("bin", "evil.sh"), []byte(thrScript), 0o755, u1.UID, u1.GID)
	testutil.Must(t, os.Symlink(e.home("bin", "evil.sh"), paths["link"]))
}

// thrRedirectUserFile denies the system default and makes ~/mailbox the default.
const thrRedirectUserFile = `version: 1
default: {mbox: ~/mailbox}
allow:
  - {mbox: ~/mailbox}
deny:
  - {maildir: ~/Maildir}
`

// A user file that would redirect mail, used where it must be ignored.
func thrIgnoredUserFile(why string, setup func(e *thrEnv)) thrCase {
	return thrCase{
		name: "user file " + why + " is ignored",
		setup: func(e *thrEnv) {
			setup(e)
			e.allow = []string{e.home("Maildir"), e.home("Maildir", "*"), e.home("Maildir", "new", "*")}
		},
		check: func(e *thrEnv) {
			thrOneMaildirMessage(e, e.home("Maildir"))
			if _, err := os.Lstat(e.home("mailbox")); err == nil {
				e.t.Errorf("the ignored user file's default ~/mailbox was used")
			}
			log := strings.Join(e.f.logLines(), "\n")
			if !strings.Contains(log, "warning=") || !strings.Contains(log, "ignored") {
				e.t.Errorf("no warning about the ignored user file in the log:\n%s", log)
			}
		},
	}
}

func thrOneMaildirMessage(e *thrEnv, dir string) {
	e.t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "new"))
	if err != nil || len(ents) != 1 {
		e.t.Fatalf("%s/new: %d entries (%v), want 1", dir, len(ents), err)
	}
	b := snapshot(e.t, filepath.Join(dir, "new", ents[0].Name()))
	if !bytes.Contains(b, []byte(e.marker)) {
		e.t.Fatalf("message in %s/new lacks the marker:\n%s", dir, b)
	}
}

func thrLexical(name, dest string) thrCase {
	return thrCase{name: name, exit: 64, setup: func(e *thrEnv) {
		e.args = append(e.args, "-dest", strings.ReplaceAll(dest, "~", e.u1.Home))
	}}
}

func thrBadUser(name string) thrCase {
	return thrCase{name: "user name " + strconv.Quote(name), exit: 67, reply: thrNoUser, why: `no such user`, setup: func(e *thrEnv) { e.user = name }}
}

func thrBadProgram(name string) thrCase {
	return thrCase{name: "program name " + strconv.Quote(name), exit: 64, setup: func(e *thrEnv) { e.dest("program", name) }}
}

func thrUntrustedProgram(name, why string) thrCase {
	return thrCase{
		name: "program " + why + " is not run", exit: 75, reply: thrConfErr,
		why: `not a root-owned executable|not owned and controlled by root`,
		setup: func(e *thrEnv) {
			e.policy = thrProgramPolicy()
			e.plantPrograms()
			e.dest("program", name)
		},
		check: func(e *thrEnv) {
			if _, err := os.Lstat(e.base("out", "marker-"+name)); err == nil {
				e.t.Errorf("program %s ran", name)
			}
		},
	}
}

func thrCases() []thrCase {
	dotLock := func(e *thrEnv) {
		testutil.WriteFile(e.t, e.inbox(), []byte("From a@b Thu Jan  1 00:00:00 2026\n\nold\n\n"), 0o600, e.u1.UID, e.u1.GID)
		e.dest("mbox", e.inbox())
	}
	cases := []thrCase{
		// --- mbox: symlinks, in the last component and on the way.
		{name: "mbox symlink to own file", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.symlink(e.u1, e.notes(), e.inbox())
			e.dest("mbox", e.inbox())
		}},
		{name: "mbox symlink to root 0644 file", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.symlink(e.u1, e.root644(), e.inbox())
			e.dest("mbox", e.inbox())
		}},
		{name: "mbox symlink to root 0666 file", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.symlink(e.u1, e.root666(), e.inbox())
			e.dest("mbox", e.inbox())
		}},
		{name: "mbox symlink to other user's mbox", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.symlink(e.u1, e.u2box(), e.inbox())
			e.dest("mbox", e.inbox())
		}},
		{name: "dangling mbox symlink", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.symlink(e.u1, e.emptyDir()+"/created", e.inbox())
			e.dest("mbox", e.inbox())
		}},
		{name: "spool mbox symlink planted by other user", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.symlink(e.u2, e.notes(), e.spoolBox())
			e.dest("mbox", e.spoolBox())
		}},
		{name: "dangling spool mbox symlink planted by other user", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.symlink(e.u2, e.home("planted"), e.spoolBox())
			e.dest("mbox", e.spoolBox())
		}},
		{name: "intermediate dir symlink to other user's mail dir", why: `symbolic link|not a directory`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.remove(e.home("mail"))
			e.symlink(e.u1, e.home2("mail"), e.home("mail"))
			e.dest("mbox", e.inbox())
		}},
		{name: "intermediate dir symlink to root's 0777 dir", why: `symbolic link|not a directory`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.remove(e.home("mail"))
			e.symlink(e.u1, e.emptyDir(), e.home("mail"))
			e.dest("mbox", e.inbox())
		}},
		{name: "deeper intermediate dir symlink", why: `symbolic link|not a directory`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.symlink(e.u1, e.emptyDir(), e.home("mail", "sub"))
			e.dest("mbox", e.home("mail", "sub", "inbox"))
		}},
		{name: "relative dotdot symlink escaping the home", why: `symbolic link|not a directory`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.symlink(e.u1, "../..", e.home("mail", "up"))
			e.dest("mbox", e.home("mail", "up", e.u2.Name, "mail", "inbox"))
		}},
		// --- mbox: hard links.
		{name: "mbox hard link to own file", why: `has 2 hard links`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.hardLink(e.u1, e.notes(), e.inbox())
			e.dest("mbox", e.inbox())
		}},
		{name: "mbox hard link to root 0644 file", why: `has 2 hard links|owned by uid 0|permission denied`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.hardLink(e.u1, e.root644(), e.inbox())
			e.dest("mbox", e.inbox())
		}},
		{name: "mbox hard link to root 0666 file", why: `has 2 hard links`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.hardLink(e.u1, e.root666(), e.inbox())
			e.dest("mbox", e.inbox())
		}},
		{name: "mbox hard link to other user's mbox", why: `has 2 hard links`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.hardLink(e.u1, e.u2box(), e.inbox())
			e.dest("mbox", e.inbox())
		}},
		// --- mbox: not a regular file.
		{name: "mbox is a FIFO", why: `not a regular file`, exit: 73, reply: thrNotReg, max: thrPrompt, setup: func(e *thrEnv) {
			e.as(e.u1, "mkfifo", e.inbox())
			e.dest("mbox", e.inbox())
		}},
		{name: "spool mbox is a FIFO planted by other user", why: `not a regular file`, exit: 73, reply: thrNotReg, max: thrPrompt, setup: func(e *thrEnv) {
			e.as(e.u2, "mkfifo", "-m", "666", e.spoolBox())
			e.dest("mbox", e.spoolBox())
		}},
		{name: "mbox is a directory", why: `not a regular file`, exit: 73, reply: thrNotReg, max: thrPrompt, setup: func(e *thrEnv) {
			e.mkdirs(e.u1, 0o700, e.inbox())
			e.dest("mbox", e.inbox())
		}},
		{name: "mbox is a socket", why: `not a regular file`, exit: 73, reply: thrNotReg, max: thrPrompt, setup: func(e *thrEnv) {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: e.inbox(), Net: "unix"})
			testutil.Must(e.t, err)
			l.SetUnlinkOnClose(false)
			l.Close()
			testutil.Must(e.t, os.Lchown(e.inbox(), e.u1.UID, e.u1.GID))
			e.dest("mbox", e.inbox())
		}},
		{name: "mbox is a character device", why: `not a regular file`, exit: 73, reply: thrNotReg, max: thrPrompt, setup: func(e *thrEnv) {
			testutil.Must(e.t, syscall.Mknod(e.inbox(), syscall.S_IFCHR|0o666, 1<<8|3)) // like /dev/null
			testutil.Must(e.t, os.Lchown(e.inbox(), e.u1.UID, e.u1.GID))
			e.dest("mbox", e.inbox())
		}},
		// --- mbox: wrong owner.
		{name: "mbox owned by other user 0666", why: `owned by uid`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			testutil.WriteFile(e.t, e.inbox(), []byte("u2 planted this\n"), 0o666, e.u2.UID, e.u2.GID)
			e.dest("mbox", e.inbox())
		}},
		{name: "mbox owned by root 0666", why: `owned by uid 0,`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			testutil.WriteFile(e.t, e.inbox(), []byte("root's\n"), 0o666, 0, 0)
			e.dest("mbox", e.inbox())
		}},
		{name: "spool mbox pre-created by other user 0666", why: `owned by uid`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.as(e.u2, "sh", "-c", `umask 0; printf 'u2 planted this\n' > "$1"`, "sh", e.spoolBox())
			e.dest("mbox", e.spoolBox())
		}},
		// --- dot-locks.
		{name: "dot-lock symlink to own file", why: `dot lock`, exit: 75, reply: thrUnavail, min: thrLockWait, max: 5 * thrLockWait, setup: func(e *thrEnv) {
			dotLock(e)
			e.symlink(e.u1, e.notes(), e.inbox()+".lock")
			e.victims = append(e.victims, e.inbox())
		}},
		{name: "dangling dot-lock symlink", why: `dot lock`, exit: 75, reply: thrUnavail, min: thrLockWait, max: 5 * thrLockWait, setup: func(e *thrEnv) {
			dotLock(e)
			e.symlink(e.u1, e.emptyDir()+"/lockvictim", e.inbox()+".lock")
			e.victims = append(e.victims, e.inbox())
		}},
		{name: "spool dot-lock symlink planted by other user", why: `dot lock`, exit: 75, reply: thrUnavail, min: thrLockWait, max: 5 * thrLockWait, setup: func(e *thrEnv) {
			testutil.WriteFile(e.t, e.spoolBox(), nil, 0o600, e.u1.UID, e.u1.GID)
			e.symlink(e.u2, e.notes(), e.spoolBox()+".lock")
			e.dest("mbox", e.spoolBox())
		}},
		{name: "held dot-lock times out", why: `dot lock`, exit: 75, reply: thrUnavail, min: thrLockWait, max: 5 * thrLockWait, setup: func(e *thrEnv) {
			dotLock(e)
			testutil.WriteFile(e.t, e.inbox()+".lock", nil, 0o600, e.u1.UID, e.u1.GID)
			e.victims = append(e.victims, e.inbox())
		}},
		{name: "dot-lock younger than stale_lock is respected", why: `dot lock`, exit: 75, reply: thrUnavail, min: thrLockWait, max: 5 * thrLockWait, setup: func(e *thrEnv) {
			e.policy = thrStalePolicy("2h")
			dotLock(e)
			testutil.WriteFile(e.t, e.inbox()+".lock", nil, 0o600, e.u1.UID, e.u1.GID)
			e.as(e.u1, "touch", "-h", "-d", "1 hour ago", e.inbox()+".lock")
		}},
		{name: "stale dot-lock is broken", setup: func(e *thrEnv) {
			e.policy = thrStalePolicy("30m")
			dotLock(e)
			testutil.WriteFile(e.t, e.inbox()+".lock", nil, 0o600, e.u1.UID, e.u1.GID)
			e.as(e.u1, "touch", "-h", "-d", "1 hour ago", e.inbox()+".lock")
			e.allow = []string{e.inbox(), e.inbox() + ".lock"}
		}, check: func(e *thrEnv) {
			b := snapshot(e.t, e.inbox())
			if !bytes.HasPrefix(b, []byte("From a@b Thu Jan  1 00:00:00 2026\n\nold\n\nFrom sender@example.org ")) || !bytes.Contains(b, []byte(e.marker)) {
				e.t.Errorf("mbox after breaking the stale lock:\n%s", b)
			}
			if _, err := os.Lstat(e.inbox() + ".lock"); err == nil {
				e.t.Errorf("dot-lock left behind")
			}
		}},
		{name: "stale dot-lock symlink is removed, not followed", setup: func(e *thrEnv) {
			e.policy = thrStalePolicy("30m")
			dotLock(e)
			e.symlink(e.u1, e.notes(), e.inbox()+".lock")
			e.as(e.u1, "touch", "-h", "-d", "1 hour ago", e.inbox()+".lock")
			e.allow = []string{e.inbox(), e.inbox() + ".lock"}
		}, check: func(e *thrEnv) {
			if b := snapshot(e.t, e.inbox()); !bytes.Contains(b, []byte(e.marker)) {
				e.t.Errorf("mbox after breaking the stale lock:\n%s", b)
			}
		}},
		// --- Maildir.
		{name: "Maildir symlink to root's 0777 dir", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.symlink(e.u1, e.emptyDir(), e.home("Maildir"))
		}},
		{name: "Maildir symlink to other user's maildir", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.symlink(e.u1, e.u2maildir(), e.home("Maildir"))
		}},
		{name: "Maildir is a regular file", why: `not a directory`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			testutil.WriteFile(e.t, e.home("Maildir"), []byte("not a maildir\n"), 0o600, e.u1.UID, e.u1.GID)
			e.victims = append(e.victims, e.home("Maildir"))
		}},
		{name: "Maildir tmp symlink", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.maildir(e.u1, 0o700, e.home("Maildir"))
			e.remove(e.home("Maildir", "tmp"))
			e.symlink(e.u1, e.emptyDir(), e.home("Maildir", "tmp"))
		}},
		{name: "Maildir new symlink", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.maildir(e.u1, 0o700, e.home("Maildir"))
			e.remove(e.home("Maildir", "new"))
			e.symlink(e.u1, e.emptyDir(), e.home("Maildir", "new"))
		}},
		{name: "Maildir new symlink to other user's new", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.maildir(e.u1, 0o700, e.home("Maildir"))
			e.remove(e.home("Maildir", "new"))
			e.symlink(e.u1, e.home2("Maildir", "new"), e.home("Maildir", "new"))
		}},
		{name: "Maildir folder symlink", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.maildir(e.u1, 0o700, e.home("Maildir"))
			e.symlink(e.u1, e.emptyDir(), e.home("Maildir", ".Work"))
			e.args = append(e.args, "-folder", "Work")
		}},
		{name: "Maildir folder symlink to other user's maildir", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.maildir(e.u1, 0o700, e.home("Maildir"))
			e.symlink(e.u1, e.u2maildir(), e.home("Maildir", ".Work"))
			e.args = append(e.args, "-folder", "Work")
		}},
		{name: "Maildir folder tmp symlink", why: `symbolic link`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.maildir(e.u1, 0o700, e.home("Maildir"))
			e.maildir(e.u1, 0o700, e.home("Maildir", ".Work"))
			e.remove(e.home("Maildir", ".Work", "tmp"))
			e.symlink(e.u1, e.emptyDir(), e.home("Maildir", ".Work", "tmp"))
			e.args = append(e.args, "-folder", "Work")
		}},
		// A shared spool of maildirs: another user pre-creates the
		// recipient's maildir, owns it, and could delete or rename
		// acknowledged mail. threats.md: owner must be the recipient,
		// defer otherwise.
		{name: "spool maildir pre-created by other user", why: `owned by|owner`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.policy = thrMaildirSpoolPolicy()
			e.mkdirs(thrRoot, 0o1777, e.base("mdspool"))
			md := e.base("mdspool", e.u1.Name)
			e.as(e.u2, "sh", "-c", `umask 0; mkdir "$1" "$1/tmp" "$1/new" "$1/cur"`, "sh", md)
			e.dest("maildir", md)
		}},
		{name: "spool maildir of the recipient", setup: func(e *thrEnv) {
			e.policy = thrMaildirSpoolPolicy()
			e.mkdirs(thrRoot, 0o1777, e.base("mdspool"))
			md := e.base("mdspool", e.u1.Name)
			e.dest("maildir", md)
			e.allow = []string{md, md + "/*", md + "/new/*"}
		}},
		// --- umask 000 when lda starts.
		{name: "umask 000 new mbox", setup: func(e *thrEnv) {
			e.umask000 = true
			e.dest("mbox", e.inbox())
			e.allow = []string{e.inbox()}
		}},
		{name: "umask 000 new spool mbox", setup: func(e *thrEnv) {
			e.umask000 = true
			e.dest("mbox", e.spoolBox())
			e.allow = []string{e.spoolBox()}
		}},
		{name: "umask 000 new maildir", setup: func(e *thrEnv) {
			e.umask000 = true
			e.allow = []string{e.home("Maildir"), e.home("Maildir", "*"), e.home("Maildir", "new", "*")}
		}, check: func(e *thrEnv) { thrOneMaildirMessage(e, e.home("Maildir")) }},
		{name: "umask 000 new maildir and folder", setup: func(e *thrEnv) {
			e.umask000 = true
			e.args = append(e.args, "-folder", "Work")
			e.allow = []string{e.home("Maildir"), e.home("Maildir", "*"), e.home("Maildir", ".Work", "*"), e.home("Maildir", ".Work", "new", "*")}
		}, check: func(e *thrEnv) { thrOneMaildirMessage(e, e.home("Maildir", ".Work")) }},
		// --- path policy: prefix confusion, wildcards.
		{name: "prefix confusion Maildir2", exit: 77, reply: thrRefused, setup: func(e *thrEnv) { e.dest("maildir", e.home("Maildir2")) }},
		{name: "prefix confusion mail2", exit: 77, reply: thrRefused, setup: func(e *thrEnv) { e.dest("mbox", e.home("mail2", "inbox")) }},
		{name: "prefix confusion spool name", exit: 77, reply: thrRefused, setup: func(e *thrEnv) { e.dest("mbox", e.spoolBox()+"x") }},
		{name: "spool %u admits no subpath", exit: 77, reply: thrRefused, setup: func(e *thrEnv) {
			e.mkdirs(e.u1, 0o700, e.spoolBox())
			e.dest("mbox", e.spoolBox()+"/x")
		}},
		{name: "other user's spool mbox", exit: 77, reply: thrRefused, setup: func(e *thrEnv) { e.dest("mbox", e.base("spool", e.u2.Name)) }},
		{name: "other user's home", exit: 77, reply: thrRefused, setup: func(e *thrEnv) { e.dest("mbox", e.u2box()) }},
		{name: "root's file", exit: 77, reply: thrRefused, setup: func(e *thrEnv) { e.dest("mbox", e.root666()) }},
		{name: "nonexistent root path gives the same answer", exit: 77, reply: thrRefused, setup: func(e *thrEnv) { e.dest("mbox", e.base("victims", "nothere")) }},
		{name: "double star does not match the dir itself", exit: 77, reply: thrRefused, setup: func(e *thrEnv) { e.dest("mbox", e.home("mail")) }},
		{name: "wildcard does not match a dot component", exit: 77, reply: thrRefused, setup: func(e *thrEnv) { e.dest("mbox", e.home("mail", ".hidden")) }},
		{name: "system deny beats allow", why: `denied by`, exit: 77, reply: thrRefused, setup: func(e *thrEnv) {
			e.mkdirs(e.u1, 0o700, e.home("mail", "private"))
			e.dest("mbox", e.home("mail", "private", "x"))
		}},
		{name: "double star matches deep paths", setup: func(e *thrEnv) {
			e.mkdirs(e.u1, 0o700, e.home("mail", "a"), e.home("mail", "a", "b"))
			e.dest("mbox", e.home("mail", "a", "b", "inbox"))
			e.allow = []string{e.home("mail", "a", "b", "inbox")}
		}},
		{name: "star matches within a component", setup: func(e *thrEnv) {
			e.policy = thrStarPolicy()
			e.mkdirs(thrRoot, 0o1777, e.base("star"))
			e.dest("mbox", e.base("star", "x.box"))
			e.allow = []string{e.base("star", "x.box")}
		}},
		{name: "star never matches a slash", exit: 77, reply: thrRefused, setup: func(e *thrEnv) {
			e.policy = thrStarPolicy()
			e.mkdirs(thrRoot, 0o1777, e.base("star"))
			e.mkdirs(e.u1, 0o700, e.base("star", "a"))
			e.dest("mbox", e.base("star", "a", "x.box"))
		}},
		{name: "star never matches a leading dot", exit: 77, reply: thrRefused, setup: func(e *thrEnv) {
			e.policy = thrStarPolicy()
			e.mkdirs(thrRoot, 0o1777, e.base("star"))
			e.dest("mbox", e.base("star", ".box"))
		}},
		{name: "etc passwd", exit: 77, reply: thrRefused, setup: func(e *thrEnv) {
			e.dest("mbox", "/etc/passwd")
			e.victims = append(e.victims, "/etc/passwd")
		}},
		// --- lexical tricks: refused before anything else.
		thrLexical("dotdot", "mbox:~/mail/../notes"),
		thrLexical("dotdot maildir", "maildir:~/Maildir/../Maildir"),
		thrLexical("double slash", "mbox:~//mail/inbox"),
		thrLexical("dot component", "mbox:~/./mail/inbox"),
		thrLexical("trailing slash", "mbox:~/mail/inbox/"),
		thrLexical("control char 0x01", "mbox:~/mail/in\x01box"),
		thrLexical("tab", "mbox:~/mail/in\tbox"),
		thrLexical("newline", "mbox:~/mail/in\nbox"),
		thrLexical("DEL", "mbox:~/mail/in\x7fbox"),
		thrLexical("C1 control", "mbox:~/mail/in\u0085box"),
		thrLexical("invalid UTF-8", "mbox:~/mail/in\xffbox"),
		thrLexical("relative", "mbox:mail/inbox"),
		thrLexical("relative maildir", "maildir:Maildir"),
		thrLexical("empty path", "mbox:"),
		thrLexical("overlong component", "mbox:~/mail/"+strings.Repeat("x", 256)),
		thrLexical("unknown kind", "file:~/mail/inbox"),
		{name: "folder dotdot", exit: 64, reply: thrUsage, setup: func(e *thrEnv) { e.args = append(e.args, "-folder", "../../x") }},
		{name: "folder slash", exit: 64, reply: thrUsage, setup: func(e *thrEnv) { e.args = append(e.args, "-folder", "a/b") }},
		{name: "folder control char", exit: 64, reply: thrUsage, setup: func(e *thrEnv) { e.args = append(e.args, "-folder", "a\x01b") }},
		{name: "folder leading dot", exit: 64, reply: thrUsage, setup: func(e *thrEnv) { e.args = append(e.args, "-folder", ".Work") }},
		{name: "folder overlong", exit: 64, reply: thrUsage, setup: func(e *thrEnv) { e.args = append(e.args, "-folder", strings.Repeat("x", 300)) }},
		{name: "folder with an mbox", exit: 64, reply: thrUsage, setup: func(e *thrEnv) {
			e.dest("mbox", e.inbox())
			e.args = append(e.args, "-folder", "Work")
		}},
		// --- template injection through the user name.
		thrBadUser("../x"),
		thrBadUser("-x"),
		thrBadUser("a/b"),
		thrBadUser("*"),
		thrBadUser("%u"),
		thrBadUser(".x"),
		thrBadUser("a b"),
		thrBadUser("x\x01"),
		{name: "root is never a recipient", why: `below the minimum uid`, exit: 77, reply: thrRefused, setup: func(e *thrEnv) { e.user = "root" }},
		{name: "system user below min_uid", why: `below the minimum uid`, exit: 77, reply: thrRefused, setup: func(e *thrEnv) { e.user = "daemon" }},
		// --- the user's own policy file.
		{name: "user file allowing /** does not load", why: `outside what`, exit: 75, reply: thrConfErr, setup: func(e *thrEnv) {
			e.userFile("version: 1\nallow:\n  - {mbox: \"/**\"}\n", 0o644, e.u1)
			e.dest("mbox", "/etc/passwd")
			e.victims = append(e.victims, "/etc/passwd")
		}},
		{name: "user file allowing etc passwd does not load", why: `outside what`, exit: 75, reply: thrConfErr, setup: func(e *thrEnv) {
			e.userFile("version: 1\nallow:\n  - {mbox: /etc/passwd}\n", 0o644, e.u1)
			e.dest("mbox", "/etc/passwd")
			e.victims = append(e.victims, "/etc/passwd")
		}},
		{name: "user file allowing root's file does not load", why: `outside what`, exit: 75, reply: thrConfErr, setup: func(e *thrEnv) {
			e.userFile("version: 1\nallow:\n  - {mbox: "+e.root666()+"}\n", 0o644, e.u1)
			e.dest("mbox", e.root666())
		}},
		{name: "unreadable user file defers instead of being ignored", why: `permission denied`, exit: 75, reply: thrConfErr, setup: func(e *thrEnv) {
			// Its deny rules are unknown: delivering under the system's
			// alone could put mail where the user said no.
			e.userFile("version: 1\ndeny:\n  - {maildir: ~/Maildir}\n", 0o000, e.u1)
		}},
		{name: "loaded user file does not reach etc passwd", exit: 77, reply: thrRefused, setup: func(e *thrEnv) {
			e.userFile("version: 1\nallow:\n  - {mbox: \"~/**\"}\n", 0o644, e.u1)
			e.dest("mbox", "/etc/passwd")
			e.victims = append(e.victims, "/etc/passwd")
		}},
		{name: "loaded user file does not reach dot dirs", exit: 77, reply: thrRefused, setup: func(e *thrEnv) {
			e.userFile("version: 1\nallow:\n  - {mbox: \"~/**\"}\n", 0o644, e.u1)
			e.mkdirs(e.u1, 0o700, e.home(".ssh"))
			e.dest("mbox", e.home(".ssh", "authorized_keys"))
		}},
		{name: "loaded user file cannot undo a system deny", why: `denied by`, exit: 77, reply: thrRefused, setup: func(e *thrEnv) {
			e.userFile("version: 1\nallow:\n  - {mbox: \"~/mail/private/**\"}\n", 0o644, e.u1)
			e.mkdirs(e.u1, 0o700, e.home("mail", "private"))
			e.dest("mbox", e.home("mail", "private", "x"))
		}},
		{name: "user-allowed path through a symlink to root's dir", why: `symbolic link|not a directory`, exit: 75, reply: thrUnavail, setup: func(e *thrEnv) {
			e.userFile("version: 1\nallow:\n  - {mbox: \"~/**\"}\n", 0o644, e.u1)
			e.symlink(e.u1, e.base("victims"), e.home("v"))
			e.dest("mbox", e.home("v", "root666"))
		}},
		{name: "user file sets its own default", setup: func(e *thrEnv) {
			e.userFile(thrRedirectUserFile, 0o644, e.u1)
			e.allow = []string{e.home("mailbox")}
		}, check: func(e *thrEnv) {
			b := snapshot(e.t, e.home("mailbox"))
			if !bytes.HasPrefix(b, []byte("From sender@example.org ")) || !bytes.Contains(b, []byte(e.marker)) {
				e.t.Errorf("~/mailbox:\n%s", b)
			}
			if log := strings.Join(e.f.logLines(), "\n"); strings.Contains(log, "warning=") {
				e.t.Errorf("warning for a good user file:\n%s", log)
			}
		}},
		{name: "user file denies the system default", why: `denied by`, exit: 77, reply: thrRefused, setup: func(e *thrEnv) {
			e.userFile(thrRedirectUserFile, 0o644, e.u1)
			e.dest("maildir", e.home("Maildir"))
		}},
		thrIgnoredUserFile("owned by the other user", func(e *thrEnv) { e.userFile(thrRedirectUserFile, 0o644, e.u2) }),
		thrIgnoredUserFile("owned by root", func(e *thrEnv) { e.userFile(thrRedirectUserFile, 0o644, thrRoot) }),
		thrIgnoredUserFile("group-writable", func(e *thrEnv) { e.userFile(thrRedirectUserFile, 0o664, e.u1) }),
		thrIgnoredUserFile("world-writable", func(e *thrEnv) { e.userFile(thrRedirectUserFile, 0o646, e.u1) }),
		thrIgnoredUserFile("that is a symlink", func(e *thrEnv) {
			testutil.WriteFile(e.t, e.home("real.yaml"), []byte(thrRedirectUserFile), 0o644, e.u1.UID, e.u1.GID)
			e.symlink(e.u1, e.home("real.yaml"), e.home(".lda.yaml"))
		}),
		thrIgnoredUserFile("that is a FIFO", func(e *thrEnv) { e.as(e.u1, "mkfifo", e.home(".lda.yaml")) }),
		// --- programs.
		thrBadProgram("probe;id"),
		thrBadProgram("../../bin/sh"),
		thrBadProgram("probe || sh"),
		thrBadProgram("/bin/sh"),
		thrBadProgram("-x"),
		thrBadProgram("probe\nid"),
		thrBadProgram(""),
		{name: "undefined program", why: `not defined`, exit: 77, reply: thrRefused, setup: func(e *thrEnv) { e.dest("program", "sh") }},
		{name: "trusted program runs", setup: func(e *thrEnv) {
			e.policy = thrProgramPolicy()
			e.plantPrograms()
			e.dest("program", "good")
			e.allow = []string{e.base("out", "marker-good")}
		}},
		thrUntrustedProgram("ww", "world-writable"),
		thrUntrustedProgram("gw", "group-writable"),
		thrUntrustedProgram("link", "symlinked into the user's home"),
		thrUntrustedProgram("userdir", "in a user-owned directory"),
		thrUntrustedProgram("wwdir", "in a world-writable directory"),
		thrUntrustedProgram("userowned", "owned by the user"),
	}
	return cases
}

// thrNode is what the tree snapshot records of one path.
type thrNode struct {
	kind     string
	perm     fs.FileMode
	uid, gid uint32
	nlink    uint64 // files only
	data     string // file content or link target
}

func (n thrNode) String() string {
	return fmt.Sprintf("%s %v uid=%d gid=%d nlink=%d %dB", n.kind, n.perm, n.uid, n.gid, n.nlink, len(n.data))
}

// thrTree records every path under root (symlinks not followed), except
// skip.
func thrTree(t *testing.T, root, skip string) map[string]thrNode {
	t.Helper()
	m := map[string]thrNode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := thrNode{perm: fi.Mode().Perm() | fi.Mode()&(fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid), uid: st.Uid, gid: st.Gid}
		switch fi.Mode().Type() {
		case 0:
			n.kind, n.nlink = "file", uint64(st.Nlink)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.data = string(b)
		case fs.ModeDir:
			n.kind = "dir"
		case fs.ModeSymlink:
			n.kind = "symlink"
			n.data, _ = os.Readlink(p)
		default:
			n.kind, n.nlink = fi.Mode().Type().String(), uint64(st.Nlink)
		}
		m[p] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// thrChange is one difference between two snapshots.
type thrChange struct {
	path          string
	before, after *thrNode
}

func thrDiff(a, b map[string]thrNode) []thrChange {
	var out []thrChange
	for p, n := range a {
		n := n
		if m, ok := b[p]; !ok {
			out = append(out, thrChange{p, &n, nil})
		} else if m != n {
			out = append(out, thrChange{p, &n, &m})
		}
	}
	for p, m := range b {
		m := m
		if _, ok := a[p]; !ok {
			out = append(out, thrChange{p, nil, &m})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

func (c thrChange) String() string {
	switch {
	case c.before == nil:
		return "created " + c.path + " (" + c.after.String() + ")"
	case c.after == nil:
		return "removed " + c.path
	}
	return "changed " + c.path + ": " + c.before.String() + " -> " + c.after.String()
}

// thrRun runs argv with stdin and a deadline, like fixture.run.
func thrRun(t *testing.T, stdin []byte, argv ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%q hung", argv)
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%q: %v", argv, err)
	}
	return result{exit: code, stderr: errb.String(), stdout: out.String()}
}

var thrGeneric = regexp.MustCompile(`^[a-z][a-z ,]*\n$`)

func thrRunCase(t *testing.T, f *fixture, mode string, i int, tc thrCase) {
	saved := f.t
	f.t = t
	defer func() { f.t = saved }()
	e := &thrEnv{t: t, f: f, mode: mode, u1: f.u1, u2: f.u2, marker: fmt.Sprintf("threat-marker-%s-%d", mode, i)}
	e.reset()
	e.common()
	tc.setup(e)
	if e.policy == "" {
		e.policy = defaultPolicy
	}
	f.writePolicy(e.policy)
	user := e.user
	if user == "" {
		user = e.u1.Name
	}

	victims := append([]string{e.notes(), e.u2box(), e.root644(), e.root666()}, e.victims...)
	before := map[string][]byte{}
	for _, v := range victims {
		before[v] = snapshot(t, v)
	}
	tree := thrTree(t, f.base, f.log)

	args := append([]string{"deliver", "-policy", f.policy, "-log", f.log, "-f", "sender@example.org", "-d", user}, e.args...)
	argv := append([]string{f.bin}, args...)
	if e.umask000 {
		if out := thrRun(t, nil, "sh", "-c", `umask 000; umask`); strings.TrimSpace(out.stdout) != "0000" {
			t.Fatalf("sh does not set umask 000: %q", out.stdout)
		}
		argv = append([]string{"sh", "-c", `umask 000; exec "$@"`, "sh"}, argv...)
	}
	start := time.Now()
	r := thrRun(t, message("threat "+tc.name, "body "+e.marker+"\n"), argv...)
	took := time.Since(start)
	log := strings.Join(f.logLines(), "\n")
	t.Logf("took %v; log: %s", took, log)
	why := tc.why
	if why == "" && tc.exit == 77 {
		why = "no rule allows"
	}
	if why != "" && !regexp.MustCompile(`detail="[^\n]*(`+why+`)`).MatchString(log) {
		t.Errorf("log detail does not match %q: %s", why, log)
	}

	// Exit code and the one line on standard error.
	if r.exit != tc.exit {
		t.Errorf("exit %d, want %d; stderr %q", r.exit, tc.exit, r.stderr)
	}
	switch {
	case tc.exit == 0:
		if r.stderr != "" {
			t.Errorf("stderr %q on success", r.stderr)
		}
	case tc.reply != "":
		rest, ok := strings.CutPrefix(r.stderr, "lda: "+tc.reply+" ")
		if !ok || !thrGeneric.MatchString(rest) {
			t.Errorf("stderr %q, want one line \"lda: %s <generic text>\"", r.stderr, tc.reply)
		}
	default:
		if !strings.HasPrefix(r.stderr, "lda: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
			t.Errorf("stderr %q, want one line beginning \"lda: \"", r.stderr)
		}
	}
	if tc.exit != 0 && (strings.Contains(r.stderr, f.base) || strings.Contains(r.stderr, "/etc/")) {
		t.Errorf("stderr leaks a path: %q", r.stderr)
	}
	if tc.min > 0 && took < tc.min {
		t.Errorf("returned after %v, before the lock timeout %v", took, tc.min)
	}
	if tc.max > 0 {
		// The bound is on the delivery as lda timed it (the log's
		// duration_ms), not on the wall time around the command, which
		// also holds the start of two processes of a -race binary and,
		// on a loaded machine, can alone pass the bound.
		d, ok := thrLoggedDuration(log)
		if !ok {
			t.Errorf("no duration_ms in the log: %s", log)
		} else if d > tc.max {
			t.Errorf("the delivery took %v by the log, want at most %v", d, tc.max)
		}
	}

	// Victims byte-identical.
	for _, v := range victims {
		if after := snapshot(t, v); !bytes.Equal(after, before[v]) {
			t.Errorf("victim %s changed:\n%q\nwas\n%q", v, after, before[v])
		}
	}
	if ents, err := os.ReadDir(e.emptyDir()); err != nil || len(ents) != 0 {
		t.Errorf("%s: %d entries (%v), want none", e.emptyDir(), len(ents), err)
	}

	// Nothing anywhere but what the case allows; for a success, the message
	// is in one of those places and everything created is the user's, 0600
	// or 0700.
	changes := thrDiff(tree, thrTree(t, f.base, f.log))
	delivered := false
	for _, c := range changes {
		ok := false
		if tc.exit == 0 {
			for _, g := range e.allow {
				if m, _ := filepath.Match(g, c.path); m {
					ok = true
				}
			}
		}
		if !ok {
			t.Errorf("unexpected: %v", c)
			continue
		}
		if n := c.after; n != nil {
			if strings.Contains(n.data, e.marker) {
				delivered = true
			}
			if c.before == nil {
				want := fs.FileMode(0o600)
				if n.kind == "dir" {
					want = 0o700
				}
				if n.kind != "file" && n.kind != "dir" || n.perm != want || n.uid != uint32(e.u1.UID) || n.gid != uint32(e.u1.GID) {
					t.Errorf("created %s: %v, want %v owned by %d:%d", c.path, n, want, e.u1.UID, e.u1.GID)
				}
			}
		}
	}
	if tc.exit == 0 && !delivered {
		t.Errorf("exit 0 but the message is nowhere in %v; changes: %v", e.allow, changes)
	}
	if tc.check != nil {
		tc.check(e)
	}
}
