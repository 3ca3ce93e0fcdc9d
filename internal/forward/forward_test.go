package forward

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"lda/internal/aliases"
)

var update = flag.Bool("update", false, "rewrite the .golden files of testdata")

func describe(f *File) string {
	var b strings.Builder
	fmt.Fprintf(&b, "format: %s\n", f.Format)
	for _, e := range f.Elements {
		fmt.Fprintf(&b, "  %s %s", e.Kind, strconv.Quote(e.Value))
		if e.Domain != "" {
			fmt.Fprintf(&b, " @%s", strconv.Quote(e.Domain))
		}
		if e.Text != "" {
			fmt.Fprintf(&b, " text=%s", strconv.Quote(e.Text))
		}
		fmt.Fprintf(&b, " (%s)\n", e.Pos())
	}
	for _, d := range f.Diags {
		b.WriteString(d.String() + "\n")
	}
	return b.String()
}

// TestGolden reads every testdata/*.forward and compares with its .golden
// file (go test -update rewrites them).
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.forward"))
	if len(files) < 10 {
		t.Fatalf("only %d testdata/*.forward files", len(files))
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".forward"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := describe(Parse(data, name))
			golden := strings.TrimSuffix(file, ".forward") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s:\ngot\n%s\nwant\n%s", name, got, want)
			}
		})
	}
}

// TestFormats checks the recognition of each kind of file.
func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Format
		elements int
	}{
		{"address", "bob@example.org\n", List, 1},
		{"keep a copy", "\\alice, bob\n", List, 2},
		{"exim filter", "# Exim filter\ndeliver x\n", EximFilter, 0},
		{"exim filter, odd spacing", "#exim Filter\n", EximFilter, 0},
		{"exim comment that is not a marker", "# Exim users: read this\nbob\n", List, 1},
		{"sieve marker", "# Sieve filter\nkeep;\n", Sieve, 0},
		{"sieve require", "require \"fileinto\";\n", Sieve, 0},
		{"sieve after comments", "# hello\n\nif header :is \"x\" \"y\" { discard; }\n", Sieve, 0},
		{"sieve comment block", "/* a script */\nkeep;\n", Sieve, 0},
		{"user named keep", "keep\n", List, 1},
		{"user named if", "if\n", List, 1},
		{"file named require", "/require\n", List, 1},
		{"program", "\"|/usr/bin/vacation alice\"\n", List, 1},
		{"empty", "", List, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Parse([]byte(tc.in), ".forward")
			if f.Format != tc.want || len(f.Elements) != tc.elements {
				t.Errorf("format %s with %d elements, want %s with %d (%v)", f.Format, len(f.Elements), tc.want, tc.elements, f.Diags)
			}
			if tc.want != List && (len(f.Diags) != 1 || f.Diags[0].Severity != aliases.Error || f.Diags[0].Line < 1) {
				t.Errorf("a filter must be reported once, as an error with a line: %v", f.Diags)
			}
		})
	}
}
