package aliases

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MaxFileSize is the largest aliases, :include: or .forward file read.
const MaxFileSize = 16 << 20

// Severity of a diagnostic.
type Severity int

// The severities. An Error means that something written in the file was
// not understood and was left out; a Warning that it was understood, but
// probably not as its writer meant or not as every MTA reads it.
const (
	Warning Severity = iota + 1
	Error
)

func (s Severity) String() string {
	if s == Error {
		return "error"
	}
	return "warning"
}

// Diag is one problem found in a file.
type Diag struct {
	File     string
	Line     int
	Severity Severity
	Msg      string
}

// String returns "FILE:LINE: error: text".
func (d Diag) String() string {
	if d.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", d.File, d.Line, d.Severity, d.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", d.File, d.Severity, d.Msg)
}

// Errors counts the diagnostics of severity Error.
func Errors(ds []Diag) int {
	n := 0
	for _, d := range ds {
		if d.Severity == Error {
			n++
		}
	}
	return n
}

// Entry is one alias: a key and its expansion.
type Entry struct {
	// Key is the name, unquoted and folded to lower case (ASCII), as
	// Postfix and sendmail look it up.
	Key string
	// Elements is the expansion, in order, with :include: elements not
	// yet followed (see ExpandIncludes).
	Elements []Element
	File     string
	Line     int
	// OwnerOf is set for an owner-NAME alias: the list NAME whose errors
	// go to this alias (sendmail and Postfix use it as the envelope sender
	// when they expand NAME).
	OwnerOf string
	// RequestOf is set for a NAME-request alias: where requests about the
	// list NAME go, by convention.
	RequestOf string
}

// Pos returns "file:line".
func (e *Entry) Pos() string { return e.File + ":" + strconv.Itoa(e.Line) }

// Aliases is a parsed aliases file.
type Aliases struct {
	File    string
	Entries []*Entry // in file order; a duplicate key keeps its first entry
	Diags   []Diag   // in file order
	byKey   map[string]*Entry
}

// Lookup returns the entry for key (folded to lower case), or nil.
func (a *Aliases) Lookup(key string) *Entry { return a.byKey[FoldKey(key)] }

// FoldKey folds ASCII letters to lower case, as Postfix's postalias does.
func FoldKey(k string) string {
	b := []byte(k)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// logicalLines splits data into logical lines the way Postfix's readlline
// does: empty and white-space-only lines and lines whose first non-space
// character is "#" are skipped; a line that begins with white space
// continues the logical line before it, joined without the newline (so its
// leading white space separates it). A continuation with nothing to
// continue is reported and skipped.
func logicalLines(data []byte, file string, diags *[]Diag) []*text {
	var out []*text
	var cur *text
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	for i, raw := range lines {
		n := i + 1
		l := string(raw)
		trim := strings.TrimLeft(l, " \t\r\v\f")
		if trim == "" || trim[0] == '#' {
			continue
		}
		if l[0] == ' ' || l[0] == '\t' || l[0] == '\r' || l[0] == '\v' || l[0] == '\f' {
			if cur == nil {
				*diags = append(*diags, Diag{File: file, Line: n, Severity: Error, Msg: "continuation line (beginning with white space) with no entry before it"})
				continue
			}
			cur.starts = append(cur.starts, len(cur.s))
			cur.lines = append(cur.lines, n)
			cur.s += l
			continue
		}
		cur = &text{s: l, starts: []int{0}, lines: []int{n}}
		out = append(out, cur)
	}
	return out
}

// Parse reads an aliases file (aliases(5) of sendmail and Postfix; see the
// package documentation for the grammar). It never fails: every problem
// is a Diag naming file:line, and parsing goes on with the next entry.
func Parse(data []byte, file string) *Aliases {
	a := &Aliases{File: file, byKey: map[string]*Entry{}}
	if len(data) > MaxFileSize {
		a.Diags = append(a.Diags, Diag{File: file, Line: 1, Severity: Error, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)})
		return a
	}
	for _, t := range logicalLines(data, file, &a.Diags) {
		if e := parseEntry(t, file, &a.Diags); e != nil {
			if first := a.byKey[e.Key]; first != nil {
				a.Diags = append(a.Diags, Diag{File: file, Line: e.Line, Severity: Error,
					Msg: fmt.Sprintf("duplicate key %s (first at line %d): this entry is ignored, as Postfix does (sendmail would use the last)", strconv.Quote(e.Key), first.Line)})
				continue
			}
			a.byKey[e.Key] = e
			a.Entries = append(a.Entries, e)
		}
	}
	// The owner- and -request conventions.
	for _, e := range a.Entries {
		if l, ok := strings.CutPrefix(e.Key, "owner-"); ok && l != "" {
			e.OwnerOf = l
			if a.byKey[l] == nil {
				a.Diags = append(a.Diags, Diag{File: file, Line: e.Line, Severity: Warning, Msg: fmt.Sprintf("%s: there is no list %s for it to own", e.Key, strconv.Quote(l))})
			}
		}
		if l, ok := strings.CutSuffix(e.Key, "-request"); ok && l != "" {
			e.RequestOf = l
			if a.byKey[l] == nil {
				a.Diags = append(a.Diags, Diag{File: file, Line: e.Line, Severity: Warning, Msg: fmt.Sprintf("%s: there is no list %s for it to take requests for", e.Key, strconv.Quote(l))})
			}
		}
	}
	sort.SliceStable(a.Diags, func(i, j int) bool { return a.Diags[i].Line < a.Diags[j].Line })
	return a
}

// parseEntry parses "key: elements".
func parseEntry(t *text, file string, diags *[]Diag) *Entry {
	line := t.lines[0]
	if off, msg := checkText(t.s); off >= 0 {
		*diags = append(*diags, Diag{File: file, Line: t.lineAt(off), Severity: Error, Msg: msg + " (entry ignored)"})
		return nil
	}
	sc := &scanner{t: t, s: t.s, file: file, diags: diags}
	key, ok := sc.key()
	if !ok {
		return nil
	}
	e := &Entry{Key: FoldKey(key), File: file, Line: line}
	before := len(*diags)
	sc.list()
	e.Elements = sc.out
	if len(e.Elements) == 0 {
		if Errors((*diags)[before:]) == 0 {
			sc.errf(sc.pos, "%s has no destinations (need name: value)", strconv.Quote(key))
		}
		return nil
	}
	return e
}

// key reads the key and the colon after it.
func (sc *scanner) key() (string, bool) {
	start := sc.pos
	var key string
	if sc.s[0] == '"' {
		v, ok := sc.quoted()
		if !ok {
			return "", false
		}
		key = v
	} else {
		var b strings.Builder
		for sc.pos < len(sc.s) {
			c := sc.s[sc.pos]
			if c == '\\' && sc.pos+1 < len(sc.s) {
				sc.pos++
				if c = sc.s[sc.pos]; isSpace(c) {
					c = ' '
				}
			} else if c == ':' || isSpace(c) || strings.IndexByte(`,"()<>;[]`, c) >= 0 {
				break
			}
			b.WriteByte(c)
			sc.pos++
		}
		key = b.String()
	}
	if !sc.skipBlank() {
		return "", false
	}
	if sc.pos >= len(sc.s) || sc.s[sc.pos] != ':' {
		if sc.pos < len(sc.s) && key != "" && strings.IndexByte(sc.s[sc.pos:], ':') > 0 && (isSpace(sc.s[sc.pos-1]) || sc.s[sc.pos] == '"') {
			sc.errf(start, "key %s is followed by %s: a key is one name (quote a name with white space)", strconv.Quote(key), sc.snippet(sc.pos))
		} else {
			sc.errf(start, "need name: value, found %s", sc.snippet(start))
		}
		return "", false
	}
	sc.pos++
	switch {
	case key == "":
		sc.errf(start, "empty name before :")
		return "", false
	case strings.ContainsAny(key, "@%"):
		sc.errf(start, "name %s must be local (no @ or %%)", strconv.Quote(key))
		return "", false
	}
	return key, true
}

// Format writes the entries in canonical syntax, one per line: the key
// (quoted if needed), ": ", and the elements joined by ", ". Parse reads
// the result back to the same keys and elements.
func Format(entries []*Entry) []byte {
	var b bytes.Buffer
	for _, e := range entries {
		b.WriteString(FormatKey(e.Key))
		b.WriteString(": ")
		b.WriteString(FormatElements(e.Elements))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// FormatKey writes a key, quoted when it holds anything but letters,
// digits, ".", "_", "+", "=", "-" and non-ASCII characters.
func FormatKey(k string) string {
	if k == "" {
		return `""`
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._+=-", c) >= 0 || c >= 0x80) {
			return quote(k)
		}
	}
	return k
}
