package userdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLookupSeesChanges: the parsed file is cached, but every change to
// the file (a new user, a changed uid with the same size, a removed user,
// a file replaced by rename) is seen by the next lookup, and a caller
// cannot change the cached entry.
func TestLookupSeesChanges(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	old := passwdFile
	passwdFile = pw
	t.Cleanup(func() { passwdFile = old })
	write := func(text string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(pw, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(pw, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	uid := func(name string) int {
		t.Helper()
		u, err := Lookup("passwd", name)
		if errors.Is(err, ErrNotFound) {
			return -1
		}
		if err != nil {
			t.Fatal(err)
		}
		return u.UID
	}
	base := time.Now().Add(-time.Hour)
	write("alice:x:1001:1001::/home/alice:/bin/sh\n", base)
	for _, tc := range []struct {
		name  string
		edit  func()
		user  string
		want  int
		after func()
	}{
		{"first read", func() {}, "alice", 1001, nil},
		{"cached entry is a copy", func() {
			u, _ := Lookup("passwd", "alice")
			u.UID = 0
		}, "alice", 1001, nil},
		{"user added", func() {
			write("alice:x:1001:1001::/home/alice:/bin/sh\nbob:x:1002:1002::/home/bob:/bin/sh\n", base.Add(time.Second))
		}, "bob", 1002, nil},
		{"same size, new uid", func() {
			write("alice:x:1009:1001::/home/alice:/bin/sh\nbob:x:1002:1002::/home/bob:/bin/sh\n", base.Add(2*time.Second))
		}, "alice", 1009, nil},
		{"user removed", func() {
			write("bob:x:1002:1002::/home/bob:/bin/sh\n", base.Add(3*time.Second))
		}, "alice", -1, nil},
		{"replaced by rename", func() {
			tmp := filepath.Join(dir, "passwd.new")
			os.WriteFile(tmp, []byte("carol:x:1003:1003::/home/carol:/bin/sh\n"), 0o644)
			os.Rename(tmp, pw)
		}, "carol", 1003, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.edit()
			if got := uid(tc.user); got != tc.want {
				t.Fatalf("%s: uid %d, want %d", tc.user, got, tc.want)
			}
		})
	}
	t.Run("virtual map", func(t *testing.T) {
		vm := filepath.Join(dir, "virtual.yaml")
		os.WriteFile(vm, []byte("version: 1\nusers:\n  dora: {uid: 2001, gid: 2001, home: /srv/mail/dora}\n"), 0o644)
		u, err := Lookup("yaml:"+vm, "dora")
		if err != nil || u.UID != 2001 {
			t.Fatalf("dora: %v %v", u, err)
		}
		os.WriteFile(vm, []byte("version: 1\nusers:\n  dora: {uid: 2002, gid: 2001, home: /srv/mail/dora}\n"), 0o644)
		os.Chtimes(vm, base, base)
		if u, err := Lookup("yaml:"+vm, "dora"); err != nil || u.UID != 2002 {
			t.Fatalf("dora after the edit: %v %v", u, err)
		}
	})
}

// BenchmarkLookup compares a lookup from the cache (a stat of the file)
// with parsing the file, which every lookup did before the cache, on a
// passwd file of 2000 users.
func BenchmarkLookup(b *testing.B) {
	dir := b.TempDir()
	pw := filepath.Join(dir, "passwd")
	var text []byte
	for i := 0; i < 2000; i++ {
		text = fmt.Appendf(text, "user%d:x:%d:%d::/home/user%d:/bin/sh\n", i, 1000+i, 1000+i, i)
	}
	if err := os.WriteFile(pw, text, 0o644); err != nil {
		b.Fatal(err)
	}
	old := passwdFile
	passwdFile = pw
	b.Cleanup(func() { passwdFile = old })
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := Lookup("passwd", "user1999"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			f, err := os.Open(pw)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := lookupPasswd(f, func(u *User) bool { return u.Name == "user1999" }); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}

// TestLookupBadEntry: a user whose passwd line is there but unusable (a
// home with a trailing slash, a bad uid) exists: the lookup fails with
// BadEntryError, so mail waits (4xx) instead of bouncing as unknown.
func TestLookupBadEntry(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "passwd")
	old := passwdFile
	passwdFile = pw
	t.Cleanup(func() { passwdFile = old })
	os.WriteFile(pw, []byte("bob:x:1002:100::/home/bob/:/bin/sh\ncarol:x:10x3:100::/home/carol:/bin/sh\ndave:x:1004:100::/home/dave:/bin/sh\n"), 0o644)
	for _, tc := range []struct {
		name, user string
		bad        bool // BadEntryError, not ErrNotFound
	}{
		{"trailing slash in home", "bob", true},
		{"bad uid", "carol", true},
		{"good entry", "dave", false},
		{"absent", "erin", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := Lookup("passwd", tc.user)
			var bad *BadEntryError
			switch {
			case tc.bad && (!errors.As(err, &bad) || errors.Is(err, ErrNotFound) || bad.Name != tc.user):
				t.Fatalf("Lookup(%s) = %+v, %v; want a BadEntryError", tc.user, u, err)
			case !tc.bad && errors.As(err, &bad):
				t.Fatalf("Lookup(%s): unexpected %v", tc.user, err)
			case tc.user == "dave" && (err != nil || u.UID != 1004):
				t.Fatalf("Lookup(dave) = %+v, %v", u, err)
			case tc.user == "erin" && !errors.Is(err, ErrNotFound):
				t.Fatalf("Lookup(erin): err = %v, want ErrNotFound", err)
			}
		})
	}
}
