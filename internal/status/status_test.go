package status

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"
)

func TestFromErrno(t *testing.T) {
	wrap := func(e syscall.Errno) error {
		return fmt.Errorf("deliver: %w", &fs.PathError{Op: "write", Path: "/var/mail/x", Err: e})
	}
	for _, tc := range []struct {
		name     string
		err      error
		tempfail bool
		code     int
		enh      string
		exit     int
	}{
		{"nil", nil, false, 250, "2.0.0", 0},
		{"ENOSPC", wrap(syscall.ENOSPC), false, 452, "4.3.1", 75},
		{"EDQUOT", wrap(syscall.EDQUOT), false, 552, "5.2.2", 73},
		{"EFBIG", wrap(syscall.EFBIG), false, 552, "5.2.2", 73},
		{"EDQUOT tempfail", wrap(syscall.EDQUOT), true, 452, "4.2.2", 75},
		{"EFBIG tempfail", wrap(syscall.EFBIG), true, 452, "4.2.2", 75},
		{"ELOOP symlink", wrap(syscall.ELOOP), false, 450, "4.2.0", 75},
		{"EISDIR", wrap(syscall.EISDIR), false, 550, "5.2.0", 73},
		{"EACCES", wrap(syscall.EACCES), false, 450, "4.2.0", 75},
		{"EIO", wrap(syscall.EIO), false, 451, "4.3.0", 75},
		{"unlisted errno", wrap(syscall.ENOTSOCK), false, 451, "4.3.0", 75},
		{"unknown error", errors.New("something odd"), false, 451, "4.3.0", 75},
		{"policy refusal", PolicyRefused.Wrapf("no rule"), false, 550, "5.7.1", 77},
		{"unknown user", fmt.Errorf("lookup: %w", UnknownUser), false, 550, "5.1.1", 67},
		{"usage", Usage, false, 501, "5.5.4", 64},
		{"bad message", BadMessage, false, 554, "5.6.0", 65},
		{"too big", New(552, "5.3.4", "message too big"), false, 552, "5.3.4", 65},
		{"config", ConfigError, false, 451, "4.3.5", 75},
		{"not regular", NotRegular, false, 550, "5.2.0", 73},
	} {
		t.Run(tc.name, func(t *testing.T) {
			QuotaTempfail = tc.tempfail
			defer func() { QuotaTempfail = false }()
			st := From(tc.err)
			if st.Code != tc.code || st.Enhanced != tc.enh {
				t.Fatalf("From(%v) = %d %s, want %d %s", tc.err, st.Code, st.Enhanced, tc.code, tc.enh)
			}
			if got := st.Exit(); got != tc.exit {
				t.Fatalf("Exit() = %d, want %d", got, tc.exit)
			}
			// An error that is not already a Status must stay reachable
			// (for the log) behind the one that From made of it.
			var already *Status
			if tc.err != nil && !errors.As(tc.err, &already) && !errors.Is(st, tc.err) {
				t.Fatalf("cause lost: %v", st)
			}
			if strings.Contains(st.Reply(), "/var/mail") {
				t.Fatalf("reply leaks the path: %q", st.Reply())
			}
		})
	}
}

// TestFromSpool: lda's own spool is not a mailbox, so EDQUOT there is the
// spool's file system (temporary), not the recipient's quota.
func TestFromSpool(t *testing.T) {
	wrap := func(e syscall.Errno) error {
		return fmt.Errorf("spool: %w", &fs.PathError{Op: "write", Path: "/var/spool/lda/msg-1", Err: e})
	}
	for _, tc := range []struct {
		name string
		err  error
		code int
		enh  string
		exit int
	}{
		{"ENOSPC", wrap(syscall.ENOSPC), 452, "4.3.1", 75},
		{"EDQUOT", wrap(syscall.EDQUOT), 452, "4.3.1", 75},
		{"EFBIG", wrap(syscall.EFBIG), 552, "5.3.4", 65},
		{"EIO", wrap(syscall.EIO), 451, "4.3.0", 75},
		{"unknown", errors.New("short write"), 451, "4.3.0", 75},
	} {
		t.Run(tc.name, func(t *testing.T) {
			QuotaTempfail = false
			st := FromSpool(tc.err)
			if st.Code != tc.code || st.Enhanced != tc.enh || st.Exit() != tc.exit {
				t.Fatalf("FromSpool(%v) = %d %s exit %d, want %d %s exit %d", tc.err, st.Code, st.Enhanced, st.Exit(), tc.code, tc.enh, tc.exit)
			}
			if !errors.Is(st, tc.err) {
				t.Fatalf("cause lost: %v", st)
			}
			if strings.Contains(st.Reply(), "/var/spool") {
				t.Fatalf("reply leaks the path: %q", st.Reply())
			}
		})
	}
}

func TestFromExit(t *testing.T) {
	for _, tc := range []struct {
		exit int
		code int
		enh  string
	}{
		{0, 250, "2.0.0"}, {64, 554, "5.3.0"}, {65, 554, "5.6.0"}, {67, 550, "5.1.1"},
		{69, 554, "5.3.0"}, {71, 451, "4.3.0"}, {73, 550, "5.2.0"}, {74, 451, "4.3.0"},
		{75, 451, "4.3.0"}, {77, 550, "5.7.1"}, {78, 451, "4.3.5"}, {1, 451, "4.3.0"}, {255, 451, "4.3.0"},
	} {
		t.Run(fmt.Sprint(tc.exit), func(t *testing.T) {
			st := FromExit(tc.exit)
			if st.Code != tc.code || st.Enhanced != tc.enh {
				t.Fatalf("FromExit(%d) = %d %s, want %d %s", tc.exit, st.Code, st.Enhanced, tc.code, tc.enh)
			}
		})
	}
}

func TestTablesAreValid(t *testing.T) {
	for e, st := range errnoTable {
		if err := st.Validate(); err != nil || st.OK() {
			t.Errorf("errno %v: %v (%d)", e, err, st.Code)
		}
	}
	for c, st := range sysexitTable {
		if err := st.Validate(); err != nil {
			t.Errorf("exit %d: %v", c, err)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Status
		ok   bool
	}{
		{"ok", Status{Code: 550, Enhanced: "5.7.1"}, true},
		{"three digit detail", Status{Code: 451, Enhanced: "4.3.123"}, true},
		{"class mismatch", Status{Code: 250, Enhanced: "4.2.0"}, false},
		{"bad code", Status{Code: 600, Enhanced: "5.0.0"}, false},
		{"two parts", Status{Code: 550, Enhanced: "5.7"}, false},
		{"letters", Status{Code: 550, Enhanced: "5.x.1"}, false},
		{"empty part", Status{Code: 550, Enhanced: "5..1"}, false},
		{"class 3", Status{Code: 354, Enhanced: "3.0.0"}, false},
		{"four digit detail", Status{Code: 451, Enhanced: "4.3.1234"}, false},
		{"two digit class", Status{Code: 550, Enhanced: "55.7.1"}, false},
		{"four parts", Status{Code: 550, Enhanced: "5.7.1.1"}, false},
		{"trailing dot", Status{Code: 550, Enhanced: "5.7.1."}, false},
		{"leading dot", Status{Code: 550, Enhanced: ".5.7.1"}, false},
		{"empty", Status{Code: 550, Enhanced: ""}, false},
		{"wide digit", Status{Code: 550, Enhanced: "5.7.\u0661"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.s.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate(%+v) = %v, want ok=%v", tc.s, err, tc.ok)
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "plain", "plain"},
		{"CR LF", "a\r\nb", "a  b"},
		{"NUL", "x\x00y", "x?y"},
		{"too long", strings.Repeat("z", 500), strings.Repeat("z", 200)},
		{"spaces around", "  a b  ", "a b"},
		{"space at 200", strings.Repeat("z", 199) + " y", strings.Repeat("z", 199)},
		{"UTF-8", "Mäil", "Mäil"},
		{"invalid UTF-8", "a\xffb", "a?b"},
		{"DEL", "a\x7fb", "a?b"},
		// Line breaks to a Unicode reader (the text may go into a DSN's
		// Diagnostic-Code), and the other C1 controls.
		{"NEL", "a\u0085b", "a b"},
		{"line separator", "a\u2028b", "a b"},
		{"paragraph separator", "a\u2029b", "a b"},
		{"C1 CSI", "a\u009bb", "a?b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Sanitize(tc.in); got != tc.want {
				t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// refValidEnhanced is Validate's first check of the enhanced code, before
// it read the code in place: FuzzValidEnhanced holds the new one to it.
// (Sanitize's first version is its slow path, sanitize, which
// FuzzSanitize holds the fast path to.)
func refValidEnhanced(e string) bool {
	parts := strings.Split(e, ".")
	if len(parts) != 3 {
		return false
	}
	for i, p := range parts {
		if p == "" || len(p) > 3 || (i == 0 && len(p) != 1) {
			return false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"plain", "a\r\nb", " x ", strings.Repeat("z", 300), "M\xc3\xa4il", "\xff", "\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := Sanitize(s), sanitize(s); got != want {
			t.Fatalf("Sanitize(%q) = %q, the slow path %q", s, got, want)
		}
	})
}

func FuzzValidEnhanced(f *testing.F) {
	for _, s := range []string{"5.7.1", "4.3.123", "5..1", "55.7.1", "5.7.1.", "2.0.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, e string) {
		if got, want := validEnhanced(e), refValidEnhanced(e); got != want {
			t.Fatalf("validEnhanced(%q) = %v, the reference %v", e, got, want)
		}
	})
}

// TestUnicodeLineBreak: exactly the three characters at which a
// Unicode-aware reader ends a line besides CR and LF; their neighbours
// and the ASCII breaks (which every caller refuses as controls) are not.
func TestUnicodeLineBreak(t *testing.T) {
	for _, c := range []struct {
		r    rune
		want bool
	}{
		{'\u0085', true}, {'\u2028', true}, {'\u2029', true},
		{'\u0084', false}, {'\u0086', false}, {'\u2027', false}, {'\u202a', false},
		{'\n', false}, {'\r', false}, {'a', false}, {'\ufffd', false},
	} {
		t.Run(fmt.Sprintf("%U", c.r), func(t *testing.T) {
			if got := UnicodeLineBreak(c.r); got != c.want {
				t.Fatalf("UnicodeLineBreak(%U) = %v", c.r, got)
			}
		})
	}
}
