package sieve

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/foxcpp/go-sieve/interp"
	"github.com/foxcpp/go-sieve/lexer"
	"github.com/foxcpp/go-sieve/parser"
)

// Script is a loaded, checked script.
type Script struct {
	Name string // as given to Load; names the script in errors

	s            *interp.Script
	extensions   []string
	messageTests bool // the source contains a test that reads the message
}

// Extensions are the extensions this package supports: go-sieve's, less
// the testing one.
var Extensions = []string{
	"body", "comparator-i;ascii-casemap", "comparator-i;ascii-numeric",
	"comparator-i;octet", "comparator-i;unicode-casemap", "copy",
	"encoded-character", "envelope", "environment", "ereject", "fileinto",
	"imap4flags", "reject", "relational", "subaddress", "variables",
}

// messageTestNames are the tests that read the message.
var messageTestNames = map[string]bool{
	"header": true, "address": true, "exists": true, "size": true, "body": true,
}

// LoadError is a script that cannot be loaded. Its text names the script and,
// when known, the line.
type LoadError struct {
	Name string
	Line int // 0 if unknown
	Err  error
}

// Error is one line: it goes into the user's log file.
func (e *LoadError) Error() string {
	if e.Line > 0 {
		return oneLine(fmt.Sprintf("sieve: script %s: line %d: %v", strconv.Quote(e.Name), e.Line, e.Err))
	}
	return oneLine(fmt.Sprintf("sieve: script %s: %v", strconv.Quote(e.Name), e.Err))
}

func (e *LoadError) Unwrap() error { return e.Err }

// Load reads and compiles a script of at most lim.MaxScriptSize bytes. Its
// errors are *LoadError, except a read error of r, which is returned
// wrapped as is (the caller decides whether it is temporary).
func Load(r io.Reader, name string, lim Limits) (*Script, error) {
	lim = lim.WithDefaults()
	src, err := io.ReadAll(io.LimitReader(r, lim.MaxScriptSize+1))
	if err != nil {
		return nil, fmt.Errorf("sieve: reading script %s: %w", strconv.Quote(name), err)
	}
	lerr := func(line int, format string, args ...any) error {
		return &LoadError{Name: name, Line: line, Err: fmt.Errorf(format, args...)}
	}
	if int64(len(src)) > lim.MaxScriptSize {
		return nil, lerr(0, "script larger than %d bytes", lim.MaxScriptSize)
	}
	if !utf8.Valid(src) {
		return nil, lerr(lineOfInvalidUTF8(src), "script is not valid UTF-8")
	}
	toks, err := lexer.Lex(bytes.NewReader(src), &lexer.Options{MaxTokens: MaxTokens})
	if err != nil {
		return nil, posError(name, err)
	}
	cmds, err := parser.Parse(lexer.NewStream(toks), &parser.Options{
		MaxBlockNesting: MaxNesting,
		MaxTestNesting:  MaxNesting,
	})
	if err != nil {
		return nil, posError(name, err)
	}
	sc := &Script{Name: name}
	vars := map[string]bool{}
	if err := sc.check(cmds, vars); err != nil {
		return nil, err
	}
	if len(vars) > MaxVariables {
		return nil, lerr(0, "more than %d variables", MaxVariables)
	}
	s, err := interp.LoadScript(cmds, &interp.Options{
		// Redirects are counted, per distinct address, by Run; go-sieve's
		// own check (on every redirect, duplicates included, after the
		// action is recorded) must not fire first.
		MaxRedirects:       1 << 30,
		MaxVariableCount:   MaxVariables,
		MaxVariableNameLen: MaxVariableNameLen,
		MaxVariableLen:     MaxVariableLen,
		SubAddressSep:      "+",
	})
	if err != nil {
		return nil, posError(name, err)
	}
	sc.s = s
	sc.extensions = s.Extensions()
	sort.Strings(sc.extensions)
	return sc, nil
}

// ScriptExtensions returns the extensions the script requires, sorted.
func (s *Script) ScriptExtensions() []string { return append([]string(nil), s.extensions...) }

// MayReadMessage reports whether the script contains a test that reads the
// message (header, address, exists, size, body). RunEnvelope does not rely
// on it: it watches what a run actually reads.
func (s *Script) MayReadMessage() bool { return s.messageTests }

// check walks the syntax tree: it refuses unsupported extensions with their
// line, counts the variables the script sets and notes message tests.
func (s *Script) check(cmds []parser.Cmd, vars map[string]bool) error {
	for _, c := range cmds {
		id := strings.ToLower(c.Id)
		switch id {
		case "require":
			for _, a := range c.Args {
				for _, ext := range stringsOf(a) {
					if !supported(ext) {
						return &LoadError{Name: s.Name, Line: c.Line, Err: fmt.Errorf("unsupported extension %s", strconv.Quote(ext))}
					}
				}
			}
		case "set":
			// set [modifiers] <name: string> <value: string>
			var pos []string
			for _, a := range c.Args {
				if sa, ok := a.(parser.StringArg); ok {
					pos = append(pos, sa.Value)
				}
			}
			if len(pos) == 2 {
				vars[strings.ToLower(pos[0])] = true
			}
		case "setflag", "addflag", "removeflag":
			// The two-argument form names a variable.
			n := 0
			var first string
			for _, a := range c.Args {
				if v := stringsOf(a); v != nil {
					if n == 0 && len(v) == 1 {
						first = v[0]
					}
					n++
				}
			}
			if n == 2 {
				vars[strings.ToLower(first)] = true
			}
		}
		if err := s.checkTests(c.Tests); err != nil {
			return err
		}
		if err := s.check(c.Block, vars); err != nil {
			return err
		}
	}
	return nil
}

func (s *Script) checkTests(tests []parser.Test) error {
	for i := range tests {
		t := &tests[i]
		if messageTestNames[strings.ToLower(t.Id)] {
			s.messageTests = true
		}
		fixOctetKeys(t)
		if err := s.checkTests(t.Tests); err != nil {
			return err
		}
	}
	return nil
}

// fixOctetKeys works around go-sieve matching with rsc.io/binaryregexp
// for the i;octet and i;ascii-casemap comparators: it reads the pattern as
// runes and the value as bytes, so a non-ASCII key such as "é" (the rune
// U+00E9) looks for the byte 0xE9 and never matches UTF-8 text. This
// happens for :matches in every test and for every match type of the body
// test. The literal keys of those tests are rewritten so that each byte of
// their UTF-8 encoding becomes the rune of the same value, which
// binaryregexp then matches byte for byte. Keys built from variables at
// runtime are not covered.
func fixOctetKeys(t *parser.Test) {
	id := strings.ToLower(t.Id)
	match, comparator := "is", "i;ascii-casemap"
	keyArg := -1
	for i := 0; i < len(t.Args); i++ {
		switch a := t.Args[i].(type) {
		case parser.TagArg:
			switch v := strings.ToLower(a.Value); v {
			case "is", "contains", "matches":
				match = v
			case "value", "count":
				match = v
				i++ // the relational operator
			case "comparator":
				if i+1 < len(t.Args) {
					if c := stringsOf(t.Args[i+1]); len(c) == 1 {
						comparator = strings.ToLower(c[0])
					}
				}
				i++
			}
		case parser.StringArg, parser.StringListArg:
			keyArg = i
		}
	}
	if keyArg < 0 || (comparator != "i;octet" && comparator != "i;ascii-casemap") {
		return
	}
	if !(match == "matches" || (id == "body" && (match == "is" || match == "contains"))) {
		return
	}
	switch a := t.Args[keyArg].(type) {
	case parser.StringArg:
		a.Value = bytesAsRunes(a.Value)
		t.Args[keyArg] = a
	case parser.StringListArg:
		v := make([]string, len(a.Value))
		for i, k := range a.Value {
			v[i] = bytesAsRunes(k)
		}
		a.Value = v
		t.Args[keyArg] = a
	}
}

// bytesAsRunes maps each byte of s to the rune of the same value.
func bytesAsRunes(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteRune(rune(s[i]))
	}
	return b.String()
}

func stringsOf(a parser.Arg) []string {
	switch v := a.(type) {
	case parser.StringArg:
		return []string{v.Value}
	case parser.StringListArg:
		return v.Value
	}
	return nil
}

func supported(ext string) bool {
	i := sort.SearchStrings(Extensions, ext)
	return i < len(Extensions) && Extensions[i] == ext
}

// posError turns a go-sieve error into a LoadError, moving a leading
// "line:col: " into Line.
func posError(name string, err error) error {
	msg := err.Error()
	// go-sieve wraps as "LoadCmd if: LoadTest: 3:5: text"; find "N:M: ".
	for i := 0; i < len(msg); i++ {
		if msg[i] < '0' || msg[i] > '9' || (i > 0 && msg[i-1] >= '0' && msg[i-1] <= '9') {
			continue
		}
		j := i
		for j < len(msg) && msg[j] >= '0' && msg[j] <= '9' {
			j++
		}
		if j < len(msg) && msg[j] == ':' {
			k := j + 1
			for k < len(msg) && msg[k] >= '0' && msg[k] <= '9' {
				k++
			}
			if k > j+1 && strings.HasPrefix(msg[k:], ": ") {
				line, _ := strconv.Atoi(msg[i:j])
				text := strings.TrimSpace(msg[:i] + msg[k+2:])
				return &LoadError{Name: name, Line: line, Err: errors.New(text)}
			}
		}
	}
	return &LoadError{Name: name, Err: err}
}

func lineOfInvalidUTF8(src []byte) int {
	line := 1
	for len(src) > 0 {
		r, n := utf8.DecodeRune(src)
		if r == utf8.RuneError && n <= 1 {
			return line
		}
		if r == '\n' {
			line++
		}
		src = src[n:]
	}
	return 0
}
