package aliases

import (
	"bytes"
	"testing"
)

// FuzzParseFormat checks that parse -> format -> parse is stable: the
// canonical form of any input parses without errors to the same entries,
// and formats to the same bytes again. The seed corpus is in
// testdata/fuzz/FuzzParseFormat.
func FuzzParseFormat(f *testing.F) {
	f.Add([]byte("root: alice, bob@example.org\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a := Parse(data, "in")
		for _, d := range a.Diags {
			if d.File != "in" || d.Line < 1 {
				t.Fatalf("diagnostic without file:line: %v", d)
			}
		}
		out := Format(a.Entries)
		b := Parse(out, "out")
		if len(b.Diags) > 0 && Errors(b.Diags) > 0 {
			t.Fatalf("canonical form has errors: %v\n%q", b.Diags, out)
		}
		if !sameEntries(a.Entries, b.Entries) {
			t.Fatalf("round trip changed the entries:\n%q\nbecame\n%q", out, Format(b.Entries))
		}
		if again := Format(b.Entries); !bytes.Equal(again, out) {
			t.Fatalf("format not stable:\n%q\n%q", out, again)
		}
		// The list grammar (.forward, :include:) too.
		for _, opts := range []Options{{}, {Home: true}} {
			els, _ := ParseList(data, "in", opts)
			out := FormatList(els)
			els2, diags := ParseList(out, "out", opts)
			if Errors(diags) > 0 {
				t.Fatalf("canonical list has errors: %v\n%q", diags, out)
			}
			if len(els) != len(els2) {
				t.Fatalf("list round trip: %d elements became %d\n%q", len(els), len(els2), out)
			}
			for i := range els {
				if !els[i].Same(els2[i]) {
					t.Fatalf("list round trip: %v became %v", els[i], els2[i])
				}
			}
		}
	})
}
