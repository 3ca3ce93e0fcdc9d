package allowgen

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"lda/internal/aliases"
	"lda/policy"

	"lda/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the .golden files of testdata")

// site is a copy of testdata/site in a temporary directory, with its
// files owned as a real site's would be: the aliases file and lists by
// mailadm, each home and .forward by its user. As root the users get
// their own uids; otherwise they all share the caller's uid (and mailadm,
// listed first, owns the aliases file).
type site struct {
	dir    string
	passwd string
	uids   map[string]int
}

var siteUsers = []string{"mailadm", "alice", "bob", "carol", "dave", "erin"}

func newSite(t *testing.T) *site {
	t.Helper()
	if os.Getuid() != 0 && os.Getuid() < 1000 {
		t.Skip("needs root or a uid of at least 1000 (the policy's min_uid)")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	s := &site{dir: dir, uids: map[string]int{}}
	for i, u := range siteUsers {
		if os.Getuid() == 0 {
			s.uids[u] = 3000 + i
		} else {
			s.uids[u] = os.Getuid()
		}
	}
	src := filepath.Join("testdata", "site")
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(dir, rel)
		if fi.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, []byte(strings.ReplaceAll(string(b), "{{DIR}}", dir)), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"spool", "spool/md"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	var pw strings.Builder
	for _, u := range siteUsers { // first: mailadm owns the caller's uid
		home := filepath.Join(dir, "home", u)
		if u == "mailadm" {
			home = dir
		}
		fmt.Fprintf(&pw, "%s:x:%d:%d::%s:/bin/sh\n", u, s.uids[u], s.uids[u], home)
	}
	pw.WriteString("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
	s.passwd = filepath.Join(dir, "passwd")
	must(t, os.WriteFile(s.passwd, []byte(pw.String()), 0o644))
	s.chown(t, "site.aliases", "mailadm")
	s.chown(t, "lists/staff", "mailadm")
	for _, u := range siteUsers[1:] {
		s.chown(t, "home/"+u, u)
		os.Chmod(filepath.Join(dir, "home", u), 0o700)
		s.chown(t, "home/"+u+"/.forward", u)
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (s *site) chown(t *testing.T, rel, user string) {
	t.Helper()
	if os.Getuid() == 0 {
		must(t, os.Lchown(filepath.Join(s.dir, rel), s.uids[user], s.uids[user]))
	}
}

func (s *site) config() Config {
	return Config{
		Aliases:     []string{filepath.Join(s.dir, "site.aliases")},
		Policy:      filepath.Join(s.dir, "policy.yaml"),
		Base:        filepath.Join(s.dir, "base.yaml"),
		Passwd:      s.passwd,
		Users:       siteUsers[1:],
		Forward:     ".forward",
		DefaultUser: "nobody",
		Sieve:       true,
		Domain:      "example.org",
		Table:       "aliases",
		LDA:         "/usr/sbin/lda",
	}
}

// describeResult renders a result for the golden file.
func describeResult(r *Result, lda string) string {
	var b strings.Builder
	for _, o := range r.Outputs {
		state := ""
		switch {
		case o.Incomplete != "":
			state = " NOT WRITTEN: incomplete"
		case o.Content == nil:
			state = " to be removed"
		case o.Refused() != "":
			state = " CANNOT BE WRITTEN: " + o.Refused()
		}
		fmt.Fprintf(&b, "==> %s (%s, mode %#o)%s <==\n", o.Path, o.Role, o.Mode, state)
		b.Write(o.Content)
	}
	b.WriteString("== routing\n" + r.Report(lda))
	b.WriteString("== table\n" + r.Table)
	b.WriteString("== diagnostics\n")
	for _, d := range r.Diags {
		b.WriteString(d.String() + "\n")
	}
	b.WriteString("== summary\n" + r.Summary.String())
	return b.String()
}

// TestGenerateGolden runs allowgen over testdata/site (an aliases file
// with every kind of destination and :include:, and .forward files: a
// list, an Exim filter, a Sieve script, maildir folders, programs) and
// compares everything it derives with testdata/site.golden.
func TestGenerateGolden(t *testing.T) {
	s := newSite(t)
	cfg := s.config()
	res, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	got := strings.ReplaceAll(describeResult(res, cfg.LDA), s.dir, "{{DIR}}")
	cfg.Table = "virtual"
	res2, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer res2.Close()
	got += "== virtual table\n" + strings.ReplaceAll(res2.Table, s.dir, "{{DIR}}")
	golden := filepath.Join("testdata", "site.golden")
	if *update {
		must(t, os.WriteFile(golden, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("result differs from %s (go test -update, then review the diff):\n%s", golden, UnifiedDiff("want", "got", want, []byte(got)))
	}
	// Every file allowgen writes parses with lda's own parsers.
	sys, err := policy.ParseSystem(strings.NewReader(string(res.Outputs[0].Content)), "system")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range res.Outputs[1:] {
		if !strings.HasSuffix(o.Path, ".lda.yaml") || o.Content == nil {
			continue
		}
		name := filepath.Base(filepath.Dir(o.Path))
		u := policy.User{Name: name, Home: filepath.Dir(o.Path)}
		if _, err := policy.ParseUser(strings.NewReader(string(o.Content)), o.Path, sys, u); err != nil {
			t.Errorf("%s: %v", o.Path, err)
		}
	}
}

// TestWriteCheckDiff writes, checks, changes a source, checks again, and
// keeps a user's own file.
func TestWriteCheckDiff(t *testing.T) {
	s := newSite(t)
	cfg := s.config()
	gen := func() *Result {
		t.Helper()
		r, err := Generate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		return r
	}
	changed := func(r *Result) []string {
		var out []string
		for _, o := range r.Outputs {
			if o.Changed() {
				out = append(out, strings.TrimPrefix(o.Path, s.dir+"/"))
			}
		}
		return out
	}
	r := gen()
	if c := changed(r); fmt.Sprint(c) != "[policy.yaml home/alice/.lda.yaml home/dave/.lda.sieve]" {
		t.Fatalf("before writing, changed: %v", c)
	}
	done, errs := r.Write()
	if len(errs) > 0 || len(done) != 3 {
		t.Fatalf("write: %v %v", done, errs)
	}
	for _, tc := range []struct {
		path string
		user string
		mode os.FileMode
	}{
		{"policy.yaml", "", 0o644},
		{"home/alice/.lda.yaml", "alice", 0o644},
		{"home/dave/.lda.sieve", "dave", 0o600},
	} {
		t.Run("owner and mode of "+tc.path, func(t *testing.T) {
			fi, err := os.Stat(filepath.Join(s.dir, tc.path))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tc.mode {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tc.mode)
			}
			if os.Getuid() == 0 {
				want := 0
				if tc.user != "" {
					want = s.uids[tc.user]
				}
				if uid := statUID(fi); uid != want {
					t.Errorf("owner %d, want %d", uid, want)
				}
			}
		})
	}
	if c := changed(gen()); len(c) != 0 {
		t.Fatalf("right after writing, changed: %v", c)
	}
	// Regenerating from the written file (no -base) keeps it as it is.
	cfg2 := cfg
	cfg2.Base = ""
	if c := changed(func() *Result { cfg, cfg2 = cfg2, cfg; defer func() { cfg, cfg2 = cfg2, cfg }(); return gen() }()); len(c) != 0 {
		t.Fatalf("regenerated without -base, changed: %v", c)
	}
	// A new alias with a file: the system file differs, and the diff says so.
	f, _ := os.OpenFile(cfg.Aliases[0], os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintf(f, "late: %s/spool/late\n", s.dir)
	f.Close()
	r = gen()
	if c := changed(r); fmt.Sprint(c) != "[policy.yaml]" {
		t.Fatalf("after a new alias, changed: %v", c)
	}
	d := UnifiedDiff("old", "new", r.Outputs[0].OldContent(), r.Outputs[0].Content)
	if !strings.Contains(d, "\n+  - {mbox: "+s.dir+"/spool/late}  # allowgen: "+cfg.Aliases[0]+":23 (alias late), runs as mailadm\n") {
		t.Errorf("diff:\n%s", d)
	}
	// alice's .forward goes away: her generated file is stale and removed.
	must(t, os.Remove(filepath.Join(s.dir, "home/alice/.forward")))
	r = gen()
	var removed bool
	for _, o := range r.Outputs {
		removed = removed || (o.Content == nil && strings.HasSuffix(o.Path, "alice/.lda.yaml"))
	}
	if !removed {
		t.Error("alice's stale file is not to be removed")
	}
	if _, errs := r.Write(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "home/alice/.lda.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("alice's stale file: %v", err)
	}
	// alice writes her own policy file: allowgen leaves it alone.
	must(t, os.WriteFile(filepath.Join(s.dir, "home/alice/.forward"), []byte("~/mail/saved\n"), 0o644))
	s.chown(t, "home/alice/.forward", "alice")
	own := filepath.Join(s.dir, "home/alice/.lda.yaml")
	must(t, os.WriteFile(own, []byte("version: 1\n"), 0o644))
	r = gen()
	var refused string
	for _, o := range r.Outputs {
		if o.Path == own {
			refused = o.Refused()
		}
	}
	if !strings.Contains(refused, "not written by allowgen") {
		t.Errorf("alice's own file: refused %q", refused)
	}
	if _, errs := r.Write(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if b, _ := os.ReadFile(own); string(b) != "version: 1\n" {
		t.Errorf("alice's own file was overwritten: %q", b)
	}
}

func statUID(fi os.FileInfo) int { return int(fi.Sys().(*syscall.Stat_t).Uid) }

// TestSplitCommand covers the conversion of command lines to argv.
func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // argv joined by |, or the error's text
	}{
		{"/usr/bin/vacation alice", "/usr/bin/vacation|alice"},
		{"  /usr/bin/x   a\tb  ", "/usr/bin/x|a|b"},
		{"/usr/bin/x 'a b' \"c d\" e\\ f", "/usr/bin/x|a b|c d|e f"},
		{`/usr/bin/x "a \"q\" \\ \z"`, `/usr/bin/x|a "q" \ \z`},
		{"/usr/bin/x ''", "/usr/bin/x|"},
		{"exec /usr/bin/procmail -f-", "/usr/bin/procmail|-f-"},
		{"/usr/bin/x a=b", "/usr/bin/x|a=b"},
		{"/usr/bin/x a#b a~b", "/usr/bin/x|a#b|a~b"},
		{"/usr/bin/x '$HOME' '*'", "/usr/bin/x|$HOME|*"},
		{"/usr/bin/procmail || exit 75", "needs a shell: unquoted '|'"},
		{"/usr/bin/x; id", "needs a shell: unquoted ';'"},
		{"/usr/bin/x > /tmp/y", "needs a shell: unquoted '>'"},
		{"/usr/bin/x < /etc/passwd", "needs a shell: unquoted '<'"},
		{"/usr/bin/x &", "needs a shell: unquoted '&'"},
		{"/usr/bin/x $HOME", "needs a shell: unquoted '$'"},
		{"/usr/bin/x `id`", "needs a shell: unquoted '`'"},
		{"/usr/bin/x \"$HOME\"", "needs a shell: '$' inside double quotes (an expansion)"},
		{"/usr/bin/x *.txt", "needs a shell: unquoted '*'"},
		{"/usr/bin/x ~/y", "needs a shell: '~' at the start of a word"},
		{"/usr/bin/x # comment", "needs a shell: '#' at the start of a word"},
		{"/usr/bin/x (y)", "needs a shell: unquoted '('"},
		{"IFS=' ' /usr/bin/x", "needs a shell: a variable assignment before the command"},
		{"if true", `needs a shell: the reserved word "if"`},
		{"/usr/bin/x 'unterminated", "needs a shell: unterminated '"},
		{"procmail -d x", "needs a shell: procmail is not an absolute clean path (a shell would search $PATH)"},
		{"/usr/../bin/x", "needs a shell: /usr/../bin/x is not an absolute clean path (a shell would search $PATH)"},
		{"exec", "empty command"},
		{"", "empty command"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			argv, err := SplitCommand(tc.in)
			got := strings.Join(argv, "|")
			if err != nil {
				got = err.Error()
				if strings.HasPrefix(tc.want, "needs a shell") != errors.Is(err, ErrNeedsShell) {
					t.Errorf("errors.Is(ErrNeedsShell) = %v", errors.Is(err, ErrNeedsShell))
				}
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPatterns checks that a concrete path becomes a pattern that matches
// exactly it, and never a wildcard.
func TestPatterns(t *testing.T) {
	for _, tc := range []struct {
		path, home, want string
	}{
		{"/var/spool/x", "", "/var/spool/x"},
		{"/var/spool/100%", "", "/var/spool/100%%"},
		{"/var/spool/%u", "", "/var/spool/%%u"},
		{"/var/spool/a*b", "", "error"},
		{"/var/spool/a?b", "", "error"},
		{"/var/spool/[x]", "", "error"},
		{`/var/spool/a\b`, "", "error"},
		{"/var//spool", "", "error"},
		{"/home/a/mail/x", "/home/a", "~/mail/x"},
		{"/home/a/100%", "/home/a", "~/100%%"},
		{"/home/ab/x", "/home/a", "/home/ab/x"},
		{"/home/a", "/home/a", "/home/a"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			var got string
			var err error
			if tc.home != "" {
				got, err = homePattern(tc.path, tc.home)
			} else {
				got, err = literalPattern(tc.path)
			}
			if err != nil {
				got = "error"
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if err != nil {
				return
			}
			// The pattern, in a rule, admits the path and nothing else
			// nearby.
			sys := "version: 1\ndefault: {maildir: ~/Maildir}\nallow:\n  - {maildir: ~/Maildir}\n  - {mbox: " + yamlScalar(got) + "}\n"
			s, err := policy.ParseSystem(strings.NewReader(sys), "t")
			if err != nil {
				if strings.Contains(err.Error(), "no literal directory") {
					return
				}
				t.Fatal(err)
			}
			u := policy.User{Name: "a", Home: "/home/a"}
			p := &policy.Policy{Sys: s}
			if !p.Check(u, policy.Destination{Kind: policy.Mbox, Path: tc.path}).Allowed {
				t.Errorf("%s does not admit %s", got, tc.path)
			}
			for _, other := range []string{tc.path + "x", tc.path + "/x", filepath.Dir(tc.path) + "/other"} {
				if p.Check(u, policy.Destination{Kind: policy.Mbox, Path: other}).Allowed {
					t.Errorf("%s admits %s", got, other)
				}
			}
		})
	}
}

// TestBaseText checks that allowgen's lines are found again and removed,
// leaving the administrator's text byte for byte, and that sections are
// created when missing.
func TestBaseText(t *testing.T) {
	admin := "# my policy\nversion: 1\ndefault: {maildir: ~/Maildir}\nallow:\n    - {maildir: ~/Maildir}   # mine\n\n# the end\n"
	b, err := loadBase(admin, "admin")
	if err != nil {
		t.Fatal(err)
	}
	adds := []addition{
		{section: "allow", text: "{mbox: /var/x}", comment: "a:1 (alias x), runs as nobody"},
		{section: "programs", text: programLine("p-1", []string{"/bin/p", "100%"}), comment: "a:2"},
		{section: "user_may_add", text: "{program: p-1}", comment: "b:1"},
	}
	out := b.render(adds)
	want := "# my policy\nversion: 1\ndefault: {maildir: ~/Maildir}\nallow:\n    - {maildir: ~/Maildir}   # mine\n    - {mbox: /var/x}  # allowgen: a:1 (alias x), runs as nobody\n\n# the end\n" +
		"programs:  # allowgen: section\n  p-1: {argv: [\"/bin/p\", \"100%%\"]}  # allowgen: a:2\n" +
		"user_may_add:  # allowgen: section\n  - {program: p-1}  # allowgen: b:1\n"
	if out != want {
		t.Fatalf("render:\n%s\nwant\n%s", out, want)
	}
	if _, err := policy.ParseSystem(strings.NewReader(out), "out"); err != nil {
		t.Fatal(err)
	}
	if got := stripGenerated(out); got != admin {
		t.Fatalf("strip:\n%q\nwant\n%q", got, admin)
	}
	for _, tc := range []struct{ name, text, err string }{
		{"flow allow", "version: 1\ndefault: {maildir: ~/Maildir}\nallow: [{maildir: ~/Maildir}]\n", "block style"},
		{"flow programs", "version: 1\ndefault: {maildir: ~/Maildir}\nallow:\n  - {maildir: ~/Maildir}\nprograms: {p: {argv: [/bin/p]}}\n", "block style"},
		{"not a policy", "version: 2\n", "version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := loadBase(tc.text, "t"); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// TestUnifiedDiff checks the diff format on a small case.
func TestUnifiedDiff(t *testing.T) {
	old := "a\nb\nc\nd\ne\nf\ng\nh\n"
	new := "a\nb\nc\nD\ne\nf\ng\nh\ni\n"
	want := "--- o\n+++ n\n@@ -1,8 +1,9 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n h\n+i\n"
	if got := UnifiedDiff("o", "n", []byte(old), []byte(new)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := UnifiedDiff("o", "n", []byte(old), []byte(old)); got != "" {
		t.Errorf("equal files: %q", got)
	}
	if got := UnifiedDiff("o", "n", nil, []byte("x\n")); got != "--- o\n+++ n\n@@ -0,0 +1 @@\n+x\n" {
		t.Errorf("new file: %q", got)
	}
}

// TestDefaultUser covers Postfix's rule for who runs the programs and
// files of an aliases file: its owner, or the default user if root owns
// it; never root.
func TestDefaultUser(t *testing.T) {
	s := newSite(t)
	cfg := s.config()
	cfg.Users, cfg.Forward, cfg.Sieve = nil, "", false
	for _, tc := range []struct {
		name, def, err string
	}{
		{"root refused", "root", "never run as root"},
		{"unknown", "no-such-user", "no such user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.DefaultUser = tc.def
			_, err := Generate(c)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want a ConfigError with %q", err, tc.err)
			}
		})
	}
	t.Run("root-owned aliases run as the default user", func(t *testing.T) {
		testutil.RequireRoot(t) // to own the aliases file as root
		must(t, os.Chown(cfg.Aliases[0], 0, 0))
		r, err := Generate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if !strings.Contains(string(r.Outputs[0].Content), "(alias archive), runs as nobody\n") {
			t.Errorf("archive does not run as nobody:\n%s", r.Outputs[0].Content)
		}
		c := cfg
		c.DefaultUser = "erin"
		r2, err := Generate(c)
		if err != nil {
			t.Fatal(err)
		}
		defer r2.Close()
		if !strings.Contains(string(r2.Outputs[0].Content), "(alias archive), runs as erin\n") {
			t.Errorf("archive does not run as erin:\n%s", r2.Outputs[0].Content)
		}
	})
}

// TestSieve checks the conversion of .forward elements to Sieve.
func TestSieve(t *testing.T) {
	s := newSite(t)
	cfg := s.config()
	for _, tc := range []struct {
		name, forward string
		domain        string
		want          []string // lines of the script
		complete      bool
	}{
		{"redirect", "bob@example.net\n", "", []string{`redirect "bob@example.net";`}, true},
		{"keep a copy", "\\dave, bob@example.net\n", "", []string{"keep;", `redirect "bob@example.net";`}, true},
		{"own name is keep", "dave\n", "", []string{"keep;"}, true},
		{"local name with domain", "friend\n", "example.org", []string{`redirect "friend@example.org";`}, true},
		{"local name without domain", "friend\n", "", []string{"# NOT CONVERTED: an unqualified address (friend): give -domain"}, false},
		{"inbox", "~/Maildir/\n", "", []string{"keep;"}, true},
		{"folder", "~/Maildir/.Lists.go/\n", "", []string{`require ["fileinto"];`, `fileinto "Lists.go";`}, true},
		{"mbox file", "~/mail/x\n", "", []string{"# NOT CONVERTED: mbox " + s.dir + "/home/dave/mail/x is not the mail store (maildir " + s.dir + "/home/dave/Maildir) or one of its folders (fileinto takes folders); it stays allowed for lda deliver -dest"}, false},
		{"discard", ":blackhole:\n", "", []string{"discard;"}, true},
		{"reject", ":fail: gone \"away\"\n", "", []string{`require ["reject"];`, `reject "gone \"away\"";`}, true},
		{"program", "\"|/usr/bin/vacation dave\"\n", "", []string{"# NOT CONVERTED: a program: lda's Sieve has no action that runs one"}, false},
		{"source comment", "bob@example.net\n", "", []string{"# " + s.dir + "/home/dave/.forward:1: bob@example.net"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			must(t, os.WriteFile(filepath.Join(s.dir, "home/dave/.forward"), []byte(tc.forward), 0o644))
			c := cfg
			c.Users, c.Domain, c.Aliases = []string{"dave"}, tc.domain, nil
			r, err := Generate(c)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var script *Output
			for _, o := range r.Outputs {
				if strings.HasSuffix(o.Path, ".lda.sieve") {
					script = o
				}
			}
			if script == nil {
				t.Fatal("no script")
			}
			for _, w := range tc.want {
				if !strings.Contains(string(script.Content), w) {
					t.Errorf("script lacks %q:\n%s", w, script.Content)
				}
			}
			if (script.Incomplete == "") != tc.complete {
				t.Errorf("incomplete %q, want complete %v", script.Incomplete, tc.complete)
			}
		})
	}
}

// TestRefusals holds .forward and :include: files to allowgen's rules:
// symlinks (to /etc/shadow, to another user's file), hard links, foreign
// owners, loose modes and odd file types are refused and reported, with
// nothing read from them.
func TestRefusals(t *testing.T) {
	testutil.RequireRoot(t) // files owned by several users
	s := newSite(t)
	cfg := s.config()
	cfg.Aliases, cfg.Sieve = nil, false
	fwd := filepath.Join(s.dir, "home/dave/.forward")
	secret := filepath.Join(s.dir, "secret")
	must(t, os.WriteFile(secret, []byte("TOPSECRET\n"), 0o600))
	public := filepath.Join(s.dir, "public")
	must(t, os.WriteFile(public, []byte("public-list\n"), 0o644))
	aliceList := filepath.Join(s.dir, "home/alice/list")
	must(t, os.WriteFile(aliceList, []byte("alice-secret\n"), 0o644))
	must(t, os.Chown(aliceList, s.uids["alice"], s.uids["alice"]))
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) // makes dave's .forward
		want  string             // in the diagnostics
	}{
		{"symlink to /etc/shadow", func(t *testing.T) { os.Remove(fwd); must(t, os.Symlink("/etc/shadow", fwd)) }, fwd + ": error: refused: a symbolic link"},
		{"symlink to another user's .forward", func(t *testing.T) {
			os.Remove(fwd)
			must(t, os.Symlink(filepath.Join(s.dir, "home/alice/.forward"), fwd))
		}, fwd + ": error: refused: a symbolic link"},
		{"hard link to a root file", func(t *testing.T) { os.Remove(fwd); must(t, os.Link(secret, fwd)) }, fwd + ": error: refused: 2 hard links"},
		{"owned by another user", func(t *testing.T) { s.write(t, fwd, "x\n", "alice", 0o644) }, fwd + ": error: refused: owned by uid " + strconv.Itoa(s.uids["alice"])},
		{"owned by root, not readable", func(t *testing.T) { s.write(t, fwd, "TOPSECRET\n", "", 0o600) }, fwd + ": error: refused: owned by root and not readable by others"},
		{"group-writable", func(t *testing.T) { s.write(t, fwd, "x\n", "dave", 0o664) }, fwd + ": error: refused: writable by group or others"},
		{"a directory", func(t *testing.T) {
			os.Remove(fwd)
			must(t, os.Mkdir(fwd, 0o755))
			must(t, os.Chown(fwd, s.uids["dave"], s.uids["dave"]))
		}, fwd + ": error: refused: not a regular file"},
		{"include of a root-only file", func(t *testing.T) { s.write(t, fwd, ":include:"+secret+"\n", "dave", 0o644) }, fwd + ":1: error: :include:" + secret + ": refused: owned by root and not readable by others"},
		{"include of another user's file", func(t *testing.T) { s.write(t, fwd, ":include:"+aliceList+"\n", "dave", 0o644) }, fwd + ":1: error: :include:" + aliceList + ": refused: owned by uid"},
		{"include through a symlink", func(t *testing.T) {
			link := filepath.Join(s.dir, "home/dave/link")
			os.Remove(link)
			must(t, os.Symlink("/etc/shadow", link))
			s.write(t, fwd, ":include:"+link+"\n", "dave", 0o644)
		}, ":include:" + s.dir + "/home/dave/link: refused: a symbolic link"},
		{"include through a symlinked directory", func(t *testing.T) {
			dir := filepath.Join(s.dir, "home/dave/d")
			os.Remove(dir)
			must(t, os.Symlink(filepath.Join(s.dir, "home/alice"), dir))
			s.write(t, fwd, ":include:"+dir+"/list\n", "dave", 0o644)
		}, ": refused: a symbolic link"},
		{"include with ..", func(t *testing.T) { s.write(t, fwd, ":include:"+s.dir+"/home/dave/../alice/list\n", "dave", 0o644) }, "refused: path \"" + s.dir + "/home/dave/../alice/list\" is not clean"},
		{"include of a public root file is read", func(t *testing.T) { s.write(t, fwd, ":include:"+public+"\n", "dave", 0o644) }, ""},
		{"world-writable home", func(t *testing.T) {
			s.write(t, fwd, "x\n", "dave", 0o644)
			must(t, os.Chmod(filepath.Join(s.dir, "home/dave"), 0o777))
		}, "refused: the home directory " + s.dir + "/home/dave is writable by others"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.RemoveAll(fwd)
			must(t, os.Chmod(filepath.Join(s.dir, "home/dave"), 0o700))
			tc.setup(t)
			c := cfg
			c.Users = []string{"dave"}
			r, err := Generate(c)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var all strings.Builder
			for _, d := range r.Diags {
				all.WriteString(d.String() + "\n")
			}
			all.WriteString(r.Report(c.LDA))
			if tc.want == "" {
				if aliases.Errors(r.Diags) != 0 || !strings.Contains(all.String(), "public-list") {
					t.Errorf("not read:\n%s", all.String())
				}
				return
			}
			if !strings.Contains(all.String(), tc.want) {
				t.Errorf("diagnostics lack %q:\n%s", tc.want, all.String())
			}
			for _, secret := range []string{"TOPSECRET", "alice-secret", "root:"} {
				if strings.Contains(all.String(), secret) {
					t.Errorf("%s was read:\n%s", secret, all.String())
				}
			}
		})
	}
}

func (s *site) write(t *testing.T, path, content, user string, mode os.FileMode) {
	t.Helper()
	os.RemoveAll(path)
	must(t, os.WriteFile(path, []byte(content), mode))
	must(t, os.Chmod(path, mode))
	uid := 0
	if user != "" {
		uid = s.uids[user]
	}
	must(t, os.Chown(path, uid, uid))
}

// TestCentral writes the per-user files to one directory (-central),
// owned by their users, and leaves the home directories alone.
func TestCentral(t *testing.T) {
	s := newSite(t)
	cfg := s.config()
	cfg.Central = filepath.Join(s.dir, "central")
	must(t, os.Mkdir(cfg.Central, 0o755))
	r, err := Generate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var paths []string
	for _, o := range r.Outputs {
		if o.Changed() {
			paths = append(paths, strings.TrimPrefix(o.Path, s.dir+"/"))
		}
	}
	if fmt.Sprint(paths) != "[policy.yaml central/alice.yaml central/dave.sieve]" {
		t.Fatalf("outputs %v", paths)
	}
	if _, errs := r.Write(); len(errs) > 0 {
		t.Fatal(errs)
	}
	fi, err := os.Stat(filepath.Join(cfg.Central, "alice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 && statUID(fi) != s.uids["alice"] {
		t.Errorf("central/alice.yaml owned by %d", statUID(fi))
	}
	if _, err := os.Stat(filepath.Join(s.dir, "home/alice/.lda.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the home directory was written: %v", err)
	}
}
