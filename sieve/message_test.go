package sieve

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParseMessageHeaders(t *testing.T) {
	raw := "From nobody Mon Jan  1 00:00:00 2024\n" + // mbox separator: skipped
		"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and =?iso-8859-1?q?caf=E9?=\n" +
		"X-Folded: first\n\tsecond\n  third\n" +
		"X-Empty:\n" +
		"X-Obsolete : value\n" +
		"X-Win: =?windows-1252?q?=80uro_=93quoted=94?=\n" +
		"X-Latin9: =?iso-8859-15?q?=A4?=\n" +
		"X-Latin2: =?iso-8859-2?q?a=B1b?=\n" +
		"X-Unknown: =?x-unknown?q?abc?=\n" +
		"X-B64: =?UTF-8?B?w6l0w6k=?=\n" +
		"X-Twice: 1\nx-twice: 2\n" +
		"not a header line\n" +
		"From: =?utf-8?q?Doe=2C_John?= <john@example.net>, \"Plain\" <p@example.net>\n" +
		"To: =?utf-8?q?J=C3=BCrgen?= <j@example.net>\n" +
		"\n" +
		"Body: not a header\n"
	m := mustParse(t, raw)
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"subject", []string{"Grüße and café"}},
		{"SUBJECT", []string{"Grüße and café"}},
		{"x-folded", []string{"first\tsecond  third"}},
		{"x-empty", []string{""}},
		{"x-obsolete", []string{"value"}},
		{"x-win", []string{"€uro “quoted”"}},
		{"x-latin9", []string{"€"}},
		{"x-latin2", []string{"a\ufffdb"}},
		{"x-unknown", []string{"=?x-unknown?q?abc?="}},
		{"x-b64", []string{"été"}},
		{"x-twice", []string{"1", "2"}},
		{"body", nil},
		{"from", []string{`"Doe, John" <john@example.net>, "Plain" <p@example.net>`}},
		{"to", []string{"Jürgen <j@example.net>"}},
		{"x-missing", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.Header(tc.name); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Header(%q) = %q, want %q", tc.name, got, tc.want)
			}
		})
	}
	if m.Size() != int64(len(raw)) {
		t.Errorf("Size = %d", m.Size())
	}
	// The address test sees the addresses of the encoded field.
	out, err := Run(context.Background(), []*Script{mustLoad(t, "a", allExt+
		`if address :is "from" "john@example.net" { fileinto "John"; }
		 if address :all :is "from" "p@example.net" { fileinto "Plain"; }
		 if header :contains "to" "Jürgen" { fileinto "J"; }`)}, testEnv, m, Limits{})
	if err != nil || actionsString(out.Actions) != `fileinto "John"; fileinto "Plain"; fileinto "J"` {
		t.Errorf("address tests: %v %v", out.Actions, err)
	}
}

func TestParseMessageShapes(t *testing.T) {
	body := func(raw string, lim Limits, key string) bool {
		t.Helper()
		out, err := runOne(t, allExt+`if body :raw :contains "`+key+`" { fileinto "Y"; }`, testEnv, raw, lim)
		if err != nil {
			t.Fatal(err)
		}
		return actionsString(out.Actions) == `fileinto "Y"`
	}
	t.Run("no body", func(t *testing.T) {
		m := mustParse(t, "Subject: x\r\n")
		if got := m.Header("subject"); len(got) != 1 || got[0] != "x" {
			t.Errorf("subject %q", got)
		}
		if body("Subject: x\r\n", Limits{}, "x") {
			t.Error("a header-only message has a body")
		}
	})
	t.Run("empty message", func(t *testing.T) {
		m := mustParse(t, "")
		if m.Header("subject") != nil {
			t.Error("header in an empty message")
		}
	})
	t.Run("no final newline", func(t *testing.T) {
		m := mustParse(t, "Subject: x")
		if got := m.Header("subject"); len(got) != 1 || got[0] != "x" {
			t.Errorf("subject %q", got)
		}
	})
	t.Run("LF only", func(t *testing.T) {
		raw := "Subject: a\n b\n\nbody text\n"
		if got := mustParse(t, raw).Header("subject"); got[0] != "a b" {
			t.Errorf("subject %q", got)
		}
		if !body(raw, Limits{}, "body text") {
			t.Error("body not found")
		}
	})
	t.Run("blank line is CR LF only", func(t *testing.T) {
		raw := "Subject: a\r\n \r\nX-After: b\r\n\r\nbody"
		m := mustParse(t, raw)
		if got := m.Header("x-after"); len(got) != 1 {
			t.Errorf("a line of white space ended the header: %q", got)
		}
	})
	t.Run("header limit", func(t *testing.T) {
		raw := "X-A: 1\r\nX-Big: " + strings.Repeat("x", 200) + "\r\nX-C: 3\r\n\r\nthe body\r\n"
		m, err := ParseMessage(strings.NewReader(raw), int64(len(raw)), Limits{MaxHeaderBytes: 100})
		if err != nil {
			t.Fatal(err)
		}
		if m.Header("x-a") == nil || m.Header("x-big") != nil || m.Header("x-c") != nil {
			t.Errorf("fields past the limit: a=%q big=%q c=%q", m.Header("x-a"), m.Header("x-big"), m.Header("x-c"))
		}
		if !body(raw, Limits{MaxHeaderBytes: 100}, "the body") {
			t.Error("the body was not found after a header over the limit")
		}
	})
	t.Run("body limit", func(t *testing.T) {
		raw := "Subject: x\r\n\r\n" + strings.Repeat("a", 100) + "needle"
		if body(raw, Limits{MaxBodyBytes: 100}, "needle") {
			t.Error("body test looked past MaxBodyBytes")
		}
		if !body(raw, Limits{MaxBodyBytes: 106}, "needle") {
			t.Error("body test did not see the body up to MaxBodyBytes")
		}
	})
	t.Run("long line", func(t *testing.T) {
		raw := "X-Long: " + strings.Repeat("y", 100000) + "\r\nX-Next: z\r\n\r\n"
		m := mustParse(t, raw)
		if got := m.Header("x-long"); len(got) != 1 || len(got[0]) != 100000 {
			t.Errorf("long field has %d values", len(got))
		}
		if got := m.Header("x-next"); len(got) != 1 || got[0] != "z" {
			t.Errorf("x-next %q", got)
		}
	})
	t.Run("negative size", func(t *testing.T) {
		if _, err := ParseMessage(strings.NewReader(""), -1, Limits{}); err == nil {
			t.Error("negative size accepted")
		}
	})
}

func TestBodyTransforms(t *testing.T) {
	raw := "From: a@example.org\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
		"\r\n" +
		"prologue\r\n" +
		"--b1\r\n" +
		"Content-Type: text/plain; charset=iso-8859-1\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n" +
		"\r\n" +
		"Gr=FC=DFe aus K=F6ln\r\n" +
		"--b1\r\n" +
		"Content-Type: text/html\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" +
		"PGI+Qm9sZDwvYj4gdGV4dA==\r\n" +
		"--b1\r\n" +
		"Content-Type: application/octet-stream\r\n" +
		"\r\n" +
		"binary secret\r\n" +
		"--b1--\r\n"
	for _, tc := range []struct {
		test string
		want bool
	}{
		{`body :raw :contains "Gr=FC=DFe"`, true},
		{`body :raw :contains "Grüße"`, false},
		{`body :text :contains "Grüße aus Köln"`, true},
		{`body :text :contains "Bold text"`, true},
		{`body :text :contains "<b>"`, false},
		{`body :content "text/html" :contains "<b>Bold</b>"`, true},
		{`body :content "text" :contains "binary secret"`, false},
		{`body :content "application" :contains "binary secret"`, true},
		{`body :content "multipart" :contains "prologue"`, true},
		{`body :text :matches "*K??ln*"`, true}, // go-sieve: "?" is one byte (man page)
		{`body :text :contains :comparator "i;octet" "köln"`, false},
		{`body :text :contains "köln"`, true},
		{`body :text :contains "KÖLN"`, false}, // i;ascii-casemap folds only ASCII
		{`body :text :contains :comparator "i;unicode-casemap" "GRÜSSE"`, false},
		{`body :text :contains :comparator "i;unicode-casemap" "GRÜßE"`, true},
		{`header :matches "from" "*@example.org"`, true},
	} {
		t.Run(tc.test, func(t *testing.T) { wantTest(t, tc.test, raw, tc.want) })
	}
}

// wantTest runs "if TEST { fileinto "Y"; }" on raw and checks whether the
// test matched.
func wantTest(t *testing.T, test, raw string, want bool) {
	t.Helper()
	out, err := runOne(t, allExt+`if `+test+` { fileinto "Y"; }`, testEnv, raw, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got := actionsString(out.Actions) == `fileinto "Y"`; got != want || out.ScriptError != nil {
		t.Errorf("%s = %v (%v), want %v", test, got, out.ScriptError, want)
	}
}

// TestNonASCIIKeys checks the work-around for go-sieve's byte-wise regular
// expressions: non-ASCII keys in :matches and body tests match UTF-8 text.
func TestNonASCIIKeys(t *testing.T) {
	raw := "Subject: =?utf-8?q?R=C3=A9union_=C3=A0_Z=C3=BCrich?=\r\n\r\nLe café est prêt.\r\n"
	for _, tc := range []struct {
		test string
		want bool
	}{
		{`header :matches "subject" "Réunion*"`, true},
		{`header :matches "subject" "*Zürich"`, true},
		{`header :matches :comparator "i;octet" "subject" "*à*"`, true},
		{`header :matches "subject" "*zÜrich"`, false},
		{`header :contains "subject" "à Zü"`, true},
		{`header :is "subject" "Réunion à Zürich"`, true},
		{`body :contains "café"`, true},
		{`body :matches "Le café*"`, true},
		{`body :matches "*prêt*"`, true},
		{`body :contains "thé"`, false},
		{`string :matches "${hex:c3 a9}" "é"`, true},
	} {
		t.Run(tc.test, func(t *testing.T) { wantTest(t, tc.test, raw, tc.want) })
	}
}

func TestCharsetReader(t *testing.T) {
	for _, tc := range []struct{ cs, in, want string }{
		{"ISO-8859-1", "caf\xe9", "café"},
		{"latin1", "\xff", "ÿ"},
		{"windows-1252", "\x80\x81", "€\ufffd"},
		{"iso-8859-15", "\xa4\xe9", "€é"},
		{"iso-8859-5", "a\xb0", "a\ufffd"},
		{"utf-8", "é", "é"},
	} {
		t.Run(tc.cs, func(t *testing.T) {
			r, err := charsetReader(tc.cs, strings.NewReader(tc.in))
			if err != nil {
				t.Errorf("%s: %v", tc.cs, err)
				return
			}
			var b strings.Builder
			buf := make([]byte, 1) // smallest reads
			for {
				n, err := r.Read(buf)
				b.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if b.String() != tc.want {
				t.Errorf("%s: %q, want %q", tc.cs, b.String(), tc.want)
			}
		})
	}
	if _, err := charsetReader("shift_jis", strings.NewReader("")); err == nil {
		t.Error("shift_jis accepted")
	}
}

func ExampleMaildirFlags() {
	fmt.Println(MaildirFlags([]string{`\Seen`, `\Flagged`, `$Junk`}))
	// Output: FS
}
