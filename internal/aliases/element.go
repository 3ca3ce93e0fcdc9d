package aliases

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is the kind of an element of an alias expansion, an :include: file
// or a .forward file.
type Kind int

// The element kinds.
const (
	Address  Kind = iota + 1 // user, user@domain, "quoted local"@domain
	NoExpand                 // \user: deliver to user without further expansion
	Program                  // |command or "|command with args"
	File                     // /absolute/file (a maildir if it ends in /)
	HomeFile                 // ~/file, relative to the home directory (.forward only)
	Include                  // :include:/absolute/file
	Special                  // Exim's :blackhole:, :fail: text, :defer: text, :unknown:
)

// String returns the kind's name as used in reports.
func (k Kind) String() string {
	switch k {
	case Address:
		return "address"
	case NoExpand:
		return "noexpand"
	case Program:
		return "program"
	case File:
		return "file"
	case HomeFile:
		return "homefile"
	case Include:
		return "include"
	case Special:
		return "special"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Element is one destination of an alias, an :include: file or a .forward
// file, with quoting and escapes removed.
type Element struct {
	Kind Kind
	// Value is, by kind: the local part (Address), the user name
	// (NoExpand), the command line as written after "|" (Program), the
	// absolute path (File, Include), the path after "~" (HomeFile, so it
	// begins with "/"), or the item (Special: ":blackhole:", ":fail:",
	// ":defer:" or ":unknown:").
	Value string
	// Domain is the domain of an Address ("" for a local address); a
	// domain literal keeps its brackets.
	Domain string
	// Text is the message of :fail: and :defer:.
	Text string
	// File and Line say where the element begins.
	File string
	Line int
}

// IsMaildir reports whether a File or HomeFile names a maildir: its path
// ends in "/", as in Postfix's local(8).
func (e Element) IsMaildir() bool {
	return (e.Kind == File || e.Kind == HomeFile) && strings.HasSuffix(e.Value, "/")
}

// Pos returns "file:line".
func (e Element) Pos() string { return e.File + ":" + strconv.Itoa(e.Line) }

// Same reports whether e and o are the same destination (ignoring where
// they were written).
func (e Element) Same(o Element) bool {
	return e.Kind == o.Kind && e.Value == o.Value && e.Domain == o.Domain && e.Text == o.Text
}

// Internal returns the element in Postfix's internal (unquoted) form, the
// string that local(8) classifies: "|cmd", "/file", ":include:/file",
// "user@domain". A NoExpand element loses its backslash, as in Postfix.
func (e Element) Internal() string {
	switch e.Kind {
	case Address:
		if e.Domain != "" {
			return e.Value + "@" + e.Domain
		}
		return e.Value
	case NoExpand:
		return e.Value
	case Program:
		return "|" + e.Value
	case File:
		return e.Value
	case HomeFile:
		return "~" + e.Value
	case Include:
		return ":include:" + e.Value
	case Special:
		if e.Text != "" {
			return e.Value + " " + e.Text
		}
		return e.Value
	}
	return ""
}

// String returns the element in the canonical syntax that Format writes.
func (e Element) String() string {
	switch e.Kind {
	case Address:
		s := formatLocal(e.Value)
		if e.Domain != "" {
			s += "@" + e.Domain
		}
		return s
	case NoExpand:
		return `\` + formatLocal(e.Value)
	case Program:
		if needsQuote(e.Value, true) {
			return quote("|" + e.Value)
		}
		return "|" + e.Value
	case File:
		if needsQuote(e.Value, false) {
			return quote(e.Value)
		}
		return e.Value
	case HomeFile:
		if needsQuote(e.Value, false) {
			return quote("~" + e.Value)
		}
		return "~" + e.Value
	case Include:
		if needsQuote(e.Value, false) {
			return quote(":include:" + e.Value)
		}
		return ":include:" + e.Value
	case Special:
		if e.Text != "" {
			return e.Value + " " + e.Text
		}
		return e.Value
	}
	return ""
}

// FormatElements joins elements in canonical syntax: "a, b, c".
func FormatElements(els []Element) string {
	parts := make([]string, len(els))
	for i, e := range els {
		parts[i] = e.String()
	}
	return strings.Join(parts, ", ")
}

// quote writes s as a quoted string: backslash and double quote escaped.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// needsQuote reports whether a program, path or include value must be
// written in quotes to be read back as it is.
func needsQuote(s string, program bool) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', ',', '"', '\\', '(', ')', '<', '>', ';':
			return true
		case '#':
			if program {
				return true
			}
		}
	}
	return false
}

// safeLocal reports characters that may stand unquoted in a local part.
func safeLocal(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("._+=-!$%&'*/?^`{}|~", c) >= 0 || c >= 0x80
}

// formatLocal writes a local part, quoted when it holds anything that the
// parser would read differently unquoted.
func formatLocal(s string) string {
	if s == "" {
		return `""`
	}
	switch s[0] {
	case '|', '/', '~', ':', '#', '\\':
		return quote(s)
	}
	for i := 0; i < len(s); i++ {
		if !safeLocal(s[i]) {
			return quote(s)
		}
	}
	return s
}

// isSpace is white space inside a logical line: Postfix's tokenizer treats
// space, tab, CR and LF alike.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// atomStop reports characters that end an unquoted local part or domain.
func atomStop(c byte) bool {
	return isSpace(c) || strings.IndexByte(`,"()<>;:@[]\`, c) >= 0
}

// pathStop reports characters that end an unquoted path.
func pathStop(c byte) bool {
	return isSpace(c) || strings.IndexByte(`,"()<>;`, c) >= 0
}

// Options change what the element grammar accepts.
type Options struct {
	// Home allows ~/file elements (.forward files and the :include: files
	// they name; Postfix resolves them against the user's home).
	Home bool
}

// text is a logical line: physical lines joined as Postfix's readlline
// joins them (without the newline), with the physical line of each piece.
type text struct {
	s      string
	starts []int // offset in s where each piece begins
	lines  []int // physical line of each piece
}

func (t *text) lineAt(off int) int {
	i := len(t.starts) - 1
	for i > 0 && t.starts[i] > off {
		i--
	}
	return t.lines[i]
}

// scanner reads the elements of one logical line.
type scanner struct {
	t     *text
	s     string
	pos   int
	file  string
	opts  Options
	diags *[]Diag
	out   []Element
}

func (sc *scanner) errf(off int, format string, args ...any) {
	*sc.diags = append(*sc.diags, Diag{File: sc.file, Line: sc.t.lineAt(off), Severity: Error, Msg: fmt.Sprintf(format, args...)})
}

func (sc *scanner) warnf(off int, format string, args ...any) {
	*sc.diags = append(*sc.diags, Diag{File: sc.file, Line: sc.t.lineAt(off), Severity: Warning, Msg: fmt.Sprintf(format, args...)})
}

func (sc *scanner) add(off int, e Element) {
	e.File, e.Line = sc.file, sc.t.lineAt(off)
	sc.out = append(sc.out, e)
}

// skipBlank skips white space and (possibly nested) parenthesised
// comments. It reports false after an unterminated comment.
func (sc *scanner) skipBlank() bool {
	for sc.pos < len(sc.s) {
		c := sc.s[sc.pos]
		if isSpace(c) {
			sc.pos++
			continue
		}
		if c != '(' {
			return true
		}
		start, depth := sc.pos, 0
		for sc.pos < len(sc.s) {
			c := sc.s[sc.pos]
			sc.pos++
			if c == '\\' {
				sc.pos++
				continue
			}
			if c == '(' {
				depth++
			} else if c == ')' {
				depth--
				if depth == 0 {
					break
				}
			}
		}
		if depth != 0 {
			sc.errf(start, "unterminated comment (")
			sc.pos = len(sc.s)
			return false
		}
	}
	return true
}

// list reads a comma-separated list of elements up to the end of the
// logical line.
func (sc *scanner) list() {
	after := false // an element was read and no comma followed yet
	sawComma := false
	for {
		if !sc.skipBlank() || sc.pos >= len(sc.s) {
			return
		}
		c := sc.s[sc.pos]
		if c == ',' {
			if !after && (sawComma || len(sc.out) == 0) {
				sc.warnf(sc.pos, "empty element (ignored)")
			}
			sc.pos++
			after, sawComma = false, true
			continue
		}
		if after && c != '#' {
			sc.warnf(sc.pos, "missing comma before %s: read as a separate element, as Postfix does", sc.snippet(sc.pos))
		}
		start := sc.pos
		if !sc.element() {
			sc.skipElement()
		} else if sc.pos < len(sc.s) && !isSpace(sc.s[sc.pos]) && sc.s[sc.pos] != ',' && sc.s[sc.pos] != '(' {
			sc.errf(sc.pos, "unexpected %s after %s", sc.snippet(sc.pos), sc.s[start:sc.pos])
			sc.out = sc.out[:len(sc.out)-1]
			sc.skipElement()
		}
		after = true
	}
}

// snippet quotes a few characters from off, for messages.
func (sc *scanner) snippet(off int) string {
	end := off
	for end < len(sc.s) && end-off < 24 && !isSpace(sc.s[end]) && sc.s[end] != ',' {
		end++
	}
	if end == off {
		end = off + 1
	}
	if end > len(sc.s) {
		end = len(sc.s)
	}
	return strconv.Quote(sc.s[off:end])
}

// skipElement skips to the next comma outside quotes (after an error).
func (sc *scanner) skipElement() {
	inq := false
	for sc.pos < len(sc.s) {
		c := sc.s[sc.pos]
		switch {
		case c == '\\':
			sc.pos++
		case c == '"':
			inq = !inq
		case c == ',' && !inq:
			return
		}
		sc.pos++
	}
}

// element reads one element at sc.pos. It reports false after an error,
// which it has reported.
func (sc *scanner) element() bool {
	start := sc.pos
	rest := sc.s[sc.pos:]
	c := rest[0]
	switch {
	case c == '|':
		sc.pos++
		cmd, ok := sc.rawItem(start)
		if !ok {
			return false
		}
		if cmd == "" {
			sc.errf(start, "empty command after |")
			return false
		}
		if strings.ContainsAny(cmd, " ") {
			sc.warnf(start, "unquoted command with arguments: Postfix would read each word of |%s as a separate address; quote the whole element: %s", cmd, quote("|"+cmd))
		}
		sc.add(start, Element{Kind: Program, Value: cmd})
		return true
	case c == '"':
		v, ok := sc.quoted()
		if !ok {
			return false
		}
		if sc.pos < len(sc.s) && (sc.s[sc.pos] == '@' || sc.s[sc.pos] == '.') {
			// A quoted local part that goes on: "a".b@c, "a b"@c.
			sc.pos = start
			return sc.address(start)
		}
		return sc.classifyQuoted(start, v)
	case c == '\\':
		sc.pos++
		if sc.pos >= len(sc.s) || atomStop(sc.s[sc.pos]) && sc.s[sc.pos] != '"' {
			sc.errf(start, `\ without a user name`)
			return false
		}
		name, ok := sc.local()
		if !ok {
			return false
		}
		if sc.pos < len(sc.s) && sc.s[sc.pos] == '@' {
			sc.errf(start, `\%s@...: the backslash applies to local users only`, name)
			return false
		}
		if name == "" || strings.IndexByte("|/~:", name[0]) >= 0 {
			sc.errf(start, `\%s is not a user name`, strconv.Quote(name))
			return false
		}
		sc.add(start, Element{Kind: NoExpand, Value: name})
		return true
	case len(rest) >= 9 && strings.EqualFold(rest[:9], ":include:"):
		sc.pos += 9
		var path string
		if sc.pos < len(sc.s) && sc.s[sc.pos] == '"' {
			v, ok := sc.quoted()
			if !ok {
				return false
			}
			path = v
		} else {
			path = sc.path()
		}
		if !strings.HasPrefix(path, "/") {
			sc.errf(start, ":include: needs an absolute path, found %s", strconv.Quote(path))
			return false
		}
		sc.add(start, Element{Kind: Include, Value: path})
		return true
	case c == ':':
		for _, sp := range []string{":blackhole:", ":unknown:", ":fail:", ":defer:"} {
			if strings.HasPrefix(rest, sp) {
				sc.pos += len(sp)
				e := Element{Kind: Special, Value: sp}
				if sp == ":fail:" || sp == ":defer:" {
					t, ok := sc.rawItem(start)
					if !ok {
						return false
					}
					e.Text = t
				} else if sc.pos < len(sc.s) && !pathStop(sc.s[sc.pos]) {
					break
				}
				sc.add(start, e)
				return true
			}
		}
		sc.errf(start, "unexpected %s (a special item is one of :include:, and Exim's :blackhole:, :fail:, :defer:, :unknown:)", sc.snippet(start))
		return false
	case c == '/':
		p := sc.path()
		sc.add(start, Element{Kind: File, Value: p})
		return true
	case c == '~':
		p := sc.path()
		return sc.home(start, p)
	case c == '#':
		sc.errf(start, "# after text is not a comment in aliases(5) (Postfix would read %s as an address); put comments on lines of their own", sc.snippet(start))
		sc.pos = len(sc.s)
		return false
	case c == '<' || c == '>' || c == ';' || c == ':' || c == '[' || c == ']' || c == ')' || c == '@':
		sc.errf(start, "unexpected %s (route addresses, groups and phrases are not supported)", sc.snippet(start))
		return false
	}
	return sc.address(start)
}

// home checks and adds a ~/file element.
func (sc *scanner) home(start int, p string) bool {
	if !strings.HasPrefix(p, "~/") {
		sc.errf(start, "%s: ~user/ is not supported (only ~/ of the .forward's owner)", strconv.Quote(p))
		return false
	}
	if !sc.opts.Home {
		sc.errf(start, "%s: ~/ has no home directory here (only .forward files and their :include: files have one)", strconv.Quote(p))
		return false
	}
	sc.add(start, Element{Kind: HomeFile, Value: p[1:]})
	return true
}

// classifyQuoted makes an element of a wholly quoted string.
func (sc *scanner) classifyQuoted(start int, v string) bool {
	switch {
	case v == "":
		sc.errf(start, `empty address ""`)
		return false
	case v[0] == '|':
		if v == "|" {
			sc.errf(start, "empty command after |")
			return false
		}
		sc.add(start, Element{Kind: Program, Value: v[1:]})
	case v[0] == '/':
		sc.add(start, Element{Kind: File, Value: v})
	case len(v) >= 9 && strings.EqualFold(v[:9], ":include:"):
		if !strings.HasPrefix(v[9:], "/") {
			sc.errf(start, ":include: needs an absolute path, found %s", strconv.Quote(v[9:]))
			return false
		}
		sc.add(start, Element{Kind: Include, Value: v[9:]})
	case v[0] == '~':
		return sc.home(start, v)
	default:
		sc.add(start, Element{Kind: Address, Value: v})
	}
	return true
}

// quoted reads a quoted string at sc.pos (on the opening quote) and
// returns its content: backslash escapes removed, and tab, CR and LF made
// spaces as Postfix's tokenizer does.
func (sc *scanner) quoted() (string, bool) {
	start := sc.pos
	sc.pos++
	var b strings.Builder
	for sc.pos < len(sc.s) {
		c := sc.s[sc.pos]
		sc.pos++
		switch c {
		case '"':
			return b.String(), true
		case '\\':
			if sc.pos >= len(sc.s) {
				sc.errf(start, "unterminated quoted string")
				return "", false
			}
			c = sc.s[sc.pos]
			sc.pos++
		}
		if c == '\t' || c == '\r' || c == '\n' {
			c = ' '
		}
		b.WriteByte(c)
	}
	sc.errf(start, "unterminated quoted string")
	sc.pos = len(sc.s)
	return "", false
}

// rawItem reads the rest of an item up to the next comma outside double
// quotes, as written (quotes and backslashes kept), with runs of white
// space made one space and the ends trimmed.
func (sc *scanner) rawItem(start int) (string, bool) {
	var b strings.Builder
	inq, space := false, false
	for sc.pos < len(sc.s) {
		c := sc.s[sc.pos]
		if c == ',' && !inq {
			break
		}
		sc.pos++
		if isSpace(c) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteByte(c)
		switch c {
		case '\\':
			if sc.pos < len(sc.s) {
				c = sc.s[sc.pos]
				if isSpace(c) {
					c = ' '
				}
				b.WriteByte(c)
				sc.pos++
			}
		case '"':
			inq = !inq
		}
	}
	if inq {
		sc.errf(start, "unterminated quote in %s", strconv.Quote(b.String()))
		return "", false
	}
	return b.String(), true
}

// path reads an unquoted path; a backslash quotes the next character.
func (sc *scanner) path() string {
	var b strings.Builder
	for sc.pos < len(sc.s) {
		c := sc.s[sc.pos]
		if c == '\\' && sc.pos+1 < len(sc.s) {
			sc.pos++
			c = sc.s[sc.pos]
			if c == '\t' || c == '\r' || c == '\n' {
				c = ' '
			}
		} else if pathStop(c) {
			break
		}
		b.WriteByte(c)
		sc.pos++
	}
	return b.String()
}

// local reads a local part: atoms and backslash-quoted characters, and
// quoted strings at its start or after a dot ("a b".c, a."b c").
func (sc *scanner) local() (string, bool) {
	var b strings.Builder
	start := sc.pos
	prev := byte(0) // last character read: '.', '"' (a quoted string) or other
	for sc.pos < len(sc.s) {
		c := sc.s[sc.pos]
		switch {
		case c == '"':
			if b.Len() > 0 && prev != '.' {
				sc.errf(start, "quoted string inside a word at %s (write the whole local part in quotes)", sc.snippet(start))
				return "", false
			}
			v, ok := sc.quoted()
			if !ok {
				return "", false
			}
			b.WriteString(v)
			prev = '"'
			if sc.pos < len(sc.s) && !atomStop(sc.s[sc.pos]) && sc.s[sc.pos] != '.' {
				sc.errf(start, "unexpected %s after a quoted string", sc.snippet(sc.pos))
				return "", false
			}
			continue
		case c == '\\' && sc.pos+1 < len(sc.s):
			sc.pos++
			c = sc.s[sc.pos]
			if c == '\t' || c == '\r' || c == '\n' {
				c = ' '
			}
		case atomStop(c):
			return b.String(), true
		}
		b.WriteByte(c)
		prev = c
		sc.pos++
	}
	return b.String(), true
}

// address reads local[@domain].
func (sc *scanner) address(start int) bool {
	local, ok := sc.local()
	if !ok {
		return false
	}
	if local == "" {
		sc.errf(start, "unexpected %s", sc.snippet(start))
		return false
	}
	e := Element{Kind: Address, Value: local}
	if sc.pos < len(sc.s) && sc.s[sc.pos] == '@' {
		sc.pos++
		if sc.pos < len(sc.s) && sc.s[sc.pos] == '[' {
			end := strings.IndexByte(sc.s[sc.pos:], ']')
			if end < 0 {
				sc.errf(start, "unterminated domain literal")
				return false
			}
			e.Domain = sc.s[sc.pos : sc.pos+end+1]
			sc.pos += end + 1
			if strings.ContainsAny(e.Domain[1:len(e.Domain)-1], "[\\ \t\r\n\"") {
				sc.errf(start, "bad domain literal %s", strconv.Quote(e.Domain))
				return false
			}
		} else {
			d := sc.pos
			for sc.pos < len(sc.s) && !atomStop(sc.s[sc.pos]) {
				sc.pos++
			}
			e.Domain = sc.s[d:sc.pos]
			if e.Domain == "" {
				sc.errf(start, "%s@ without a domain", local)
				return false
			}
		}
	}
	// As in Postfix, the internal form decides what an element is: "|x".y
	// is a command and "/".x a file, however they were quoted.
	full := e.Internal()
	if full[0] == '|' || full[0] == '/' || full[0] == '~' || len(full) >= 9 && strings.EqualFold(full[:9], ":include:") {
		return sc.classifyQuoted(start, full)
	}
	sc.add(start, e)
	return true
}

// checkText refuses control characters (other than tab and CR) and
// invalid UTF-8 in a logical line, before it is parsed.
func checkText(s string) (int, string) {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return i, "invalid UTF-8"
		}
		if r < 0x20 && r != '\t' && r != '\r' && r != '\n' || r == 0x7f {
			return i, fmt.Sprintf("control character %U", r)
		}
		i += n
	}
	return -1, ""
}
