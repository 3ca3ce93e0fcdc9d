package aliases

import (
	"fmt"
	"strings"
)

// MaxIncludeDepth is how deep :include: files may nest.
const MaxIncludeDepth = 10

// Opened is an :include: file as the caller's Opener read it.
type Opened struct {
	Data []byte
	// Owner is the uid that owns the file: its programs and files run as
	// this user (as root's, they run as the default user).
	Owner int
}

// Opener opens an :include: file for ExpandIncludes. by is the element
// that names it (its File says which file asked). The Opener decides what
// may be read (allowgen refuses symlinks, files writable by group or
// others, and files not owned as it demands); its error is reported at the
// element's file:line.
type Opener func(path string, by Element) (*Opened, error)

// Member is an element reached through zero or more :include: files.
type Member struct {
	Element
	// Via is the chain of :include: elements that led here, outermost
	// first; empty for an element written in the top file.
	Via []Element
	// Owner is the uid owning the :include: file the element was read
	// from, or -1 for an element of the top file.
	Owner int
}

// ExpandIncludes follows the :include: elements of els, recursively, with
// open. It returns every other element in order, each with the chain of
// includes that led to it. A file that includes itself, directly or
// through others, is a cycle: it is reported (with the chain) and not
// followed again; so is nesting deeper than MaxIncludeDepth. opts apply to
// the included files.
func ExpandIncludes(els []Element, open Opener, opts Options) ([]Member, []Diag) {
	x := &expander{open: open, opts: opts}
	x.walk(els, nil, -1)
	return x.out, x.diags
}

type expander struct {
	open  Opener
	opts  Options
	out   []Member
	diags []Diag
}

func (x *expander) walk(els []Element, via []Element, owner int) {
	for _, e := range els {
		if e.Kind != Include {
			x.out = append(x.out, Member{Element: e, Via: via, Owner: owner})
			continue
		}
		if x.cycle(e, via) {
			continue
		}
		if len(via) >= MaxIncludeDepth {
			x.diags = append(x.diags, Diag{File: e.File, Line: e.Line, Severity: Error,
				Msg: fmt.Sprintf(":include:%s: nested deeper than %d files (not followed)", e.Value, MaxIncludeDepth)})
			continue
		}
		f, err := x.open(e.Value, e)
		if err != nil {
			x.diags = append(x.diags, Diag{File: e.File, Line: e.Line, Severity: Error, Msg: fmt.Sprintf(":include:%s: %v", e.Value, err)})
			continue
		}
		sub, diags := ParseList(f.Data, e.Value, x.opts)
		x.diags = append(x.diags, diags...)
		chain := append(append([]Element(nil), via...), e)
		x.walk(sub, chain, f.Owner)
	}
}

// cycle reports (and diagnoses) an include of a file already being read.
func (x *expander) cycle(e Element, via []Element) bool {
	for _, v := range via {
		if v.Value == e.Value {
			chain := make([]string, 0, len(via)+1)
			for _, w := range via {
				chain = append(chain, w.Value)
			}
			chain = append(chain, e.Value)
			x.diags = append(x.diags, Diag{File: e.File, Line: e.Line, Severity: Error,
				Msg: fmt.Sprintf(":include: cycle: %s (not followed again)", strings.Join(chain, " -> "))})
			return true
		}
	}
	return false
}
