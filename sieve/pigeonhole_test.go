package sieve

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// The differential test runs every case of testdata/pigeonhole through lda
// and through Pigeonhole's sieve-test (Debian package dovecot-sieve) and
// compares the effects: what is stored where with which Maildir flags,
// where the message is redirected, whether it is rejected and why, and
// whether the run failed (implicit keep).
//
// A case is NAME.sieve with a header of comments:
//
//	# from: sender@example.org         envelope sender (default sender@example.org)
//	# to: user+lists@example.com       original recipient (default user@example.com)
//	# message: NAME.eml                the message (default NAME.eml)
//	# before: NAME.inc.sieve           a script run before this one (repeatable)
//
// Files ending in .inc.sieve are only used through "before".
//
// sieve-test runs each case twice: once dry, to learn the folders to
// create, and once with -e into a scratch Maildir, whose contents are the
// effects. This is how sieve_before and sieve_after sequences really behave,
// keep deferral included.

// pigeonholeDifferences lists the cases where lda deliberately differs from
// Pigeonhole, with the reason (also in man/lda-sieve.7, PIGEONHOLE
// DIFFERENCES).
var pigeonholeDifferences = map[string]string{
	"fileinto-slash":           `lda maps "/" to the Maildir++ separator "."; Dovecot's Maildir++ refuses "/" in a name`,
	"fileinto-nul":             "lda refuses a NUL in a folder name (script error, implicit keep); Pigeonhole cuts the name at the NUL",
	"redirect-display-name":    "lda accepts only an RFC 5321 mailbox; Pigeonhole also accepts an RFC 5322 name-addr",
	"redirect-quoted-space":    "lda refuses a space anywhere in a redirect address, also in a quoted local part",
	"before-copy-then-reject":  "lda cannot both deliver (earlier script) and refuse the recipient: script error, implicit keep",
	"before-copy-then-error":   "on a script error lda keeps only [Keep]; Pigeonhole keeps the earlier scripts' actions as well",
	"fileinto-duplicate-flags": "go-sieve ignores a second fileinto into the same folder, so its flags are lost; Pigeonhole uses the later flags",
}

type phCase struct {
	name     string
	script   string // path
	message  string // path
	from, to string
	before   []string // paths
}

func loadCases(t *testing.T, dir string) []phCase {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.sieve"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []phCase
	for _, p := range paths {
		if strings.HasSuffix(p, ".inc.sieve") {
			continue
		}
		base := strings.TrimSuffix(filepath.Base(p), ".sieve")
		c := phCase{name: base, script: p, message: filepath.Join(dir, base+".eml"),
			from: "sender@example.org", to: "user@example.com"}
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(src), "\n") {
			if !strings.HasPrefix(line, "#") {
				break
			}
			k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "#")), ":")
			v = strings.TrimSpace(v)
			if !ok {
				continue
			}
			switch k {
			case "from":
				c.from = v
			case "to":
				c.to = v
			case "message":
				c.message = filepath.Join(dir, v)
			case "before":
				c.before = append(c.before, filepath.Join(dir, v))
			}
		}
		cases = append(cases, c)
	}
	return cases
}

// effects is the comparable result of a run.
type effects struct {
	load   bool     // a script did not load (compile)
	failed bool     // the run failed and was resolved with an implicit keep
	list   []string // sorted: "store FOLDER FLAGS", "redirect ADDR", "reject REASON"
}

func (e effects) String() string {
	s := strings.Join(e.list, "; ")
	if s == "" {
		s = "(nothing)"
	}
	if e.failed {
		s = "FAILED: " + s
	}
	return s
}

func (e effects) detail() string {
	if e.load {
		return e.String() + " (load error)"
	}
	return e.String()
}

func ldaEffects(t *testing.T, c phCase) effects {
	t.Helper()
	var scripts []*Script
	for _, p := range append(append([]string(nil), c.before...), c.script) {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Load(f, filepath.Base(p), Limits{})
		f.Close()
		if err != nil {
			t.Logf("lda: %v", err)
			// The worker keeps the message when a script does not load.
			return effects{failed: true, load: true, list: []string{"store INBOX "}}
		}
		scripts = append(scripts, s)
	}
	raw, err := os.ReadFile(c.message)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := ParseMessage(bytes.NewReader(raw), int64(len(raw)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Run(context.Background(), scripts, Envelope{From: c.from, To: c.to}, msg, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var e effects
	e.failed = out.ScriptError != nil
	for _, a := range out.Actions {
		switch a.Kind {
		case Keep:
			e.list = append(e.list, "store INBOX "+MaildirFlags(a.Flags))
		case FileInto:
			e.list = append(e.list, "store "+a.Folder+" "+MaildirFlags(a.Flags))
		case Redirect:
			e.list = append(e.list, "redirect "+a.Address)
		case Reject:
			e.list = append(e.list, "reject "+a.Reason)
		}
	}
	sort.Strings(e.list)
	return e
}

var (
	reFolder    = regexp.MustCompile(`store message in folder: (.*)$`)
	reForwarded = regexp.MustCompile(`^sieve-test.*Info: .*redirect action: forwarded to <(.*)>`)
)

// pigeonholeEffects runs sieve-test on c in a scratch directory.
func pigeonholeEffects(t *testing.T, bin string, c phCase) effects {
	t.Helper()
	dir, err := os.MkdirTemp("", "lda-sieve-diff-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// sieve-test refuses to run as root: it drops to mail_uid, which must
	// then be able to read the scripts and write the Maildir.
	root := os.Geteuid() == 0
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile := func(src string) string {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.Base(src))
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return dst
	}
	// Relative names: sieve-test fails to open "-s" scripts given by an
	// absolute path.
	script := filepath.Base(copyFile(c.script))
	message := filepath.Base(copyFile(c.message))
	maildir := filepath.Join(dir, "Maildir")
	conf := "first_valid_uid = 1\nmail_fsync = never\nmail_location = maildir:" + maildir + "\n" +
		"plugin {\n  sieve_max_redirects = 4\n  sieve_max_actions = 32\n  recipient_delimiter = +\n}\n"
	if root {
		conf = "mail_uid = 65534\nmail_gid = 65534\n" + conf
	}
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-c", confPath, "-C", "-f", c.from, "-a", c.to, "-r", c.to}
	for _, b := range c.before {
		args = append(args, "-s", filepath.Base(copyFile(b)))
	}
	run := func(extra ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append(append(append([]string(nil), args...), extra...), script, message)...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "USER=nobody"}
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	dry := run()
	if strings.Contains(dry, "Fatal:") && !strings.Contains(dry, "Fatal: failed to compile") {
		t.Fatalf("sieve-test cannot run here (TMPDIR must be traversable by uid 65534 when run as root):\n%s", dry)
	}
	if strings.Contains(dry, "failed to compile") {
		// Dovecot's LDA keeps the message when the script does not compile.
		return effects{failed: true, load: true, list: []string{"store INBOX "}}
	}
	folders := map[string]bool{}
	for _, line := range strings.Split(dry, "\n") {
		if m := reFolder.FindStringSubmatch(line); m != nil && !strings.EqualFold(m[1], "INBOX") {
			folders[m[1]] = true
		}
	}
	mkdirs := []string{maildir}
	for f := range folders {
		if f != "" && !strings.ContainsAny(f, "/\x00") && !strings.Contains(f, "..") {
			mkdirs = append(mkdirs, filepath.Join(maildir, "."+f))
		}
	}
	for _, d := range mkdirs {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if root {
		filepath.Walk(maildir, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, 65534, 65534) })
	}
	out := run("-e", "-l", "maildir:"+maildir)
	var e effects
	sc := bufio.NewScanner(strings.NewReader(out))
	var rejectReason []string
	inReason := false
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		switch {
		case strings.Contains(line, "final result: failed"):
			e.failed = true
		case reForwarded.MatchString(line):
			e.list = append(e.list, "redirect "+reForwarded.FindStringSubmatch(line)[1])
		case strings.HasPrefix(line, "Your message to ") && strings.HasSuffix(line, "was automatically rejected:"):
			inReason = true
		case inReason && strings.HasPrefix(line, "--"):
			inReason = false
			e.list = append(e.list, "reject "+reason(strings.Join(rejectReason, "\n")))
		case inReason:
			rejectReason = append(rejectReason, line)
		}
	}
	// The stored messages.
	entries, err := os.ReadDir(maildir)
	if err != nil {
		t.Fatal(err)
	}
	boxes := map[string]string{"INBOX": maildir}
	for _, en := range entries {
		if en.IsDir() && strings.HasPrefix(en.Name(), ".") {
			boxes[en.Name()[1:]] = filepath.Join(maildir, en.Name())
		}
	}
	for box, d := range boxes {
		for _, sub := range []string{"new", "cur"} {
			files, _ := os.ReadDir(filepath.Join(d, sub))
			for _, f := range files {
				flags := ""
				if _, info, ok := strings.Cut(f.Name(), ":2,"); ok {
					for _, r := range info {
						if r >= 'A' && r <= 'Z' {
							flags += string(r)
						}
					}
				}
				e.list = append(e.list, "store "+box+" "+flags)
			}
		}
	}
	sort.Strings(e.list)
	return e
}

func TestPigeonholeDifferential(t *testing.T) {
	cases := loadCases(t, filepath.Join("testdata", "pigeonhole"))
	if len(cases) < 40 {
		t.Errorf("the corpus has %d cases, want at least 40", len(cases))
	}
	for name := range pigeonholeDifferences {
		found := false
		for _, c := range cases {
			found = found || c.name == name
		}
		if !found {
			t.Errorf("allowlisted difference %s has no case", name)
		}
	}
	bin, err := exec.LookPath("sieve-test")
	if err != nil {
		t.Skip("sieve-test (Debian package dovecot-sieve) is not installed")
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := ldaEffects(t, c)
			want := pigeonholeEffects(t, bin, c)
			t.Logf("lda: %s / pigeonhole: %s", got.detail(), want.detail())
			if why, ok := pigeonholeDifferences[c.name]; ok {
				if got.String() == want.String() {
					t.Errorf("allowlisted difference (%s) no longer differs: both %s", why, got)
				} else {
					t.Logf("known difference (%s):\n lda:        %s\n pigeonhole: %s", why, got.detail(), want.detail())
				}
				return
			}
			if got.String() != want.String() {
				t.Errorf("lda and Pigeonhole differ:\n lda:        %s\n pigeonhole: %s", got.detail(), want.detail())
			} else if got.load != want.load {
				t.Logf("same effect, but a load error on one side only:\n lda:        %s\n pigeonhole: %s", got.detail(), want.detail())
			}
		})
	}
}
