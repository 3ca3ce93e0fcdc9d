package policy

import (
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

var (
	alice = User{Name: "alice", Home: "/home/alice"}
	userA = User{Name: "a", Home: "/home/a"}
)

// checkInvariants asserts what every decision must satisfy.
func checkInvariants(t *testing.T, u User, d Destination, dec Decision) {
	t.Helper()
	if dec.Reason == "" || strings.ContainsAny(dec.Reason, "\n\r") {
		t.Errorf("Reason %q must be one non-empty line", dec.Reason)
	}
	if !dec.Allowed {
		if dec.Root != "" || dec.Rel != "" || dec.Program != nil || dec.Create || dec.CreateFolders {
			t.Errorf("a refusal carries data: %+v", dec)
		}
		return
	}
	if dec.Rule == nil || dec.Rule.Kind != d.Kind {
		t.Errorf("allowed without a rule of kind %v: %+v", d.Kind, dec.Rule)
	}
	if validUser(u) != nil {
		t.Errorf("allowed for invalid user %+v", u)
	}
	switch d.Kind {
	case Mbox, Maildir:
		if err := ValidPath(d.Path); err != nil {
			t.Errorf("allowed invalid path: %v", err)
		}
		if dec.Root == "" || dec.Root == "/" || ValidPath(dec.Root) != nil {
			t.Errorf("bad Root %q", dec.Root)
		}
		if !strings.HasPrefix(d.Path, dec.Root+"/") {
			t.Errorf("Root %q is not a component-wise prefix of %q", dec.Root, d.Path)
		}
		if dec.Rel == "" || dec.Rel == "." || strings.HasPrefix(dec.Rel, "/") {
			t.Errorf("bad Rel %q", dec.Rel)
		}
		for _, c := range strings.Split(dec.Rel, "/") {
			if c == ".." || c == "." || c == "" {
				t.Errorf("Rel %q has component %q", dec.Rel, c)
			}
		}
		if j := filepath.Join(dec.Root, dec.Rel); j != d.Path {
			t.Errorf("Join(%q, %q) = %q, want %q", dec.Root, dec.Rel, j, d.Path)
		}
		if d.Folder != "" && ValidFolder(d.Folder) != nil {
			t.Errorf("allowed invalid folder %q", d.Folder)
		}
	case Program:
		if dec.Program == nil || len(dec.Program.Argv) == 0 || !strings.HasPrefix(dec.Program.Argv[0], "/") || dec.Program.Timeout <= 0 {
			t.Errorf("bad program spec %+v", dec.Program)
		}
	default:
		t.Errorf("allowed kind %v", d.Kind)
	}
}

func mbox(p string) Destination    { return Destination{Kind: Mbox, Path: p} }
func maildir(p string) Destination { return Destination{Kind: Maildir, Path: p} }
func folder(p, f string) Destination {
	return Destination{Kind: Maildir, Path: p, Folder: f}
}
func prog(n string) Destination { return Destination{Kind: Program, Program: n} }

func TestCheckMatching(t *testing.T) {
	sys := mustSystem(t, testSystem)
	p := &Policy{Sys: sys}
	tests := []struct {
		name  string
		u     User
		d     Destination
		allow bool
		line  int    // the deciding rule's line; 0 = no rule
		root  string // for allowed paths
		rel   string
	}{
		// exact files
		{"exact", userA, mbox("/home/a/Mail"), true, 9, "/home/a", "Mail"},
		{"exact other user", alice, mbox("/home/a/Mail"), true, 9, "/home/a", "Mail"},
		{"prefix confusion Mail2/x", userA, mbox("/home/a/Mail2/x"), false, 0, "", ""},
		{"prefix confusion Mail2", userA, mbox("/home/a/Mail2"), false, 0, "", ""},
		{"prefix confusion Mai", userA, mbox("/home/a/Mai"), false, 0, "", ""},
		{"below an exact file", userA, mbox("/home/a/Mail/x"), false, 0, "", ""},
		{"exact is per kind", userA, maildir("/home/a/Mail"), false, 0, "", ""},
		{"literal root is the parent", alice, mbox("/srv/lit/a/b/c"), true, 14, "/srv/lit/a/b", "c"},
		{"literal prefix only", alice, mbox("/srv/lit/a/b/cd"), false, 0, "", ""},
		// * within one component
		{"star", alice, mbox("/srv/spool/x/inbox"), true, 11, "/srv/spool", "x/inbox"},
		{"star never crosses /", alice, mbox("/srv/spool/x/y/inbox"), false, 0, "", ""},
		{"star never matches nothing", alice, mbox("/srv/spool/inbox"), false, 0, "", ""},
		{"star skips dot names", alice, mbox("/srv/spool/.x/inbox"), false, 0, "", ""},
		{"star in a component", alice, mbox("/srv/pre/m-1"), true, 15, "/srv/pre", "m-1"},
		{"star may be empty after a literal", alice, mbox("/srv/pre/m-"), true, 15, "/srv/pre", "m-"},
		{"star literal prefix", alice, mbox("/srv/pre/x-1"), false, 0, "", ""},
		{"star does not descend", alice, mbox("/srv/pre/m-1/x"), false, 0, "", ""},
		// ** depth
		{"** zero", alice, mbox("/srv/deep/x.mbox"), true, 13, "/srv/deep", "x.mbox"},
		{"** one", alice, mbox("/srv/deep/a/x.mbox"), true, 13, "/srv/deep", "a/x.mbox"},
		{"** three", alice, mbox("/srv/deep/a/b/c/x.mbox"), true, 13, "/srv/deep", "a/b/c/x.mbox"},
		{"** skips dot names", alice, mbox("/srv/deep/a/.b/x.mbox"), false, 0, "", ""},
		{"** needs the last literal", alice, mbox("/srv/deep/a/x.mbox2"), false, 0, "", ""},
		{"trailing ** one", alice, mbox("/home/alice/mail/inbox"), true, 10, "/home/alice", "mail/inbox"},
		{"trailing ** deep", alice, mbox("/home/alice/mail/a/b/c"), true, 10, "/home/alice", "mail/a/b/c"},
		{"trailing ** not the directory", alice, mbox("/home/alice/mail"), false, 0, "", ""},
		{"trailing ** prefix confusion", alice, mbox("/home/alice/mailx/y"), false, 0, "", ""},
		{"trailing ** skips dot names", alice, mbox("/home/alice/mail/.hidden"), false, 0, "", ""},
		{"system deny beats allow", alice, mbox("/home/alice/mail/secret/x"), false, 18, "", ""},
		{"deny needs a match", alice, mbox("/home/alice/mail/secrets"), true, 10, "/home/alice", "mail/secrets"},
		// ~ and %u
		{"~ is the user's home", alice, mbox("/home/a/mail/x"), false, 0, "", ""},
		{"~ other user", userA, mbox("/home/a/mail/x"), true, 10, "/home/a", "mail/x"},
		{"%u", alice, mbox("/var/mail/alice"), true, 8, "/var/mail", "alice"},
		{"%u other user", alice, mbox("/var/mail/bob"), false, 0, "", ""},
		{"%u prefix", alice, mbox("/var/mail/alicea"), false, 0, "", ""},
		{"%u not below", alice, mbox("/var/mail/alice/x"), false, 0, "", ""},
		{"%u in a component", alice, mbox("/srv/box/alice.mbox"), true, 12, "/srv/box", "alice.mbox"},
		{"%u in a component, suffix", alice, mbox("/srv/box/alice.mbox.x"), false, 0, "", ""},
		{"%u in a component, other user", userA, mbox("/srv/box/alice.mbox"), false, 0, "", ""},
		// maildir and folders
		{"maildir", alice, maildir("/home/alice/Maildir"), true, 6, "/home/alice", "Maildir"},
		{"maildir folder", alice, folder("/home/alice/Maildir", "Work"), true, 6, "/home/alice", "Maildir"},
		{"maildir nested folder", alice, folder("/home/alice/Maildir", "Lists.golang"), true, 6, "/home/alice", "Maildir"},
		{"maildir without folders", alice, maildir("/srv/maildirs/alice"), true, 7, "/srv/maildirs", "alice"},
		{"folders: false refuses a folder", alice, folder("/srv/maildirs/alice", "Work"), false, 7, "", ""},
		{"maildir below", alice, maildir("/home/alice/Maildir/cur"), false, 0, "", ""},
		{"maildir as mbox", alice, mbox("/home/alice/Maildir"), false, 0, "", ""},
		// programs
		{"program", alice, prog("procmail"), true, 16, "", ""},
		{"program only in user_may_add", alice, prog("filter"), false, 0, "", ""},
		{"program denied", alice, prog("nothing"), false, 19, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dec := p.Check(tc.u, tc.d)
			checkInvariants(t, tc.u, tc.d, dec)
			if dec.Allowed != tc.allow {
				t.Fatalf("Check(%s, %s) allowed=%v, want %v: %s", tc.u.Name, tc.d, dec.Allowed, tc.allow, dec.Reason)
			}
			line := 0
			if dec.Rule != nil {
				line = dec.Rule.Line
				if dec.Rule.File != "sys.yaml" || dec.Rule.Source != "system" {
					t.Errorf("rule %+v", dec.Rule)
				}
				if !strings.Contains(dec.Reason, dec.Rule.String()) {
					t.Errorf("Reason %q does not name the rule %q", dec.Reason, dec.Rule)
				}
			}
			if line != tc.line {
				t.Errorf("decided by line %d, want %d (%s)", line, tc.line, dec.Reason)
			}
			if dec.Root != tc.root || dec.Rel != tc.rel {
				t.Errorf("Root, Rel = %q, %q; want %q, %q", dec.Root, dec.Rel, tc.root, tc.rel)
			}
			if !tc.allow && tc.line == 0 && !strings.HasPrefix(dec.Reason, "no rule allows ") {
				t.Errorf("Reason = %q", dec.Reason)
			}
		})
	}
}

func TestCheckDecisionDetails(t *testing.T) {
	sys := mustSystem(t, testSystem)
	p := &Policy{Sys: sys}
	dec := p.Check(alice, prog("procmail"))
	if !dec.Allowed || !reflect.DeepEqual(dec.Program.Argv, []string{"/usr/bin/procmail", "-d", "alice"}) || dec.Program.Name != "procmail" || dec.Program.Timeout != DefaultProgramTimeout {
		t.Errorf("procmail: %+v %+v", dec, dec.Program)
	}
	// create flags come from the system file: mbox create false, maildir
	// create true, create_folders false.
	if dec := p.Check(alice, mbox("/var/mail/alice")); dec.Create || dec.CreateFolders {
		t.Errorf("mbox create flags %+v", dec)
	}
	if dec := p.Check(alice, folder("/home/alice/Maildir", "Work")); !dec.Create || dec.CreateFolders {
		t.Errorf("maildir create flags %+v", dec)
	}
	def := Default()
	dp := &Policy{Sys: def}
	if dec := dp.Check(alice, folder("/home/alice/Maildir", "Work")); !dec.Create || !dec.CreateFolders {
		t.Errorf("default policy maildir create flags %+v", dec)
	}
	// The returned rule is a copy: changing it changes nothing.
	dec = p.Check(alice, mbox("/var/mail/alice"))
	dec.Rule.Pattern = "/**"
	if again := p.Check(alice, mbox("/var/mail/alice")); again.Rule.Pattern != "/var/mail/%u" {
		t.Errorf("rule changed through a decision: %+v", again.Rule)
	}
}

func TestCheckLexical(t *testing.T) {
	p := &Policy{Sys: mustSystem(t, testSystem)}
	long := "/var/mail/" + strings.Repeat("x/", 2100) + "alice"
	tests := []struct {
		name string
		d    Destination
		want string
	}{
		{"dotdot", mbox("/var/mail/../mail/alice"), "not clean"},
		{"dotdot at end", mbox("/home/alice/mail/x/.."), "not clean"},
		{"double slash", mbox("/var//mail/alice"), "not clean"},
		{"dot", mbox("/var/./mail/alice"), "not clean"},
		{"trailing slash", mbox("/var/mail/alice/"), "not clean"},
		{"relative", mbox("var/mail/alice"), "not absolute"},
		{"dot relative", mbox("./var/mail/alice"), "not absolute"},
		{"empty", mbox(""), "empty path"},
		{"NUL", mbox("/var/mail/alice\x00"), "NUL"},
		{"NUL inside", mbox("/var/mail/al\x00ice"), "NUL"},
		{"newline", mbox("/var/mail/al\nice"), "control character"},
		{"DEL", mbox("/var/mail/alice\x7f"), "control character"},
		{"C1 control", mbox("/var/mail/alice\u0085"), "control character"},
		{"invalid UTF-8", mbox("/var/mail/\xffalice"), "invalid UTF-8"},
		{"too long", mbox(long), "longer than 4096"},
		{"long component", mbox("/home/alice/mail/" + strings.Repeat("x", 256)), "longer than 255"},
		{"maildir dotdot", maildir("/home/alice/Maildir/.."), "not clean"},
		{"folder dotdot", folder("/home/alice/Maildir", "../x"), "folder"},
		{"folder slash", folder("/home/alice/Maildir", "a/b"), "contains /"},
		{"folder leading dot", folder("/home/alice/Maildir", ".Work"), "empty part"},
		{"folder trailing dot", folder("/home/alice/Maildir", "Work."), "empty part"},
		{"folder double dot", folder("/home/alice/Maildir", "a..b"), "empty part"},
		{"folder dot", folder("/home/alice/Maildir", "."), "empty part"},
		{"folder NUL", folder("/home/alice/Maildir", "W\x00"), "NUL"},
		{"folder newline", folder("/home/alice/Maildir", "W\nX"), "control"},
		{"folder too long", folder("/home/alice/Maildir", strings.Repeat("x", 255)), "longer than 254"},
		{"folder invalid UTF-8", folder("/home/alice/Maildir", "\xff"), "invalid UTF-8"},
		{"folder on mbox", Destination{Kind: Mbox, Path: "/var/mail/alice", Folder: "x"}, "no folders"},
		{"program on a path", Destination{Kind: Mbox, Path: "/var/mail/alice", Program: "procmail"}, "no program"},
		{"path on a program", Destination{Kind: Program, Program: "procmail", Path: "/bin/sh"}, "no path"},
		{"kind 0", Destination{Path: "/var/mail/alice"}, "invalid destination kind"},
		{"kind 9", Destination{Kind: 9, Path: "/var/mail/alice"}, "invalid destination kind"},
		{"program injection ;", prog("procmail;id"), "program name"},
		{"program injection ||", prog("procmail || sh"), "program name"},
		{"program path", prog("../../bin/sh"), "program name"},
		{"program absolute", prog("/usr/bin/procmail"), "program name"},
		{"program option", prog("-procmail"), "program name"},
		{"program empty", prog(""), "empty program name"},
		{"program undefined", prog("sh"), "not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dec := p.Check(alice, tc.d)
			checkInvariants(t, alice, tc.d, dec)
			if dec.Allowed || dec.Rule != nil {
				t.Fatalf("Check(%s) = allowed %v, rule %v; want a refusal without a rule", tc.d, dec.Allowed, dec.Rule)
			}
			if !strings.HasPrefix(dec.Reason, "refused: ") || !strings.Contains(dec.Reason, tc.want) {
				t.Errorf("Reason %q, want it to contain %q", dec.Reason, tc.want)
			}
		})
	}
}

// TestCheckTemplateInjection: user names that would change what %u or ~
// means are refused before any rule, for every kind of destination.
func TestCheckTemplateInjection(t *testing.T) {
	p := &Policy{Sys: mustSystem(t, testSystem)}
	names := []string{"", "/", "a/b", "../alice", "..", ".", ".alice", "*", "al*ce", "%u", "a%", "alice\x00", "al\nice",
		"-alice", "-", "a b", "\t", "al\u00a0ice", "\xff", strings.Repeat("a", 65), "a..b"}
	for _, name := range names {
		t.Run(quote(name), func(t *testing.T) {
			if ValidUserName(name) == nil {
				t.Fatalf("ValidUserName(%q) accepted it", name)
			}
			u := User{Name: name, Home: "/home/alice"}
			for _, d := range []Destination{mbox("/var/mail/alice"), mbox("/var/mail/" + name), maildir("/home/alice/Maildir"), prog("procmail")} {
				dec := p.Check(u, d)
				if dec.Allowed || dec.Rule != nil || !strings.Contains(dec.Reason, "invalid user") {
					t.Errorf("Check(%q, %s) = %+v", name, d, dec)
				}
			}
			if d, dec := p.Default(u); dec.Allowed || d.Path != "" {
				t.Errorf("Default(%q) = %v, %+v", name, d, dec)
			}
		})
	}
	for _, home := range []string{"", "/", "home/alice", "/home/alice/", "/home/../alice", "/home//alice", "/home/al\x00ice"} {
		t.Run("home "+quote(home), func(t *testing.T) {
			dec := p.Check(User{Name: "alice", Home: home}, maildir("/home/alice/Maildir"))
			if dec.Allowed || dec.Rule != nil {
				t.Errorf("home %q: %+v", home, dec)
			}
		})
	}
	for _, good := range []string{"alice", "a", "a.b", "a-b", "a_b", "a$", "A1", "user@example", "Ünïcode", strings.Repeat("a", 64)} {
		t.Run("good "+quote(good), func(t *testing.T) {
			if err := ValidUserName(good); err != nil {
				t.Errorf("ValidUserName(%q): %v", good, err)
			}
		})
	}
}

func TestCheckNoPolicy(t *testing.T) {
	var p *Policy
	if dec := p.Check(alice, mbox("/var/mail/alice")); dec.Allowed {
		t.Error("nil policy allowed")
	}
	if dec := (&Policy{}).Check(alice, mbox("/var/mail/alice")); dec.Allowed {
		t.Error("empty policy allowed")
	}
	if _, dec := (&Policy{}).Default(alice); dec.Allowed {
		t.Error("empty policy default allowed")
	}
}

func TestKind(t *testing.T) {
	for _, k := range []Kind{Mbox, Maildir, Program} {
		t.Run("good "+k.String(), func(t *testing.T) {
			got, err := ParseKind(k.String())
			if err != nil || got != k {
				t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, err)
			}
		})
	}
	for _, s := range []string{"", "MBOX", "mh", "maildir "} {
		t.Run("bad "+quote(s), func(t *testing.T) {
			if _, err := ParseKind(s); err == nil {
				t.Errorf("ParseKind(%q) accepted", s)
			}
		})
	}
	if Kind(0).String() != "kind(0)" {
		t.Error(Kind(0).String())
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ name, got, want string }{
		{"mbox", mbox("/var/mail/a").String(), "mbox /var/mail/a"},
		{"maildir folder", folder("/home/a/Maildir", "Lists.golang").String(), "maildir /home/a/Maildir folder Lists.golang"},
		{"maildir", maildir("/home/a/Maildir").String(), "maildir /home/a/Maildir"},
		{"program", prog("procmail").String(), "program procmail"},
		{"quoted path", mbox("/var/mail/a b\n").String(), `mbox "/var/mail/a b\n"`},
		{"empty program", prog("").String(), `program ""`},
		{"rule", (&Rule{File: "/etc/lda/policy.yaml", Line: 12, Action: "allow", Kind: Mbox, Pattern: "/var/mail/%u"}).String(), "/etc/lda/policy.yaml:12: allow mbox /var/mail/%u"},
		{"nil rule", (*Rule)(nil).String(), "(no rule)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

// TestDecisionTexts: the texts a rule's decisions quote, made once when
// the rule is read, are what building them afresh gives, for every rule
// of a system file and of a user's file; and a decision quotes them.
func TestDecisionTexts(t *testing.T) {
	sys := mustSystem(t, testSystem)
	up := mustUser(t, sys, userFileGood, alice)
	var rules []*rule
	for _, list := range [][]*rule{{sys.def}, sys.allow, sys.deny, sys.mayAdd, {up.def}, up.allow, up.deny} {
		rules = append(rules, list...)
	}
	for _, r := range rules {
		t.Run(r.String(), func(t *testing.T) {
			fresh := &rule{Rule: r.Rule} // not read through made
			if fresh.texts != nil {
				t.Fatal("a rule literal has texts")
			}
			if r.texts == nil {
				t.Fatal("the rule was not read through made")
			}
			made, again := r.text(), fresh.text()
			for _, c := range []struct{ name, made, fresh, want string }{
				{"allowed", made.allowedBy, again.allowedBy, "allowed by " + r.String()},
				{"denied", made.deniedBy, again.deniedBy, "denied by " + r.String()},
				{"default", made.defaultFrom, again.defaultFrom, "default from " + r.File + ":" + strconv.Itoa(r.Line) + "; "},
			} {
				if c.made != c.want || c.fresh != c.want {
					t.Errorf("%s: made %q, fresh %q, want %q", c.name, c.made, c.fresh, c.want)
				}
			}
		})
	}
	ps := &Policy{Sys: sys}
	if dec := ps.Check(alice, maildir("/home/alice/Maildir")); !dec.Allowed || dec.Reason != "allowed by "+dec.Rule.String() {
		t.Errorf("allowed by the system: %+v", dec)
	}
	if d, dec := ps.Default(alice); !dec.Allowed || dec.Reason != "default from "+sys.def.File+":"+strconv.Itoa(sys.def.Line)+"; allowed by "+dec.Rule.String() {
		t.Errorf("the system's default: %v %+v", d, dec)
	}
	p := &Policy{Sys: sys, User: up}
	within := "allowed by " + up.allow[0].String() + " (within "
	if dec := p.Check(alice, mbox("/home/alice/inbox")); !dec.Allowed || !strings.HasPrefix(dec.Reason, within) {
		t.Errorf("allowed by the user: %+v", dec)
	}
	if dec := p.Check(alice, mbox("/var/mail/alice")); dec.Allowed || dec.Reason != "denied by "+up.deny[1].String() {
		t.Errorf("denied: %+v", dec)
	}
	if d, dec := p.Default(alice); !dec.Allowed || d.Path != "/home/alice/inbox" || !strings.HasPrefix(dec.Reason, "default from u.yaml:2; "+within) {
		t.Errorf("the user's default: %v %+v", d, dec)
	}
}

// TestRelBeneath: relBeneath keeps every promise of Decision.Rel, whatever
// the path it is given (Check gives it only valid ones).
func TestRelBeneath(t *testing.T) {
	for _, c := range []struct{ root, p, rel string }{
		{"/home/a", "/home/a/Maildir", "Maildir"},
		{"/home/a", "/home/a/mail/x.mbox", "mail/x.mbox"},
		{"/var/mail", "/var/mail/a", "a"},
		{"/home/a", "/home/a", ""},
		{"/home/a", "/home/a/", ""},
		{"/home/a", "/home/ab/x", ""},
		{"/home/a", "/home/a//x", ""},
		{"/home/a", "/home/a/x//y", ""},
		{"/home/a", "/home/a/x/", ""},
		{"/home/a", "/home/a/./x", ""},
		{"/home/a", "/home/a/x/.", ""},
		{"/home/a", "/home/a/../b", ""},
		{"/home/a", "/home/a/x/..", ""},
		{"/home/a", "/home/a/..", ""},
		{"/", "/x", ""},
		{"home/a", "home/a/x", ""},
		{"/home/a/", "/home/a//x", ""},
	} {
		t.Run(c.root+" "+c.p, func(t *testing.T) {
			rel, err := relBeneath(c.root, c.p)
			if rel != c.rel || (err == nil) != (c.rel != "") {
				t.Errorf("relBeneath(%q, %q) = %q, %v; want %q", c.root, c.p, rel, err, c.rel)
			}
		})
	}
}

func BenchmarkCheck(b *testing.B) {
	sys := Default()
	tsys := mustSystem(b, testSystem)
	up, err := ParseUser(strings.NewReader(userFileGood), "u.yaml", tsys, alice)
	if err != nil {
		b.Fatal(err)
	}
	dests := []Destination{
		maildir("/home/alice/Maildir"),
		folder("/home/alice/Maildir", "Lists.golang"),
		mbox("/var/mail/alice"),
		mbox("/home/alice/mail/a/b/c"),
		mbox("/home/alice/.ssh/authorized_keys"),
		mbox("/etc/passwd"),
	}
	b.Run("system", func(b *testing.B) {
		p := &Policy{Sys: sys}
		for i := 0; b.Loop(); i++ {
			p.Check(alice, dests[i%len(dests)])
		}
	})
	b.Run("with-user", func(b *testing.B) {
		p := &Policy{Sys: tsys, User: up}
		for i := 0; b.Loop(); i++ {
			p.Check(alice, dests[i%len(dests)])
		}
	})
	// The same two with the system's rules expanded once (System.Expand),
	// as a warm worker now checks.
	b.Run("system-expanded", func(b *testing.B) {
		p := &Policy{Sys: sys, X: sys.Expand(alice)}
		for i := 0; b.Loop(); i++ {
			p.Check(alice, dests[i%len(dests)])
		}
	})
	b.Run("with-user-expanded", func(b *testing.B) {
		p := &Policy{Sys: tsys, User: up, X: tsys.Expand(alice)}
		for i := 0; b.Loop(); i++ {
			p.Check(alice, dests[i%len(dests)])
		}
	})
}
