package policy

import (
	"strings"
	"testing"
)

func TestValidPath(t *testing.T) {
	tests := []struct {
		p  string
		ok bool
	}{
		{"/", true},
		{"/var/mail/alice", true},
		{"/home/a b/Mail", true},
		{"/home/ünï/Mail", true},
		{"/a/" + strings.Repeat("x", 255), true},
		{"/" + strings.Repeat("x/", 2047) + "x", true}, // 4096 bytes
		{"", false},
		{"var/mail", false},
		{"./var", false},
		{"/var/", false},
		{"//var", false},
		{"/var//mail", false},
		{"/var/./mail", false},
		{"/var/../etc", false},
		{"/..", false},
		{"/.", false},
		{"/var/mail/a\x00", false},
		{"/var/mail/a\n", false},
		{"/var/mail/a\r", false},
		{"/var/mail/a\x1b[0m", false},
		{"/var/mail/\x7f", false},
		{"/var/mail/\u009b", false},
		{"/var/mail/\xff", false},
		{"/a/" + strings.Repeat("x", 256), false},
		{"/" + strings.Repeat("x/", 2048) + "x", false}, // 4098 bytes
	}
	for _, tc := range tests {
		t.Run(quote(tc.p), func(t *testing.T) {
			if err := ValidPath(tc.p); (err == nil) != tc.ok {
				t.Errorf("ValidPath(%q) = %v, want ok=%v", tc.p, err, tc.ok)
			}
		})
	}
}

func TestValidFolder(t *testing.T) {
	tests := []struct {
		f  string
		ok bool
	}{
		{"Work", true},
		{"Lists.golang", true},
		{"a.b.c", true},
		{"Entwürfe", true},
		{"with space", true},
		{strings.Repeat("x", 254), true},
		{strings.Repeat("x", 255), false},
		{"", false},
		{".", false},
		{"..", false},
		{".Work", false},
		{"Work.", false},
		{"a..b", false},
		{"a/b", false},
		{"../x", false},
		{"a\x00", false},
		{"a\nb", false},
		{"\xff", false},
		{strings.Repeat("x", 256), false},
	}
	for _, tc := range tests {
		t.Run(quote(tc.f), func(t *testing.T) {
			if err := ValidFolder(tc.f); (err == nil) != tc.ok {
				t.Errorf("ValidFolder(%q) = %v, want ok=%v", tc.f, err, tc.ok)
			}
		})
	}
}

func TestValidProgramName(t *testing.T) {
	for _, ok := range []string{"procmail", "a", "x-1", "filter.v2", "a_b-c", "7z"} {
		t.Run("good "+quote(ok), func(t *testing.T) {
			if err := ValidProgramName(ok); err != nil {
				t.Errorf("%q: %v", ok, err)
			}
		})
	}
	for _, bad := range []string{"", "-x", ".x", "_x", "a b", "a+b", "a;b", "a|b", "a/b", "../x", "a\x00", "$(id)", "`id`", strings.Repeat("a", 65)} {
		t.Run("bad "+quote(bad), func(t *testing.T) {
			if err := ValidProgramName(bad); err == nil {
				t.Errorf("%q accepted", bad)
			}
		})
	}
}

func TestValidUserFile(t *testing.T) {
	for _, ok := range []string{".lda.yaml", ".config/lda.yaml", "x"} {
		t.Run("good "+quote(ok), func(t *testing.T) {
			if err := validUserFile(ok); err != nil {
				t.Errorf("%q: %v", ok, err)
			}
		})
	}
	for _, bad := range []string{".", "/etc/x", "../x", "a/../b", "a//b", "a/", "./a", "a\x00"} {
		t.Run("bad "+quote(bad), func(t *testing.T) {
			if err := validUserFile(bad); err == nil {
				t.Errorf("%q accepted", bad)
			}
		})
	}
}
