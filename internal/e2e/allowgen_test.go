package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"lda/internal/testutil"
)

// agBase is the administrator's policy that allowgen adds to ({{BASE}}
// is the fixture's directory). It allows nothing but ~/Maildir; users may
// add files beneath their homes.
const agBase = `version: 1
min_uid: 1000
user_file: .lda.yaml
default: {maildir: ~/Maildir}
allow:
  - {maildir: ~/Maildir}
deny:
  - {mbox: ~/.ssh/**}
user_may_add:
  - {mbox: ~/**}
  - {maildir: ~/**}
mbox: {locking: [dotlock, fcntl], lock_timeout: 2s, stale_lock: 5m, quoting: mboxrd, create: true}
`

// runAllowgen runs the real allowgen binary as root.
func runAllowgen(t *testing.T, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("allowgen %v hung", args)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("allowgen %v: %v", args, err)
	}
	return result{exit: code, stdout: out.String(), stderr: errb.String()}
}

// programNames maps each program's argv (joined by spaces) to its name in
// a generated system policy.
func programNames(t *testing.T, path string) map[string]string {
	t.Helper()
	var doc struct {
		Programs map[string]struct {
			Argv []string `yaml:"argv"`
		} `yaml:"programs"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for name, p := range doc.Programs {
		m[strings.Join(p.Argv, " ")] = name
	}
	return m
}

func fileOwner(t *testing.T, path string) (uid int, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid), fi.Mode()
}

// TestAllowgen derives policy files with the real allowgen binary from an
// aliases file and two real users' .forward files, then delivers with the
// real lda binary under the generated system file to every derived
// destination (accepted) and to destinations that were not derived
// (refused, exit 77). Then the users attack allowgen through symlinks
// (to /etc/shadow, to another user's files) and foreign :include: files:
// every attempt is refused and reported, nothing is read or written
// through it.
func TestAllowgen(t *testing.T) {
	f := newFixture(t)
	u1, u2 := f.u1, f.u2
	ag := testutil.Build(t, binDir, "./cmd/allowgen")
	probe := testutil.Build(t, filepath.Join(f.base, "prog"), "./internal/testprog/credprobe")
	out := filepath.Join(f.base, "out")
	testutil.Must(t, os.Mkdir(out, 0o1777))
	testutil.Must(t, os.Chmod(out, 0o1777))
	// The default user for root's aliases file: a real user with a home
	// directory (lda runs programs in the home directory, so nobody, whose
	// home does not exist, could receive into files but not run programs).
	u3 := testutil.CreateUser(t, nextUserName(), filepath.Join(f.base, "home"))
	aliasMail := filepath.Join(f.base, "aliasmail")
	testutil.Must(t, os.Mkdir(aliasMail, 0o755))
	testutil.Must(t, os.Chown(aliasMail, u3.UID, u3.GID))
	gen := filepath.Join(f.base, "gen")
	testutil.Must(t, os.Mkdir(gen, 0o755))
	lists := filepath.Join(f.base, "lists")
	testutil.Must(t, os.Mkdir(lists, 0o755))

	base := filepath.Join(f.base, "base.yaml")
	testutil.WriteFile(t, base, []byte(strings.ReplaceAll(agBase, "{{BASE}}", f.base)), 0o644, 0, 0)
	aliasProbe := filepath.Join(out, "alias.probe")
	aliasesFile := filepath.Join(f.base, "aliases")
	testutil.WriteFile(t, lists+"/members", []byte(u1.Name+"\n"+u2.Name+"\n"), 0o644, 0, 0)
	testutil.WriteFile(t, aliasesFile, []byte(strings.Join([]string{
		"# aliases for the allowgen end-to-end test",
		"postmaster: root",
		"team: " + u1.Name + ",",
		"  " + u2.Name,
		"archive: " + aliasMail + "/archive",
		"probe-alias: \"|" + probe + " " + aliasProbe + "\"",
		"needs-shell: \"|/usr/bin/procmail -f- || exit 75\"",
		"list: :include:" + lists + "/members",
		"",
	}, "\n")), 0o644, 0, 0)
	// An aliases file owned by u1: its programs run as u1 (Postfix's rule).
	u1Aliases := filepath.Join(f.base, "u1.aliases")
	u1AliasProbe := filepath.Join(out, "u1-alias.probe")
	testutil.WriteFile(t, u1Aliases, []byte("u1-prog: \"|"+probe+" "+u1AliasProbe+"\"\n"), 0o644, u1.UID, u1.GID)
	f.mkdirAs(u1, filepath.Join(u1.Home, "mail"))
	u1Probe, u2Probe := filepath.Join(out, u1.Name+".fwd.probe"), filepath.Join(out, u2.Name+".fwd.probe")
	testutil.WriteFile(t, filepath.Join(u1.Home, ".forward"), []byte(
		"\\"+u1.Name+", "+u1.Name+"-copy@example.org\n"+
			"~/mail/saved\n"+
			"\"|"+probe+" "+u1Probe+"\"\n"), 0o644, u1.UID, u1.GID)
	testutil.WriteFile(t, filepath.Join(u2.Home, ".forward"), []byte(
		u2.Home+"/inbox-from-forward\n"+
			"\"|"+probe+" "+u2Probe+"\"\n"+
			"/etc/passwd\n"), 0o644, u2.UID, u2.GID)

	sys := filepath.Join(gen, "policy.yaml")
	common := []string{"-aliases", aliasesFile + "," + u1Aliases, "-base", base, "-policy", sys, "-users", u1.Name + "," + u2.Name, "-lda", f.bin, "-default-user", u3.Name}

	t.Run("dry run writes nothing", func(t *testing.T) {
		// With the default -default-user, nobody: a warning for the program.
		r := runAllowgen(t, ag, common[:len(common)-2]...)
		if want := aliasesFile + ":6: warning: \"|" + probe + " " + aliasProbe + "\" runs as nobody, whose home directory"; r.exit != 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("exit %d; stderr lacks %q:\n%s", r.exit, want, r.stderr)
		}
		r = runAllowgen(t, ag, common...)
		if r.exit != 0 {
			t.Fatalf("exit %d\n%s\n%s", r.exit, r.stdout, r.stderr)
		}
		for _, want := range []string{"==> " + sys + " (system policy) <==", "== routing", "== summary", "-dest mbox:" + aliasMail + "/archive"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("dry run output lacks %q:\n%s", want, r.stdout)
			}
		}
		// Warnings, with file:line and the reason.
		for _, want := range []string{
			aliasesFile + ":7: warning: \"|/usr/bin/procmail -f- || exit 75\": not convertible to an lda program: needs a shell: unquoted '|'",
			filepath.Join(u2.Home, ".forward") + ":3: warning: mbox /etc/passwd is outside what " + sys + " lets " + u2.Name + " have: no rule allows mbox /etc/passwd",
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		if _, err := os.Stat(sys); !os.IsNotExist(err) {
			t.Fatalf("dry run wrote %s", sys)
		}
		if _, err := os.Stat(filepath.Join(u1.Home, ".lda.yaml")); !os.IsNotExist(err) {
			t.Fatal("dry run wrote a user file")
		}
	})

	t.Run("write", func(t *testing.T) {
		r := runAllowgen(t, ag, append(common, "-write")...)
		if r.exit != 0 {
			t.Fatalf("exit %d\n%s\n%s", r.exit, r.stdout, r.stderr)
		}
		for path, owner := range map[string]int{sys: 0, filepath.Join(u1.Home, ".lda.yaml"): u1.UID, filepath.Join(u2.Home, ".lda.yaml"): u2.UID} {
			uid, mode := fileOwner(t, path)
			if uid != owner || !mode.IsRegular() || mode.Perm()&^0o644 != 0 {
				t.Errorf("%s: owner %d mode %v, want owner %d, a regular file, 0644 or stricter", path, uid, mode, owner)
			}
		}
		if r := runAllowgen(t, ag, append(common, "-check")...); r.exit != 0 {
			t.Errorf("-check right after -write: exit %d\n%s", r.exit, r.stdout)
		}
	})

	progs := programNames(t, sys)
	aliasProg, u1AliasProg := progs[probe+" "+aliasProbe], progs[probe+" "+u1AliasProbe]
	u1Prog, u2Prog := progs[probe+" "+u1Probe], progs[probe+" "+u2Probe]
	if aliasProg == "" || u1AliasProg == "" || u1Prog == "" || u2Prog == "" {
		t.Fatalf("programs missing from %s: %v", sys, progs)
	}
	lda := func(user string, dest ...string) result {
		args := append([]string{"deliver", "-policy", sys, "-log", f.log, "-f", "sender@example.org", "-d", user}, dest...)
		return f.run(message("allowgen", "body\n"), args...)
	}
	probeUID := func(t *testing.T, file string, uid int) {
		t.Helper()
		if b := snapshot(t, file); !strings.Contains(string(b), "Uid:\t"+strconv.Itoa(uid)+"\t") {
			t.Errorf("%s: the program did not run as uid %d:\n%.300s", file, uid, b)
		}
	}
	for _, tc := range []struct {
		name  string
		user  string
		dest  []string
		exit  int
		check func(t *testing.T)
	}{
		{"alias file as the default user", u3.Name, []string{"-dest", "mbox:" + aliasMail + "/archive"}, 0, func(t *testing.T) {
			if uid, _ := fileOwner(t, aliasMail+"/archive"); uid != u3.UID {
				t.Errorf("archive owned by %d, want %d", uid, u3.UID)
			}
		}},
		{"alias program as the default user", u3.Name, []string{"-dest", "program:" + aliasProg}, 0, func(t *testing.T) { probeUID(t, aliasProbe, u3.UID) }},
		{"program of a user's aliases file as its owner", u1.Name, []string{"-dest", "program:" + u1AliasProg}, 0, func(t *testing.T) { probeUID(t, u1AliasProbe, u1.UID) }},
		{"user 1 file from .forward", u1.Name, []string{"-dest", "mbox:" + u1.Home + "/mail/saved"}, 0, nil},
		{"user 1 program from .forward", u1.Name, []string{"-dest", "program:" + u1Prog}, 0, func(t *testing.T) { probeUID(t, u1Probe, u1.UID) }},
		{"user 1 default", u1.Name, nil, 0, nil},
		{"user 2 file from .forward", u2.Name, []string{"-dest", "mbox:" + u2.Home + "/inbox-from-forward"}, 0, nil},
		{"user 2 program from .forward", u2.Name, []string{"-dest", "program:" + u2Prog}, 0, func(t *testing.T) { probeUID(t, u2Probe, u2.UID) }},
		// Not derived: refused.
		{"user 1 may not run user 2's program", u1.Name, []string{"-dest", "program:" + u2Prog}, 77, nil},
		{"user 2 may not use user 1's file name", u2.Name, []string{"-dest", "mbox:" + u2.Home + "/mail/saved"}, 77, nil},
		{"other file as the default user", u3.Name, []string{"-dest", "mbox:" + aliasMail + "/other"}, 77, nil},
		{"user 2 may not run user 1's .forward program", u2.Name, []string{"-dest", "program:" + u1Prog}, 77, nil},
		{"outside the policy: /etc/passwd", u2.Name, []string{"-dest", "mbox:/etc/passwd"}, 77, nil},
	} {
		t.Run("deliver/"+tc.name, func(t *testing.T) {
			r := lda(tc.user, tc.dest...)
			if r.exit != tc.exit {
				t.Fatalf("exit %d, want %d: %s", r.exit, tc.exit, r.stderr)
			}
			if tc.check != nil {
				tc.check(t)
			}
		})
	}

	t.Run("symlink attacks are refused and reported", func(t *testing.T) {
		shadow, err := os.ReadFile("/etc/shadow")
		if err != nil {
			t.Skipf("no /etc/shadow to protect: %v", err)
		}
		u1Fwd, u2Fwd := filepath.Join(u1.Home, ".forward"), filepath.Join(u2.Home, ".forward")
		u1Policy, u2Policy := filepath.Join(u1.Home, ".lda.yaml"), filepath.Join(u2.Home, ".lda.yaml")
		before1 := snapshot(t, u1Policy)
		victim := filepath.Join(f.base, "victim")
		testutil.WriteFile(t, victim, []byte("root's file\n"), 0o644, 0, 0)
		// u1: .forward becomes a symlink to /etc/shadow.
		testutil.Must(t, os.Remove(u1Fwd))
		f.asUser(u1, "ln", "-s", "/etc/shadow", u1Fwd)
		// u1 keeps a private list that u2 will try to include.
		f.asUser(u1, "sh", "-c", "printf 'secret-of-u1\\n' > "+u1.Home+"/private-list && chmod 644 "+u1.Home+"/private-list")
		// u2: includes /etc/shadow directly, u1's list, and both through
		// symlinks; and replaces its policy file by a symlink to a root
		// file that allowgen would then overwrite.
		f.asUser(u2, "ln", "-s", "/etc/shadow", u2.Home+"/shadow-link")
		f.asUser(u2, "ln", "-s", u1.Home+"/.lda.yaml", u2.Home+"/u1-link")
		f.asUser(u2, "sh", "-c", "cat > "+u2Fwd+" <<'EOF'\n"+u2.Home+"/inbox-from-forward\n:include:/etc/shadow\n:include:"+u1.Home+"/private-list\n:include:"+u2.Home+"/shadow-link\n:include:"+u2.Home+"/u1-link\nEOF")
		testutil.Must(t, os.Remove(u2Policy))
		f.asUser(u2, "ln", "-s", victim, u2Policy)

		r := runAllowgen(t, ag, append(common, "-write")...)
		if r.exit != 2 {
			t.Fatalf("exit %d, want 2 (errors reported)\n%s\n%s", r.exit, r.stdout, r.stderr)
		}
		for _, want := range []string{
			u1Fwd + ": error: refused: a symbolic link",
			u2Fwd + ":2: error: :include:/etc/shadow: refused: owned by root and not readable by others",
			u2Fwd + ":3: error: :include:" + u1.Home + "/private-list: refused: owned by uid " + strconv.Itoa(u1.UID) + ", not by uid " + strconv.Itoa(u2.UID),
			u2Fwd + ":4: error: :include:" + u2.Home + "/shadow-link: refused: a symbolic link",
			u2Fwd + ":5: error: :include:" + u2.Home + "/u1-link: refused: a symbolic link",
			u2Policy + ": error: not written: refused: a symbolic link",
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
			}
		}
		all := r.stdout + r.stderr
		for _, l := range strings.Split(string(shadow), "\n") {
			if name, hash, ok := strings.Cut(l, ":"); ok && len(hash) > 8 && strings.Contains(all, hash[:8]) {
				t.Errorf("allowgen's output contains /etc/shadow's entry for %s", name)
			}
		}
		if strings.Contains(all, "secret-of-u1") {
			t.Error("allowgen's output contains u1's private list")
		}
		if got := snapshot(t, victim); string(got) != "root's file\n" {
			t.Errorf("allowgen wrote through u2's symlink: %q", got)
		}
		if fi, err := os.Lstat(u2Policy); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("u2's symlink was replaced: %v %v", fi, err)
		}
		if got := snapshot(t, u1Policy); !bytes.Equal(got, before1) {
			t.Errorf("u1's file changed although u1's .forward was refused:\n%s", got)
		}
	})
}
