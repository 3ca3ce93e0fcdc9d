package xtext

import (
	"fmt"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct{ name, in, enc string }{
		{"plain", "alice@example.org", "alice@example.org"},
		{"plus", "a+b", "a+2Bb"},
		{"equals", "a=b", "a+3Db"},
		{"space", "a b", "a+20b"},
		{"crlf", "a\r\nb", "a+0D+0Ab"},
		{"nul", "\x00", "+00"},
		{"utf8", "é", "+C3+A9"},
		{"empty", "", ""},
		{"escape first", " ab", "+20ab"},
		{"escape last", "ab=", "ab+3D"},
		{"all escaped", "+=", "+2B+3D"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Encode(tc.in); got != tc.enc {
				t.Fatalf("Encode(%q) = %q, want %q", tc.in, got, tc.enc)
			}
			got, err := Decode(tc.enc)
			if err != nil || got != tc.in {
				t.Fatalf("Decode(%q) = %q, %v; want %q", tc.enc, got, err, tc.in)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"trailing plus", "abc+"},
		{"one digit", "abc+4"},
		{"lower hex", "a+2b"},
		{"non hex", "a+GG"},
		{"space", "a b"},
		{"equals", "a=b"},
		{"control", "a\x01"},
		{"high byte", "a\xc3\xa9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := Decode(tc.in); err == nil {
				t.Fatalf("Decode(%q) = %q, want error", tc.in, got)
			}
		})
	}
}

func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"", "a+b", "x\r\n", "\x00\xff", "plain"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := Encode(s)
		for i := 0; i < len(enc); i++ {
			if enc[i] < '!' || enc[i] > '~' || enc[i] == '=' {
				t.Fatalf("Encode(%q) produced byte %#x", s, enc[i])
			}
		}
		dec, err := Decode(enc)
		if err != nil || dec != s {
			t.Fatalf("round trip of %q: %q, %v", s, dec, err)
		}
		// Append writes the same bytes after whatever dst holds, with or
		// without room to spare.
		for _, dst := range [][]byte{nil, []byte("key "), append(make([]byte, 0, 64), "k "...)} {
			prefix := string(dst)
			if got := string(Append(dst, s)); got != prefix+enc {
				t.Fatalf("Append(%q, %q) = %q, want %q", prefix, s, got, prefix+enc)
			}
		}
	})
}

// TestEncodeExamples: the XLDA-DEST examples of lda-lmtp(7).
func TestEncodeExamples(t *testing.T) {
	for in, want := range map[string]string{
		"mbox:/home/alice/mail/My Lists": "mbox:/home/alice/mail/My+20Lists",
		"mbox:/home/alice/mail/c++":      "mbox:/home/alice/mail/c+2B+2B",
		"maildir:/home/alice/Mäil#Lists": "maildir:/home/alice/M+C3+A4il#Lists",
		"a=b\r\n":                        "a+3Db+0D+0A",
	} {
		t.Run(fmt.Sprintf("%q", in), func(t *testing.T) {
			if got := Encode(in); got != want {
				t.Errorf("Encode(%q) = %q, want %q", in, got, want)
			}
		})
	}
}

// BenchmarkEncode: most values lda encodes (users, paths, addresses)
// need no escape at all.
func BenchmarkEncode(b *testing.B) {
	for _, in := range []string{"/home/alice/Maildir", "250 2.0.0 delivered"} {
		b.Run(fmt.Sprintf("%d-escapes", countEscapes(in)), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				Encode(in)
			}
		})
	}
}

func countEscapes(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			n++
		}
	}
	return n
}
