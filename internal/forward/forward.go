package forward

import (
	"bytes"
	"regexp"
	"strings"

	"lda/internal/aliases"
)

// Format is what a .forward file turned out to be.
type Format int

// The formats.
const (
	// List is the plain form that sendmail, Postfix and Exim share: a
	// list of elements (aliases.ParseList).
	List Format = iota + 1
	// EximFilter is an Exim filter file: its first line begins with
	// "# Exim filter". It is recognised and reported, never read as a
	// list.
	EximFilter
	// Sieve is a Sieve script: Exim's "# Sieve filter" first line, or a
	// file whose first statement is a Sieve command such as require,
	// if, keep; or fileinto "x";. It is recognised and reported.
	Sieve
)

func (f Format) String() string {
	switch f {
	case List:
		return "list"
	case EximFilter:
		return "Exim filter"
	case Sieve:
		return "Sieve script"
	}
	return "unknown"
}

// File is a parsed .forward file.
type File struct {
	Name     string
	Format   Format
	Elements []aliases.Element // List only, with :include: not yet followed
	Diags    []aliases.Diag
}

var (
	eximMarker  = regexp.MustCompile(`(?i)^#\s*exim\s+filter`)
	sieveMarker = regexp.MustCompile(`(?i)^#\s*sieve\s+filter`)
	// A first statement that is Sieve and cannot be a .forward list:
	// .forward elements contain no ";", no "[" and no ":tag" after a
	// space, and no bare "{".
	sieveStart = regexp.MustCompile(`^(?:require\s*[\["]|if\s+(?:not\s+|allof\s*\(|anyof\s*\(|header\s|address\s|envelope\s|exists\s|size\s|true\b|false\b)|(?:keep|discard|stop)\s*;|(?:fileinto|redirect|reject|vacation|notify)\s+(?:"|:[a-z]|text:)|/\*)`)
)

// Parse reads a .forward file. It recognises Exim filter files and Sieve
// scripts by their first line (and a Sieve script also by its first
// statement) and reports them; anything else is read as a list, with ~/
// allowed. Every problem is a Diag naming name:line.
func Parse(data []byte, name string) *File {
	f := &File{Name: name}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	first, _, _ := bytes.Cut(data, []byte("\n"))
	firstLine := strings.TrimSpace(string(first))
	switch {
	case eximMarker.MatchString(firstLine):
		f.Format = EximFilter
		f.Diags = append(f.Diags, aliases.Diag{File: name, Line: 1, Severity: aliases.Error,
			Msg: "an Exim filter file (# Exim filter): not a list of destinations; it is not converted (rewrite it in Sieve by hand)"})
		return f
	case sieveMarker.MatchString(firstLine):
		f.Format = Sieve
		f.Diags = append(f.Diags, aliases.Diag{File: name, Line: 1, Severity: aliases.Error,
			Msg: "a Sieve script (# Sieve filter): not a list of destinations; it is not converted (install it as the user's Sieve script)"})
		return f
	}
	for i, l := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if sieveStart.MatchString(t) {
			f.Format = Sieve
			f.Diags = append(f.Diags, aliases.Diag{File: name, Line: i + 1, Severity: aliases.Error,
				Msg: "a Sieve script (it begins with a Sieve command): not a list of destinations; it is not converted (install it as the user's Sieve script)"})
			return f
		}
		break
	}
	f.Format = List
	f.Elements, f.Diags = aliases.ParseList(data, name, aliases.Options{Home: true})
	return f
}
