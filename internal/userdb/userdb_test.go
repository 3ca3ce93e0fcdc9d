package userdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"lda/internal/affinity"
	"lda/internal/testutil"
)

func TestParsePasswdLine(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		ok         bool
		uid        int
		home       string
	}{
		{"normal", "alice:x:1001:1001:Alice:/home/alice:/bin/sh", true, 1001, "/home/alice"},
		{"comment", "# alice:x:1:1::/:/bin/sh", false, 0, ""},
		{"nis", "+::::::", false, 0, ""},
		{"short", "alice:x:1001:1001", false, 0, ""},
		{"signed uid", "alice:x:+1:1::/home/a:/bin/sh", false, 0, ""},
		{"leading zero", "alice:x:01:1::/home/a:/bin/sh", false, 0, ""},
		{"relative home", "alice:x:1001:1001::home/a:/bin/sh", false, 0, ""},
		{"dotdot home", "alice:x:1001:1001::/home/../etc:/bin/sh", false, 0, ""},
		{"dash name", "-alice:x:1001:1001::/home/a:/bin/sh", false, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParsePasswdLine(tc.line)
			if (err == nil) != tc.ok {
				t.Fatalf("ParsePasswdLine(%q) err = %v, want ok=%v", tc.line, err, tc.ok)
			}
			if tc.ok && (u.UID != tc.uid || u.Home != tc.home) {
				t.Fatalf("got %+v", u)
			}
		})
	}
}

func TestLookupPasswd(t *testing.T) {
	file := "root:x:0:0:root:/root:/bin/sh\nbad line\nbob:x:1002:100::/home/bob:/bin/sh\n"
	u, err := lookupPasswd(strings.NewReader(file), func(u *User) bool { return u.Name == "bob" })
	if err != nil || u.UID != 1002 || u.GID != 100 {
		t.Fatalf("bob: %+v, %v", u, err)
	}
	_, err = lookupPasswd(strings.NewReader(file), func(u *User) bool { return u.Name == "carol" })
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("carol: err = %v, want ErrNotFound", err)
	}
}

func TestLookupBackends(t *testing.T) {
	for _, backend := range []string{"passwd", "getent"} {
		t.Run(backend, func(t *testing.T) {
			u, err := Lookup(backend, "root")
			if err != nil || u.UID != 0 || u.Home == "" {
				t.Fatalf("Lookup(%s, root) = %+v, %v", backend, u, err)
			}
			if _, err := Lookup(backend, "no-such-user-lda"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("unknown user: err = %v", err)
			}
			if _, err := Lookup(backend, "-x"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("option-like name: err = %v", err)
			}
		})
	}
}

func TestParseVirtual(t *testing.T) {
	good := "version: 1\nuid: 5000\ngid: 5000\nusers:\n  Alice@Example.org: {home: /srv/vmail/alice}\n  bob@example.org: {home: /srv/vmail/bob, uid: 5001, gid: 5002}\n"
	users, err := ParseVirtual(strings.NewReader(good), "v.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if a := users["alice@example.org"]; a == nil || a.UID != 5000 || a.Home != "/srv/vmail/alice" {
		t.Fatalf("alice: %+v", a)
	}
	if b := users["bob@example.org"]; b == nil || b.UID != 5001 || b.GID != 5002 {
		t.Fatalf("bob: %+v", b)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", good + "groups: 1\n", "v.yaml"},
		{"bad version", strings.Replace(good, "version: 1", "version: 3", 1), "version"},
		{"relative home", strings.Replace(good, "/srv/vmail/bob", "srv/bob", 1), "v.yaml:6:"},
		{"dotdot home", strings.Replace(good, "/srv/vmail/bob", "/srv/../etc", 1), "v.yaml:6:"},
		{"uid 0", strings.Replace(good, "uid: 5000\n", "", 1), "v.yaml:4:"},
		{"bad name", good + "  -x@y: {home: /srv/x}\n", "v.yaml:7:"},
		{"case duplicate", good + "  ALICE@example.org: {home: /srv/x}\n", "duplicate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseVirtual(strings.NewReader(tc.yaml), "v.yaml"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("lookup", func(t *testing.T) {
		path := t.TempDir() + "/v.yaml"
		if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
			t.Fatal(err)
		}
		u, err := Lookup("yaml:"+path, "ALICE@example.org")
		if err != nil || u.Name != "alice@example.org" || u.UID != 5000 {
			t.Fatalf("Lookup = %+v, %v", u, err)
		}
		if _, err := Lookup("yaml:"+path, "carol@example.org"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("carol: %v", err)
		}
	})
	for _, b := range []string{"passwd", "getent", "yaml:/etc/lda/virtual.yaml"} {
		t.Run(fmt.Sprintf("good %q", b), func(t *testing.T) {
			if err := ValidBackend(b); err != nil {
				t.Errorf("ValidBackend(%q) = %v", b, err)
			}
		})
	}
	for _, b := range []string{"ldap", "yaml:relative", "yaml:/a/../b", ""} {
		t.Run(fmt.Sprintf("bad %q", b), func(t *testing.T) {
			if ValidBackend(b) == nil {
				t.Errorf("ValidBackend(%q) accepted", b)
			}
		})
	}
}

// TestGetentSpread: getent, started by a gathered listener, gets the
// process's starting mask (affinity.Spawn), not the gathered CPU. A
// stand-in getent on PATH reports its own mask.
func TestGetentSpread(t *testing.T) {
	testutil.CPUs(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "mask")
	script := "#!/bin/sh\ngrep '^Cpus_allowed_list:' /proc/self/status >" + out + "\necho 'root:x:0:0:root:/root:/bin/sh'\n"
	if err := os.WriteFile(filepath.Join(dir, "getent"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	affinity.Start()
	last := affinity.Last()
	if !affinity.Set(last) {
		t.Fatal("could not gather")
	}
	defer affinity.Set(affinity.Spread)
	if u, err := lookupGetent("root"); err != nil || u.UID != 0 {
		t.Fatalf("lookupGetent = %+v, %v", u, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(strings.TrimPrefix(string(b), "Cpus_allowed_list:")); got == strconv.Itoa(last) {
		t.Fatalf("getent ran gathered on %s", got)
	}
}
