package policy

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// userFileGood is alice's file against testSystem. Line numbers matter.
const userFileGood = `version: 1
default: {mbox: ~/inbox}
deny:
  - {maildir: ~/Maildir}
  - {mbox: /var/mail/%u}
allow:
  - {mbox: ~/inbox}
  - {maildir: ~/Mail/*}
  - {mbox: /srv/users/alice/sub/box}
  - {maildir: /srv/nofolders/%u/x, folders: false}
  - {program: filter}
  - {mbox: ~/archive/**/*.mbox}
  - {mbox: ~/mail/secret/x}
`

func mustUser(t testing.TB, sys *System, text string, u User) *UserPolicy {
	t.Helper()
	up, err := ParseUser(strings.NewReader(text), "u.yaml", sys, u)
	if err != nil {
		t.Fatalf("ParseUser: %v", err)
	}
	return up
}

func TestUserPolicyCheck(t *testing.T) {
	sys := mustSystem(t, testSystem)
	up := mustUser(t, sys, userFileGood, alice)
	p := &Policy{Sys: sys, User: up}
	tests := []struct {
		name   string
		d      Destination
		allow  bool
		source string
		line   int
		root   string
		rel    string
	}{
		{"user denies the system default", maildir("/home/alice/Maildir"), false, "user", 4, "", ""},
		{"user denies a folder of it too", folder("/home/alice/Maildir", "Work"), false, "user", 4, "", ""},
		{"user denies a system allow", mbox("/var/mail/alice"), false, "user", 5, "", ""},
		{"user allow", mbox("/home/alice/inbox"), true, "user", 7, "/home/alice", "inbox"},
		{"user allow with folders", folder("/home/alice/Mail/Work", "Lists.go"), true, "user", 8, "/home/alice", "Mail/Work"},
		{"user * stays in its component", maildir("/home/alice/Mail/a/b"), false, "", 0, "", ""},
		{"root comes from user_may_add", mbox("/srv/users/alice/sub/box"), true, "user", 9, "/srv/users", "alice/sub/box"},
		{"user allow is exact", mbox("/srv/users/alice/sub/other"), false, "", 0, "", ""},
		{"user maildir without folders", maildir("/srv/nofolders/alice/x"), true, "user", 10, "/srv/nofolders", "alice/x"},
		{"user maildir refuses a folder", folder("/srv/nofolders/alice/x", "W"), false, "user", 10, "", ""},
		{"user program", prog("filter"), true, "user", 11, "", ""},
		{"user ** zero", mbox("/home/alice/archive/a.mbox"), true, "user", 12, "/home/alice", "archive/a.mbox"},
		{"user ** deep", mbox("/home/alice/archive/2024/05/a.mbox"), true, "user", 12, "/home/alice", "archive/2024/05/a.mbox"},
		{"user ** skips dot names", mbox("/home/alice/archive/.x/a.mbox"), false, "", 0, "", ""},
		{"system deny beats a user allow", mbox("/home/alice/mail/secret/x"), false, "system", 18, "", ""},
		{"system allow still applies", mbox("/home/alice/mail/x"), true, "system", 10, "/home/alice", "mail/x"},
		{"nothing else", mbox("/home/alice/other"), false, "", 0, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dec := p.Check(alice, tc.d)
			checkInvariants(t, alice, tc.d, dec)
			if dec.Allowed != tc.allow {
				t.Fatalf("allowed=%v, want %v: %s", dec.Allowed, tc.allow, dec.Reason)
			}
			source, line := "", 0
			if dec.Rule != nil {
				source, line = dec.Rule.Source, dec.Rule.Line
				wantFile := map[string]string{"user": "u.yaml", "system": "sys.yaml"}[source]
				if dec.Rule.File != wantFile {
					t.Errorf("rule file %q, want %q", dec.Rule.File, wantFile)
				}
			}
			if source != tc.source || line != tc.line {
				t.Errorf("decided by %s line %d, want %s line %d: %s", source, line, tc.source, tc.line, dec.Reason)
			}
			if dec.Root != tc.root || dec.Rel != tc.rel {
				t.Errorf("Root, Rel = %q, %q; want %q, %q", dec.Root, dec.Rel, tc.root, tc.rel)
			}
		})
	}
	t.Run("reason names user_may_add", func(t *testing.T) {
		dec := p.Check(alice, mbox("/srv/users/alice/sub/box"))
		if !strings.Contains(dec.Reason, "u.yaml:9: allow mbox /srv/users/alice/sub/box") || !strings.Contains(dec.Reason, "within sys.yaml:23: user_may_add mbox /srv/users/%u/**") {
			t.Errorf("Reason = %q", dec.Reason)
		}
	})
	t.Run("program argv", func(t *testing.T) {
		dec := p.Check(alice, prog("filter"))
		if !reflect.DeepEqual(dec.Program.Argv, []string{"/usr/local/bin/filter", "--user=alice", "100%"}) {
			t.Errorf("argv %q", dec.Program.Argv)
		}
	})
	t.Run("default", func(t *testing.T) {
		d, dec := p.Default(alice)
		if d != mbox("/home/alice/inbox") || !dec.Allowed || dec.Rule.Line != 7 || dec.Root != "/home/alice" || dec.Rel != "inbox" {
			t.Errorf("Default = %v, %+v", d, dec)
		}
		if !strings.Contains(dec.Reason, "default from u.yaml:2") {
			t.Errorf("Reason = %q", dec.Reason)
		}
	})
	t.Run("another user", func(t *testing.T) {
		if dec := p.Check(userA, mbox("/home/a/inbox")); dec.Allowed || dec.Rule != nil {
			t.Errorf("alice's file used for a: %+v", dec)
		}
		if _, dec := p.Default(userA); dec.Allowed {
			t.Errorf("alice's default used for a: %+v", dec)
		}
	})
	t.Run("rules", func(t *testing.T) {
		rules := up.Rules()
		if len(rules) != 1+7+2 || rules[0].Action != "default" || rules[0].Source != "user" || rules[1].String() != "u.yaml:7: allow mbox ~/inbox" {
			t.Errorf("Rules = %v", rules)
		}
	})
}

func TestUserPolicyMinimal(t *testing.T) {
	sys := mustSystem(t, testSystem)
	up := mustUser(t, sys, "version: 1\n", alice)
	d, dec := (&Policy{Sys: sys, User: up}).Default(alice)
	if d != maildir("/home/alice/Maildir") || !dec.Allowed || dec.Rule.Source != "system" {
		t.Errorf("Default = %v %+v", d, dec)
	}
	// A user may deny the system default and choose another one.
	up = mustUser(t, sys, "version: 1\ndeny: [{maildir: ~/Maildir}]\ndefault: {mbox: /var/mail/%u}\n", alice)
	d, dec = (&Policy{Sys: sys, User: up}).Default(alice)
	if d != mbox("/var/mail/alice") || !dec.Allowed || dec.Rule.Line != 8 || dec.Root != "/var/mail" {
		t.Errorf("Default = %v %+v", d, dec)
	}
}

func TestParseUserErrors(t *testing.T) {
	sys := mustSystem(t, testSystem)
	tests := []struct {
		name, text, want string
	}{
		// "allows /" and other widenings
		{"allow /**", "version: 1\nallow: [{mbox: /**}]\n", "u.yaml:2: allow mbox /** is outside what sys.yaml lets users add"},
		{"allow /", "version: 1\nallow: [{mbox: /}]\n", "u.yaml:2: allow rule: mbox: pattern / names the whole file system"},
		{"allow /*", "version: 1\nallow: [{mbox: /*}]\n", "u.yaml:2: allow mbox /* is outside"},
		{"allow /etc/passwd", "version: 1\nallow: [{mbox: /etc/passwd}]\n", "u.yaml:2: allow mbox /etc/passwd is outside"},
		{"allow other homes", "version: 1\nallow: [{mbox: /home/*/x}]\n", "u.yaml:2: allow mbox /home/*/x is outside"},
		{"allow similar homes", "version: 1\nallow: [{mbox: /home/al*/**}]\n", "u.yaml:2: allow mbox /home/al*/** is outside"},
		{"allow escape home", "version: 1\nallow: [{mbox: ~/../bob/x}]\n", "u.yaml:2: allow rule: mbox: pattern \"~/../bob/x\": .. component"},
		{"allow dot file", "version: 1\nallow: [{mbox: ~/.ssh/authorized_keys}]\n", "u.yaml:2: allow mbox ~/.ssh/authorized_keys is outside"},
		{"allow dot glob", "version: 1\nallow: [{mbox: ~/.*}]\n", "u.yaml:2: allow mbox ~/.* is outside"},
		{"allow home itself", "version: 1\nallow: [{mbox: \"~\"}]\n", "u.yaml:2: allow rule: mbox: pattern \"~\" names the home directory itself"},
		{"allow other kind", "version: 1\nallow: [{maildir: /var/mail/%u}]\n", "u.yaml:2: allow maildir /var/mail/%u is outside"},
		{"allow another user's dir", "version: 1\nallow: [{mbox: /srv/users/bob/x}]\n", "u.yaml:2: allow mbox /srv/users/bob/x is outside"},
		{"allow the may_add dir itself", "version: 1\nallow: [{mbox: /srv/users/%u}]\n", "u.yaml:2: allow mbox /srv/users/%u is outside"},
		{"allow folders where none", "version: 1\nallow: [{maildir: /srv/nofolders/%u/x}]\n", "add folders: false"},
		{"allow program not in may_add", "version: 1\nallow: [{program: procmail}]\n", "u.yaml:2: allow program procmail is outside"},
		{"allow undefined program", "version: 1\nallow: [{program: sh}]\n", "u.yaml:2: allow rule: program: program sh is not defined"},
		{"deny undefined program", "version: 1\ndeny: [{program: sh}]\n", "u.yaml:2: deny rule: program: program sh is not defined"},
		{"allow injected program", "version: 1\nallow: [{program: \"filter;id\"}]\n", "u.yaml:2: allow rule: program: program name"},
		// contradictions
		{"allow and deny", "version: 1\nallow:\n  - {mbox: ~/inbox}\ndeny:\n  - {mbox: /home/alice/inbox}\n", "u.yaml:5: deny mbox /home/alice/inbox contradicts the allow rule at line 3"},
		{"allow twice", "version: 1\nallow:\n  - {mbox: ~/inbox}\n  - {mbox: ~/inbox}\n", "u.yaml:4: allow: mbox ~/inbox repeats the rule at line 3"},
		{"deny the default", "version: 1\ndeny:\n  - {maildir: ~/Maildir}\n", "u.yaml:3: deny maildir ~/Maildir denies the default destination maildir /home/alice/Maildir (from sys.yaml:4)"},
		{"deny the default by glob", "version: 1\ndeny:\n  - {mbox: ~/x}\n  - {maildir: ~/*}\n", "u.yaml:4: deny maildir ~/* denies the default destination"},
		{"default not allowed", "version: 1\ndefault: {mbox: /etc/passwd}\n", "u.yaml:2: default mbox /etc/passwd is not allowed: no rule allows mbox /etc/passwd"},
		{"default denied by own rule", "version: 1\ndefault: {mbox: /var/mail/%u}\ndeny: [{mbox: /var/mail/%u}]\n", "u.yaml:2: default mbox /var/mail/alice is not allowed: denied by u.yaml:3"},
		{"default denied by system", "version: 1\ndefault: {mbox: ~/mail/secret/a}\n", "u.yaml:2: default mbox /home/alice/mail/secret/a is not allowed: denied by sys.yaml:18"},
		{"default pattern", "version: 1\ndefault: {mbox: ~/mail/*}\n", "u.yaml:2: default: mbox: the default must name one destination"},
		{"default program not allowed", "version: 1\ndefault: {program: filter}\n", "u.yaml:2: default program filter is not allowed"},
		// format
		{"empty", "", "u.yaml:1: empty file"},
		{"missing version", "allow: [{mbox: ~/x}]\n", "u.yaml:1: version: missing"},
		{"unknown key", "version: 1\nalow: [{mbox: ~/x}]\n", `u.yaml:2: unknown key "alow"`},
		{"system key in user file", "version: 1\nuser_may_add: [{mbox: /**}]\n", `u.yaml:2: unknown key "user_may_add"`},
		{"duplicate key", "version: 1\nallow: [{mbox: ~/x}]\nallow: [{mbox: ~/y}]\n", `u.yaml:3: duplicate key "allow"`},
		{"rule unknown key", "version: 1\nallow: [{mbox: ~/x, root: /}]\n", `u.yaml:2: allow rule: unknown key "root"`},
		{"empty allow", "version: 1\nallow: []\n", "u.yaml:2: allow: empty list"},
		{"alias", "version: 1\nallow: [&a {mbox: ~/x}]\ndeny: [*a]\n", "u.yaml:2: anchors and aliases are not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up, err := ParseUser(strings.NewReader(tc.text), "u.yaml", sys, alice)
			if err == nil {
				t.Fatalf("parsed, want error %q; rules %v", tc.want, up.Rules())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "u.yaml" || pe.Line < 1 {
				t.Fatalf("error %T %v is not a *ParseError for u.yaml with a line", err, err)
			}
		})
	}
}

func TestParseUserSetup(t *testing.T) {
	sys := mustSystem(t, testSystem)
	if _, err := ParseUser(strings.NewReader("version: 1\n"), "u.yaml", nil, alice); err == nil {
		t.Error("nil system accepted")
	}
	if _, err := ParseUser(strings.NewReader("version: 1\n"), "u.yaml", sys, User{Name: "../x", Home: "/home/x"}); err == nil || !strings.Contains(err.Error(), "invalid user") {
		t.Errorf("invalid user: %v", err)
	}
	off := mustSystem(t, "version: 1\nuser_file: \"\"\ndefault: {mbox: /var/mail/%u}\nallow: [{mbox: /var/mail/%u}]\n")
	if _, err := ParseUser(strings.NewReader("version: 1\n"), "u.yaml", off, alice); err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("disabled user files: %v", err)
	}
	none := mustSystem(t, base)
	if _, err := ParseUser(strings.NewReader("version: 1\nallow: [{mbox: ~/x}]\n"), "u.yaml", none, alice); err == nil || !strings.Contains(err.Error(), "u.yaml:2: allow mbox ~/x: sys.yaml lets users add nothing") {
		t.Errorf("no user_may_add: %v", err)
	}
}

// TestUserInclusion: what a user may add under the default policy's
// user_may_add ~/**.
func TestUserInclusion(t *testing.T) {
	sys := Default()
	tests := []struct {
		pattern string
		ok      bool
	}{
		{"~/x", true},
		{"~/**", true},
		{"~/*/**", true},
		{"~/mail/**/*.mbox", true},
		{"~/a*b/c", true},
		{"/home/alice/x", true},
		{"/home/alice/**", true},
		{"~", false},
		{"~/.x", false},
		{"~/a/.x", false},
		{"~/.*", false},
		{"~/**/.x", false},
		{"/home/*/x", false},
		{"/home/alice", false},
		{"/home/alicex/y", false},
		{"/**", false},
		{"/home/**", false},
		{"/var/mail/%u", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			text := "version: 1\nallow:\n  - {mbox: \"" + tc.pattern + "\"}\n"
			_, err := ParseUser(strings.NewReader(text), "u.yaml", sys, alice)
			if (err == nil) != tc.ok {
				t.Errorf("ParseUser allow %s: err = %v, want ok=%v", tc.pattern, err, tc.ok)
			}
		})
	}
}
