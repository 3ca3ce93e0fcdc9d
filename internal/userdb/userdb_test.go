package userdb

import (
	"errors"
	"strings"
	"testing"
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
