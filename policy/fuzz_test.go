package policy

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fuzzUser is a user file that parses for every valid user name against
// testSystem.
const fuzzUser = `version: 1
default: {mbox: ~/inbox}
deny:
  - {maildir: ~/Maildir}
allow:
  - {mbox: ~/inbox}
  - {maildir: ~/Mail/*}
  - {mbox: /srv/users/%u/sub/**}
  - {maildir: /srv/nofolders/%u/x, folders: false}
  - {program: filter}
  - {mbox: ~/archive/**/*.mbox}
`

// fuzzOther is another user, whose Expansion FuzzCheck offers for the
// user it checks (should the fuzzer choose the same name, the Expansion is
// the user's own, and the answer must be the same all the same).
var fuzzOther = User{Name: "other", Home: "/home/other"}

// FuzzCheck checks properties of every decision: Check never panics, and
// anything allowed passes ValidPath, has no ".." component, lies beneath
// the literal root of an administrator's allow or user_may_add rule (Root
// is a component-wise prefix of Path) and Join(Root, Rel) == Path.
// The seed corpus is in testdata/fuzz/FuzzCheck; arguments: user name,
// kind, path (or program name), folder.
func FuzzCheck(f *testing.F) {
	sys := mustSystem(f, testSystem)
	def := Default()
	other := mustSystem(f, testSystem) // the same text: a reload
	f.Fuzz(func(t *testing.T, name, kind, p, folder string) {
		u := User{Name: name, Home: "/home/" + name}
		valid := validUser(u) == nil
		var up *UserPolicy
		if valid {
			var err error
			up, err = ParseUser(strings.NewReader(fuzzUser), "u.yaml", sys, u)
			if err != nil {
				t.Fatalf("ParseUser for valid user %q: %v", name, err)
			}
		}
		k, _ := ParseKind(kind)
		if kind == "0" {
			k = 0
		}
		d := Destination{Kind: k, Path: p, Folder: folder}
		if k == Program {
			d = Destination{Kind: Program, Program: p, Folder: folder}
		}
		for _, pol := range []*Policy{{Sys: sys}, {Sys: sys, User: up}, {Sys: def}} {
			dec := pol.Check(u, d)
			checkInvariants(t, u, d, dec)
			// The same answer with the system expanded for u beforehand,
			// and with an Expansion made for someone else or for another
			// System, which must be ignored.
			for i, x := range []*Expansion{pol.Sys.Expand(u), pol.Sys.Expand(fuzzOther), other.Expand(u)} {
				px := *pol
				px.X = x
				if got := px.Check(u, d); !reflect.DeepEqual(got, dec) {
					t.Fatalf("Check(%q, %v) with Expansion %d = %+v, without %+v", name, d, i, got, dec)
				}
			}
			if !valid && (dec.Allowed || dec.Rule != nil) {
				t.Fatalf("invalid user %q: %+v", name, dec)
			}
			if (k == Mbox || k == Maildir) && ValidPath(p) != nil && (dec.Allowed || dec.Rule != nil) {
				t.Fatalf("invalid path %q: %+v", p, dec)
			}
			if !dec.Allowed || k == Program {
				continue
			}
			for _, c := range strings.Split(p, "/")[1:] {
				if c == ".." || c == "." || c == "" {
					t.Fatalf("allowed %q with component %q", p, c)
				}
			}
			if filepath.Join(dec.Root, dec.Rel) != p || filepath.Clean(p) != p {
				t.Fatalf("allowed %q: Join(%q, %q) differs", p, dec.Root, dec.Rel)
			}
			// Root must be the literal root of an administrator's rule.
			found := false
			for _, list := range [][]*rule{pol.Sys.allow, pol.Sys.mayAdd} {
				for _, r := range list {
					if r.pat == nil || r.Kind != k {
						continue
					}
					x := r.pat.expand(u.Name, u.Home)
					if x.root == dec.Root && strings.HasPrefix(p, x.root+"/") {
						found = true
					}
				}
			}
			if !found {
				t.Fatalf("allowed %s with Root %q, not the root of any allow or user_may_add rule", d, dec.Root)
			}
		}
		if valid {
			dd, dec := (&Policy{Sys: sys, User: up}).Default(u)
			if !dec.Allowed || dd != mbox(u.Home+"/inbox") {
				t.Fatalf("Default(%q) = %v, %+v", name, dd, dec)
			}
			dx, decx := (&Policy{Sys: sys, User: up, X: sys.Expand(u)}).Default(u)
			if dx != dd || !reflect.DeepEqual(decx, dec) {
				t.Fatalf("Default(%q) with an Expansion = %v, %+v; without %v, %+v", name, dx, decx, dd, dec)
			}
		}
	})
}
