package policy

import "testing"

func TestParseDestination(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want Destination
	}{
		{"mbox:/var/mail/a", true, Destination{Kind: Mbox, Path: "/var/mail/a"}},
		{"maildir:/home/a/Maildir", true, Destination{Kind: Maildir, Path: "/home/a/Maildir"}},
		{"maildir:/home/a/Maildir#Lists.go", true, Destination{Kind: Maildir, Path: "/home/a/Maildir", Folder: "Lists.go"}},
		{"program:procmail", true, Destination{Kind: Program, Program: "procmail"}},
		{"mbox:relative", false, Destination{}},
		{"mbox:/", false, Destination{}},
		{"mbox:/a/../b", false, Destination{}},
		{"mbox:/a#b", true, Destination{Kind: Mbox, Path: "/a#b"}},
		{"maildir:/a#../x", false, Destination{}},
		{"maildir:/a#", false, Destination{}},
		{"program:probe;id", false, Destination{}},
		{"program:../../bin/sh", false, Destination{}},
		{"pipe:/bin/sh", false, Destination{}},
		{"/var/mail/a", false, Destination{}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			d, err := ParseDestination(tc.in)
			if (err == nil) != tc.ok || (tc.ok && d != tc.want) {
				t.Fatalf("ParseDestination(%q) = %+v, %v", tc.in, d, err)
			}
		})
	}
}
