package aliases

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the .golden files of testdata")

// testOpener serves :include:/include/NAME from testdata/include/NAME.
func testOpener(path string, by Element) (*Opened, error) {
	name, ok := strings.CutPrefix(path, "/include/")
	if !ok || strings.Contains(name, "/") {
		return nil, fs.ErrNotExist
	}
	data, err := os.ReadFile(filepath.Join("testdata", "include", name))
	if err != nil {
		return nil, fs.ErrNotExist
	}
	return &Opened{Data: data, Owner: 0}, nil
}

// describe renders the parse of an aliases file for a golden file.
func describe(a *Aliases) string {
	var b strings.Builder
	b.WriteString("== entries\n")
	for _, e := range a.Entries {
		fmt.Fprintf(&b, "%s (line %d)", strconv.Quote(e.Key), e.Line)
		if e.OwnerOf != "" {
			fmt.Fprintf(&b, " owner-of=%s", strconv.Quote(e.OwnerOf))
		}
		if e.RequestOf != "" {
			fmt.Fprintf(&b, " request-of=%s", strconv.Quote(e.RequestOf))
		}
		b.WriteByte('\n')
		for _, el := range e.Elements {
			b.WriteString("  " + describeElement(el) + "\n")
		}
	}
	b.WriteString("== diagnostics\n")
	for _, d := range a.Diags {
		b.WriteString(d.String() + "\n")
	}
	var incl strings.Builder
	for _, e := range a.Entries {
		has := false
		for _, el := range e.Elements {
			has = has || el.Kind == Include
		}
		if !has {
			continue
		}
		members, diags := ExpandIncludes(e.Elements, testOpener, Options{})
		fmt.Fprintf(&incl, "%s:\n", strconv.Quote(e.Key))
		for _, m := range members {
			var via []string
			for _, v := range m.Via {
				via = append(via, v.Pos())
			}
			fmt.Fprintf(&incl, "  %s in %s", describeElement(m.Element), m.File)
			if len(via) > 0 {
				fmt.Fprintf(&incl, " via %s", strings.Join(via, " > "))
			}
			incl.WriteByte('\n')
		}
		for _, d := range diags {
			incl.WriteString("  " + d.String() + "\n")
		}
	}
	if incl.Len() > 0 {
		b.WriteString("== :include: followed\n")
		b.WriteString(incl.String())
	}
	b.WriteString("== canonical\n")
	b.Write(Format(a.Entries))
	return b.String()
}

func describeElement(el Element) string {
	s := fmt.Sprintf("%s %s", el.Kind, strconv.Quote(el.Value))
	if el.Domain != "" {
		s += " @" + strconv.Quote(el.Domain)
	}
	if el.Text != "" {
		s += " text=" + strconv.Quote(el.Text)
	}
	if el.IsMaildir() {
		s += " (maildir)"
	}
	return fmt.Sprintf("%s (line %d)", s, el.Line)
}

// TestGolden parses every testdata/*.aliases file and compares the entries,
// the diagnostics, the :include: expansion and the canonical form with
// the .golden file next to it (go test -update rewrites them).
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.aliases"))
	if len(files) < 30 {
		t.Fatalf("only %d testdata/*.aliases files", len(files))
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".aliases"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := describe(Parse(data, name))
			golden := strings.TrimSuffix(file, ".aliases") + ".golden"
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
				t.Errorf("%s differs from %s:\n%s", name, golden, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff shows the lines that differ, for test failures.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			fmt.Fprintf(&b, "line %d:\n  want %q\n  got  %q\n", i+1, a, c)
		}
	}
	return b.String()
}

// TestGrammarElements covers each element of the grammar on its own.
func TestGrammarElements(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		opts     Options
		want     []Element // Kind, Value, Domain, Text only
		errs     int
		warns    int
	}{
		{"local user", "alice", Options{}, []Element{{Kind: Address, Value: "alice"}}, 0, 0},
		{"remote", "bob@example.org", Options{}, []Element{{Kind: Address, Value: "bob", Domain: "example.org"}}, 0, 0},
		{"domain literal", "u@[192.0.2.1]", Options{}, []Element{{Kind: Address, Value: "u", Domain: "[192.0.2.1]"}}, 0, 0},
		{"quoted local", `"a b"@example.org`, Options{}, []Element{{Kind: Address, Value: "a b", Domain: "example.org"}}, 0, 0},
		{"dotted quoted", `a."b c"@x`, Options{}, []Element{{Kind: Address, Value: "a.b c", Domain: "x"}}, 0, 0},
		{"noexpand", `\alice`, Options{}, []Element{{Kind: NoExpand, Value: "alice"}}, 0, 0},
		{"noexpand quoted", `\"alice"`, Options{}, []Element{{Kind: NoExpand, Value: "alice"}}, 0, 0},
		{"noexpand remote", `\a@b`, Options{}, nil, 1, 0},
		{"program", "|/usr/bin/x", Options{}, []Element{{Kind: Program, Value: "/usr/bin/x"}}, 0, 0},
		{"program quoted", `"|/usr/bin/x -a \"b c\""`, Options{}, []Element{{Kind: Program, Value: `/usr/bin/x -a "b c"`}}, 0, 0},
		{"program unquoted args", "|/usr/bin/x -a, bob", Options{}, []Element{{Kind: Program, Value: "/usr/bin/x -a"}, {Kind: Address, Value: "bob"}}, 0, 1},
		{"empty program", `"|"`, Options{}, nil, 1, 0},
		{"file", "/var/mail/x", Options{}, []Element{{Kind: File, Value: "/var/mail/x"}}, 0, 0},
		{"maildir", "/var/mail/x/", Options{}, []Element{{Kind: File, Value: "/var/mail/x/"}}, 0, 0},
		{"file quoted", `"/a b/c"`, Options{}, []Element{{Kind: File, Value: "/a b/c"}}, 0, 0},
		{"home file in aliases", "~/x", Options{}, nil, 1, 0},
		{"home file in .forward", "~/x", Options{Home: true}, []Element{{Kind: HomeFile, Value: "/x"}}, 0, 0},
		{"tilde user", "~bob/x", Options{Home: true}, nil, 1, 0},
		{"include", ":include:/etc/x", Options{}, []Element{{Kind: Include, Value: "/etc/x"}}, 0, 0},
		{"include upper case", ":INCLUDE:/etc/x", Options{}, []Element{{Kind: Include, Value: "/etc/x"}}, 0, 0},
		{"include quoted", `":include:/a b"`, Options{}, []Element{{Kind: Include, Value: "/a b"}}, 0, 0},
		{"include relative", ":include:x", Options{}, nil, 1, 0},
		{"blackhole", ":blackhole:", Options{}, []Element{{Kind: Special, Value: ":blackhole:"}}, 0, 0},
		{"fail text", ":fail: gone away", Options{}, []Element{{Kind: Special, Value: ":fail:", Text: "gone away"}}, 0, 0},
		{"bad special", ":nope:", Options{}, nil, 1, 0},
		{"comment dropped", "a (x, y), b", Options{}, []Element{{Kind: Address, Value: "a"}, {Kind: Address, Value: "b"}}, 0, 0},
		{"missing comma", "a b", Options{}, []Element{{Kind: Address, Value: "a"}, {Kind: Address, Value: "b"}}, 0, 1},
		{"inline hash", "a # b", Options{}, []Element{{Kind: Address, Value: "a"}}, 1, 0},
		{"route address", "<a@b>", Options{}, nil, 1, 0},
		{"escaped comma", `a\,b`, Options{}, []Element{{Kind: Address, Value: "a,b"}}, 0, 0},
		{"empty quoted", `""`, Options{}, nil, 1, 0},
		{"unterminated quote", `"abc`, Options{}, nil, 1, 0},
		{"text after quote", `"a"b`, Options{}, nil, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			els, diags := ParseList([]byte(tc.in), "t", tc.opts)
			var got []Element
			for _, e := range els {
				got = append(got, Element{Kind: e.Kind, Value: e.Value, Domain: e.Domain, Text: e.Text})
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("elements %v, want %v (diags %v)", got, tc.want, diags)
			}
			if e, w := Errors(diags), len(diags)-Errors(diags); e != tc.errs || w != tc.warns {
				t.Errorf("%d errors and %d warnings, want %d and %d: %v", e, w, tc.errs, tc.warns, diags)
			}
			for _, d := range diags {
				if d.File != "t" || d.Line != 1 {
					t.Errorf("diagnostic without file:line: %v", d)
				}
			}
		})
	}
}

// TestEveryErrorReported checks that parsing goes on after an error, so
// that a file with several mistakes gets one diagnostic per mistake, each
// at its own line.
func TestEveryErrorReported(t *testing.T) {
	in := "a: ok\nb: \"unterminated\nc:\nd: fine\ne@x: y\nf: <r@x>\n  , g\n h\ng: last\n"
	a := Parse([]byte(in), "f")
	var lines []int
	for _, d := range a.Diags {
		if d.Severity == Error {
			lines = append(lines, d.Line)
		}
	}
	if fmt.Sprint(lines) != "[2 3 5 6]" {
		t.Errorf("error lines %v, want [2 3 5 6]: %v", lines, a.Diags)
	}
	var keys []string
	for _, e := range a.Entries {
		keys = append(keys, e.Key)
	}
	if fmt.Sprint(keys) != "[a d f g]" { // f keeps the elements that parse
		t.Errorf("keys %v, want [a d f g]", keys)
	}
}

// TestIncludes covers recursion, cycles, depth and refusals by the Opener.
func TestIncludes(t *testing.T) {
	files := map[string]string{
		"/l/one":   "a\n:include:/l/two\n",
		"/l/two":   "b, |/bin/x\n/var/x\n",
		"/l/self":  "s\n:include:/l/self\n",
		"/l/ca":    "ca\n:include:/l/cb\n",
		"/l/cb":    "cb\n:include:/l/ca\n",
		"/l/home":  "~/mail/x\n",
		"/l/deny":  "",
		"/l/deep0": ":include:/l/deep1\n",
	}
	for i := 1; i <= MaxIncludeDepth+2; i++ {
		files["/l/deep"+strconv.Itoa(i)] = fmt.Sprintf("d%d\n:include:/l/deep%d\n", i, i+1)
	}
	open := func(path string, by Element) (*Opened, error) {
		if path == "/l/deny" {
			return nil, errors.New("refused: a symlink")
		}
		s, ok := files[path]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return &Opened{Data: []byte(s), Owner: 1000}, nil
	}
	for _, tc := range []struct {
		name, top string
		opts      Options
		want      string // Internal() of members, with their Via depth
		errs      []string
	}{
		{"nested", ":include:/l/one, z", Options{}, "a/1 b/2 |/bin/x/2 /var/x/2 z/0", nil},
		{"self cycle", ":include:/l/self", Options{}, "s/1", []string{"cycle: /l/self -> /l/self"}},
		{"two-file cycle", ":include:/l/ca", Options{}, "ca/1 cb/2", []string{"cycle: /l/ca -> /l/cb -> /l/ca"}},
		{"refused", ":include:/l/deny, y", Options{}, "y/0", []string{"/l/deny: refused: a symlink"}},
		{"missing", ":include:/l/none", Options{}, "", []string{"file does not exist"}},
		{"home in include of .forward", ":include:/l/home", Options{Home: true}, "~/mail/x/1", nil},
		{"home in include of aliases", ":include:/l/home", Options{}, "", []string{"no home directory"}},
		{"too deep", ":include:/l/deep0", Options{}, "d1/2 d2/3 d3/4 d4/5 d5/6 d6/7 d7/8 d8/9 d9/10", []string{"nested deeper than 10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top, d0 := ParseList([]byte(tc.top), "top", tc.opts)
			if len(d0) > 0 {
				t.Fatal(d0)
			}
			ms, diags := ExpandIncludes(top, open, tc.opts)
			var got []string
			for _, m := range ms {
				got = append(got, fmt.Sprintf("%s/%d", m.Internal(), len(m.Via)))
				if len(m.Via) > 0 && m.Owner != 1000 || len(m.Via) == 0 && m.Owner != -1 {
					t.Errorf("%s: owner %d", m.Internal(), m.Owner)
				}
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("members %q, want %q", strings.Join(got, " "), tc.want)
			}
			if len(diags) != len(tc.errs) {
				t.Fatalf("diagnostics %v, want %d", diags, len(tc.errs))
			}
			for i, d := range diags {
				if !strings.Contains(d.String(), tc.errs[i]) || d.Line == 0 || d.File == "" {
					t.Errorf("diagnostic %q, want file:line and %q", d, tc.errs[i])
				}
			}
		})
	}
}

// TestFormatRoundTrip checks parse -> format -> parse on the corpus.
func TestFormatRoundTrip(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.aliases"))
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, _ := os.ReadFile(file)
			checkRoundTrip(t, data)
		})
	}
}

func checkRoundTrip(t *testing.T, data []byte) {
	t.Helper()
	a := Parse(data, "in")
	out := Format(a.Entries)
	b := Parse(out, "out")
	if Errors(b.Diags) > 0 {
		t.Fatalf("canonical form has errors: %v\n%s", b.Diags, out)
	}
	if !sameEntries(a.Entries, b.Entries) {
		t.Fatalf("round trip changed the entries:\n%s\nbecame\n%s", Format(a.Entries), Format(b.Entries))
	}
	if again := Format(b.Entries); !bytes.Equal(again, out) {
		t.Fatalf("format not stable:\n%s\n%s", out, again)
	}
}

func sameEntries(a, b []*Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || len(a[i].Elements) != len(b[i].Elements) {
			return false
		}
		for j := range a[i].Elements {
			if !a[i].Elements[j].Same(b[i].Elements[j]) {
				return false
			}
		}
	}
	return true
}
