package policy

import (
	"strings"
	"testing"
)

func TestPrecheck(t *testing.T) {
	sys, err := ParseSystem(strings.NewReader(`version: 1
min_uid: 1000
default: {maildir: ~/Maildir}
allow:
  - {maildir: ~/Maildir}
  - {mbox: /var/mail/%u}
deny:
  - {mbox: ~/secret/**}
user_may_add:
  - {mbox: ~/**}
programs:
  procmail: {argv: [/usr/bin/procmail]}
`), "sys.yaml")
	if err != nil {
		t.Fatal(err)
	}
	u := User{Name: "alice", Home: "/home/alice"}
	for _, tc := range []struct {
		name string
		d    Destination
		ok   bool
	}{
		{"system allow", Destination{Kind: Mbox, Path: "/var/mail/alice"}, true},
		{"user may add", Destination{Kind: Mbox, Path: "/home/alice/box"}, true},
		{"system deny beats may add", Destination{Kind: Mbox, Path: "/home/alice/secret/x"}, false},
		{"never", Destination{Kind: Mbox, Path: "/etc/passwd"}, false},
		{"other user's spool", Destination{Kind: Mbox, Path: "/var/mail/bob"}, false},
		{"lexically bad", Destination{Kind: Mbox, Path: "/home/alice/../bob/x"}, false},
		{"maildir outside may add kinds", Destination{Kind: Maildir, Path: "/home/alice/Other"}, false},
		{"program not allowed to anyone", Destination{Kind: Program, Program: "procmail"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec := sys.Precheck(u, tc.d)
			if dec.Allowed != tc.ok {
				t.Fatalf("Precheck(%v) = %v (%s), want %v", tc.d, dec.Allowed, dec.Reason, tc.ok)
			}
		})
	}
}
