package policy

import (
	"reflect"
	"testing"
)

// TestExpansion: a System expanded for a user beforehand answers as
// expanding afresh does, and an Expansion made for another user or for
// another System (a reload) is ignored, never used.
func TestExpansion(t *testing.T) {
	sys := mustSystem(t, testSystem)
	reloaded := mustSystem(t, testSystem)
	a := User{Name: "a", Home: "/home/a"}
	b := User{Name: "b", Home: "/home/b"}
	cases := []struct {
		name string
		u    User
		d    Destination
	}{
		{"maildir", a, Destination{Kind: Maildir, Path: "/home/a/Maildir"}},
		{"maildir folder", a, Destination{Kind: Maildir, Path: "/home/a/Maildir", Folder: "Work"}},
		{"another's maildir", a, Destination{Kind: Maildir, Path: "/home/b/Maildir"}},
		{"percent u", b, Destination{Kind: Mbox, Path: "/var/mail/b"}},
		{"percent u, another's", b, Destination{Kind: Mbox, Path: "/var/mail/a"}},
		{"double star", a, Destination{Kind: Mbox, Path: "/home/a/mail/lists/go"}},
		{"denied", a, Destination{Kind: Mbox, Path: "/home/a/mail/secret/x"}},
		{"glob", a, Destination{Kind: Mbox, Path: "/srv/pre/m-a"}},
		{"folders refused", b, Destination{Kind: Maildir, Path: "/srv/maildirs/b", Folder: "X"}},
		{"program", a, Destination{Kind: Program, Program: "procmail"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := (&Policy{Sys: sys}).Check(c.u, c.d)
			got := (&Policy{Sys: sys, X: sys.Expand(c.u)}).Check(c.u, c.d)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("with an Expansion: %+v, want %+v", got, want)
			}
			other := a
			if c.u == a {
				other = b
			}
			for what, x := range map[string]*Expansion{"another user's": sys.Expand(other), "a reloaded policy's": reloaded.Expand(c.u)} {
				if x.For(sys, c.u) {
					t.Fatalf("%s Expansion claims to be for this System and user", what)
				}
				got := (&Policy{Sys: sys, X: x}).Check(c.u, c.d)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("with %s Expansion: %+v, want %+v", what, got, want)
				}
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		wd, want := (&Policy{Sys: sys}).Default(a)
		gd, got := (&Policy{Sys: sys, X: sys.Expand(a)}).Default(a)
		if gd != wd || !reflect.DeepEqual(got, want) || !got.Allowed {
			t.Fatalf("Default with an Expansion: %v %+v, want %v %+v (allowed)", gd, got, wd, want)
		}
		// Used for b, a's Expansion would put b's mail in a's Maildir.
		bd, bdec := (&Policy{Sys: sys, X: sys.Expand(a)}).Default(b)
		if bd.Path != "/home/b/Maildir" || bdec.Root != "/home/b" {
			t.Fatalf("Default(b) with a's Expansion: %v, root %q", bd, bdec.Root)
		}
	})
	t.Run("invalid user", func(t *testing.T) {
		for _, u := range []User{{Name: "../x", Home: "/home/x"}, {Name: "x", Home: "/"}, {Name: "x", Home: "home"}} {
			if x := sys.Expand(u); x != nil {
				t.Fatalf("Expand(%+v) = %+v, want nil", u, x)
			}
		}
	})
}

// TestExpansionUsed: Check takes the expanded rules, and Default the
// default destination, from the Expansion (one doctored here to send a's
// Maildir elsewhere), so the tests above compare two different paths
// through the code, not one path twice.
func TestExpansionUsed(t *testing.T) {
	sys := mustSystem(t, testSystem)
	a := User{Name: "a", Home: "/home/a"}
	x := sys.Expand(a)
	for r, xp := range x.x {
		if r.Kind == Maildir && r.Pattern == "~/Maildir" {
			d := *xp
			d.comps = append([]xcomp(nil), xp.comps...)
			d.comps[len(d.comps)-1] = xcomp{lit: "Elsewhere"}
			x.x[r] = &d
		}
	}
	d := Destination{Kind: Maildir, Path: "/home/a/Elsewhere"}
	if dec := (&Policy{Sys: sys}).Check(a, d); dec.Allowed {
		t.Fatalf("without the doctored Expansion: allowed %+v", dec)
	}
	if dec := (&Policy{Sys: sys, X: x}).Check(a, d); !dec.Allowed {
		t.Fatalf("the doctored Expansion was not used: %+v", dec)
	}
	// And Default takes the default destination from it.
	if x.def.Path != "/home/a/Maildir" {
		t.Fatalf("the Expansion's default is %v", x.def)
	}
	x.def.Path = d.Path
	if got, _ := (&Policy{Sys: sys}).Default(a); got.Path != "/home/a/Maildir" {
		t.Fatalf("Default without the doctored Expansion: %v", got)
	}
	if got, dec := (&Policy{Sys: sys, X: x}).Default(a); got != d || !dec.Allowed {
		t.Fatalf("Default did not take the doctored Expansion's default: %v %+v", got, dec)
	}
}
