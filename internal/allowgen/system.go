package allowgen

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"lda/policy"
)

// The system file is the administrator's text with allowgen's lines
// inserted: each generated line is one rule or one program, and carries a
// comment that begins with "# allowgen:". Before it generates anything,
// allowgen removes the lines it generated last time, so the
// administrator's own lines, comments and layout are kept byte for byte.

// genMark begins the comment of every line allowgen adds to a system file.
const genMark = "# allowgen:"

// generatedLine matches a line that allowgen added: a flow rule in a list,
// a program with a flow value, or a section header it had to create.
var generatedLine = regexp.MustCompile(`^(?:\s*- \{.*\}|\s+[A-Za-z0-9][A-Za-z0-9._+-]*: \{.*\}|(?:allow|user_may_add|programs):) +# allowgen: `)

// stripGenerated removes allowgen's lines from a system file's text.
func stripGenerated(text string) string {
	lines := strings.SplitAfter(text, "\n")
	var b strings.Builder
	for _, l := range lines {
		if generatedLine.MatchString(strings.TrimRight(l, "\n")) {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// section is where generated lines go in the base text.
type section struct {
	present bool
	after   int    // insert after this line (1-based)
	prefix  string // what begins an item line: "  - " (lists) or "  " (programs)
}

// base is the administrator's system file, without allowgen's lines.
type base struct {
	file     string
	text     string
	sys      *policy.System
	programs map[string][]string // name -> argv as written (%u unexpanded)
	sections map[string]*section // "allow", "user_may_add", "programs"
}

// loadBase parses the base text: it must be a valid system file whose
// allow, user_may_add and programs sections (if present) are in block
// style, so that lines can be added.
func loadBase(text, file string) (*base, error) {
	sys, err := policy.ParseSystem(strings.NewReader(text), file)
	if err != nil {
		return nil, err
	}
	b := &base{file: file, text: text, sys: sys, programs: map[string][]string{}, sections: map[string]*section{}}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return nil, err
	}
	root := doc.Content[0]
	lines := strings.Split(text, "\n")
	var keyLines []int
	for i := 0; i+1 < len(root.Content); i += 2 {
		keyLines = append(keyLines, root.Content[i].Line)
	}
	sort.Ints(keyLines)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		if name != "allow" && name != "user_may_add" && name != "programs" {
			continue
		}
		if v.Style&yaml.FlowStyle != 0 || len(v.Content) == 0 {
			return nil, fmt.Errorf("%s:%d: %s: write it in block style (one item per line) so that allowgen can add lines to it", file, k.Line, name)
		}
		s := &section{present: true}
		first := v.Content[0]
		firstText := lines[first.Line-1]
		if name == "programs" {
			s.prefix = firstText[:len(firstText)-len(strings.TrimLeft(firstText, " "))]
			if s.prefix == "" {
				return nil, fmt.Errorf("%s:%d: programs: unexpected layout", file, first.Line)
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				var argv []string
				pv := v.Content[j+1]
				for m := 0; m+1 < len(pv.Content); m += 2 {
					if pv.Content[m].Value == "argv" {
						for _, a := range pv.Content[m+1].Content {
							argv = append(argv, a.Value)
						}
					}
				}
				b.programs[v.Content[j].Value] = argv
			}
		} else {
			m := regexp.MustCompile(`^\s*-\s+`).FindString(firstText)
			if m == "" {
				return nil, fmt.Errorf("%s:%d: %s: unexpected layout", file, first.Line, name)
			}
			s.prefix = m
		}
		// The section ends before the next top-level key; comment lines
		// in column 1 and blank lines just before that key belong to it.
		end := len(lines)
		if len(lines) > 0 && lines[len(lines)-1] == "" {
			end--
		}
		for _, l := range keyLines {
			if l > k.Line {
				end = l - 1
				break
			}
		}
		for end > k.Line && (strings.TrimSpace(lines[end-1]) == "" || strings.HasPrefix(lines[end-1], "#")) {
			end--
		}
		s.after = end
		b.sections[name] = s
	}
	return b, nil
}

// addition is one generated line: its section and its text without the
// item prefix (a flow rule, or "name: {argv: [...]}"), and the comment.
type addition struct {
	section string
	text    string
	comment string
}

// render inserts the additions into the base text, in order within each
// section; a missing section is appended at the end.
func (b *base) render(adds []addition) string {
	lines := strings.Split(b.text, "\n")
	trailing := len(lines) > 0 && lines[len(lines)-1] == ""
	if trailing {
		lines = lines[:len(lines)-1]
	}
	bySection := map[string][]addition{}
	for _, a := range adds {
		bySection[a.section] = append(bySection[a.section], a)
	}
	insert := map[int][]string{}
	var appendix []string
	for _, name := range []string{"programs", "allow", "user_may_add"} {
		as := bySection[name]
		if len(as) == 0 {
			continue
		}
		s := b.sections[name]
		prefix := "  - "
		if name == "programs" {
			prefix = "  "
		}
		var out []string
		if s == nil {
			out = append(out, name+":  "+genMark+" section")
		} else {
			prefix = s.prefix
		}
		for _, a := range as {
			out = append(out, prefix+a.text+"  "+genMark+" "+a.comment)
		}
		if s == nil {
			appendix = append(appendix, out...)
		} else {
			insert[s.after] = append(insert[s.after], out...)
		}
	}
	var res []string
	res = append(res, insert[0]...)
	for i, l := range lines {
		res = append(res, l)
		res = append(res, insert[i+1]...)
	}
	res = append(res, appendix...)
	return strings.Join(res, "\n") + "\n"
}

// yamlScalar writes s as a YAML scalar: plain when that is unambiguous,
// else double-quoted.
func yamlScalar(s string) string {
	plain := regexp.MustCompile(`^[A-Za-z0-9_./~%+=@-]+$`)
	if plain.MatchString(s) && !strings.HasPrefix(s, "-") && s != "~" && !looksTyped(s) {
		return s
	}
	return strconv.Quote(s)
}

// looksTyped reports plain scalars that YAML would not read as strings.
func looksTyped(s string) bool {
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return true
	}
	_, ok := v.(string)
	return !ok
}

// literalPattern turns a concrete path into a policy pattern that matches
// exactly it: % is doubled; a path with characters that patterns reserve
// (* ? [ ] \) cannot be written and is refused.
func literalPattern(p string) (string, error) {
	if err := policy.ValidPath(p); err != nil {
		return "", err
	}
	if strings.ContainsAny(p, `*?[]\`) {
		return "", fmt.Errorf("%s contains * ? [ ] or \\, which policy patterns cannot express literally", strconv.Quote(p))
	}
	return strings.ReplaceAll(p, "%", "%%"), nil
}

// homePattern writes p as ~/rel if it lies beneath the home directory.
func homePattern(p, homeDir string) (string, error) {
	pat, err := literalPattern(p)
	if err != nil {
		return "", err
	}
	if policy.ValidPath(homeDir) == nil && homeDir != "/" {
		if rel, ok := strings.CutPrefix(p, homeDir+"/"); ok && rel != "" {
			return "~/" + strings.ReplaceAll(rel, "%", "%%"), nil
		}
	}
	return pat, nil
}

// programName makes a program name from an argument vector: the base
// name of argv[0] (letters, digits, . _ + - only) and a hash of argv.
func programName(argv []string, length int) string {
	h := sha256.Sum256([]byte(strings.Join(argv, "\x00")))
	var b strings.Builder
	for _, r := range filepath.Base(argv[0]) {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '+', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	n := strings.TrimLeft(b.String(), "._+-")
	if len(n) > 40 {
		n = n[:40]
	}
	if n == "" {
		n = "prog"
	}
	return n + "-" + hex.EncodeToString(h[:])[:length]
}

// expandArgv expands %u and %% in the arguments after argv[0], as lda
// does for a user.
func expandArgv(argv []string, user string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if i == 0 {
			out[i] = a
			continue
		}
		var b strings.Builder
		for j := 0; j < len(a); j++ {
			if a[j] == '%' && j+1 < len(a) {
				j++
				switch a[j] {
				case 'u':
					b.WriteString(user)
				default:
					b.WriteByte(a[j])
				}
				continue
			}
			b.WriteByte(a[j])
		}
		out[i] = b.String()
	}
	return out
}

// programLine writes "name: {argv: [...]}" with % doubled in arguments.
func programLine(name string, argv []string) string {
	var parts []string
	for i, a := range argv {
		if i > 0 {
			a = strings.ReplaceAll(a, "%", "%%")
		}
		parts = append(parts, strconv.Quote(a))
	}
	return name + ": {argv: [" + strings.Join(parts, ", ") + "]}"
}

func equalArgv(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// parseSystemText validates a rendered system file.
func parseSystemText(text, file string) (*policy.System, error) {
	return policy.ParseSystem(bytes.NewReader([]byte(text)), file)
}
