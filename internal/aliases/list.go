package aliases

import (
	"bytes"
	"fmt"
	"strings"
)

// ParseList reads a list file: an :include: file, or the plain
// (non-filter) form of a .forward file. Each line is read on its own
// (there are no continuation lines): empty lines and lines whose first
// non-space character is "#" are skipped, and every other line is a
// comma-separated list of elements. Every problem is a Diag naming
// file:line; parsing goes on.
func ParseList(data []byte, file string, opts Options) ([]Element, []Diag) {
	var diags []Diag
	if len(data) > MaxFileSize {
		return nil, []Diag{{File: file, Line: 1, Severity: Error, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)}}
	}
	var out []Element
	lines := bytes.Split(data, []byte("\n"))
	for i, raw := range lines {
		l := strings.TrimRight(string(raw), "\r")
		trim := strings.TrimLeft(l, " \t\r\v\f")
		if trim == "" || trim[0] == '#' {
			continue
		}
		t := &text{s: l, starts: []int{0}, lines: []int{i + 1}}
		if off, msg := checkText(l); off >= 0 {
			diags = append(diags, Diag{File: file, Line: i + 1, Severity: Error, Msg: msg + " (line ignored)"})
			continue
		}
		sc := &scanner{t: t, s: l, file: file, opts: opts, diags: &diags}
		sc.list()
		out = append(out, sc.out...)
	}
	return out, diags
}

// FormatList writes elements as a list file, one element per line; ParseList
// reads it back to the same elements.
func FormatList(els []Element) []byte {
	var b bytes.Buffer
	for _, e := range els {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.Bytes()
}
