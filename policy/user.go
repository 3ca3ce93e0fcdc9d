package policy

import (
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// UserPolicy is a user's own policy file, parsed for one user against one
// system policy. It only narrows what the system allows (deny), adds where
// the system's user_may_add lets it (allow), and may choose the default
// destination.
type UserPolicy struct {
	File string

	user  User
	def   *rule
	allow []*rule
	deny  []*rule
}

type userDoc struct {
	Version yaml.Node `yaml:"version"`
	Default yaml.Node `yaml:"default"`
	Deny    yaml.Node `yaml:"deny"`
	Allow   yaml.Node `yaml:"allow"`
}

// ParseUser parses a user's own file. Every allow rule must lie within what
// the system file lets users add (user_may_add), else it is an error with
// file:line; so are contradictions: a rule both allowed and denied, a
// default that is not allowed, a deny of the effective default without a
// default of one's own. Every error is a *ParseError.
func ParseUser(r io.Reader, filename string, sys *System, u User) (*UserPolicy, error) {
	if sys == nil {
		return nil, &ParseError{File: filename, Msg: "no system policy"}
	}
	if sys.UserFile == "" {
		return nil, &ParseError{File: filename, Msg: fmt.Sprintf("per-user policy files are disabled by %s (user_file: \"\")", sys.File)}
	}
	if err := validUser(u); err != nil {
		return nil, &ParseError{File: filename, Msg: "invalid user: " + err.Error()}
	}
	data, err := readLimited(r, filename)
	if err != nil {
		return nil, err
	}
	var doc userDoc
	if err := decodeStrict(data, filename, &doc); err != nil {
		return nil, err
	}
	w := &walker{file: filename, user: &u}
	if err := w.version(&doc.Version); err != nil {
		return nil, err
	}
	up := &UserPolicy{File: filename, user: u}
	if n := &doc.Deny; present(n) {
		if up.deny, err = w.rules(n, "user", "deny", sys.programs, false); err != nil {
			return nil, err
		}
	}
	if n := &doc.Allow; present(n) {
		if up.allow, err = w.rules(n, "user", "allow", sys.programs, false); err != nil {
			return nil, err
		}
		for _, r := range up.allow {
			if err := w.withinMayAdd(sys, r, u); err != nil {
				return nil, err
			}
		}
	}
	if err := w.contradictions(up.allow, up.deny, func(r *rule) string { return ruleKey(r, r.expand(u)) }); err != nil {
		return nil, err
	}
	if n := &doc.Default; present(n) {
		if up.def, err = w.rule(n, "user", "default", sys.programs, false); err != nil {
			return nil, err
		}
	}
	p := &Policy{Sys: sys, User: up}
	if up.def != nil {
		d := up.def.destination(u)
		if dec := p.Check(u, d); !dec.Allowed {
			return nil, &ParseError{File: filename, Line: up.def.Line, Msg: fmt.Sprintf("default %s is not allowed: %s", d, dec.Reason)}
		}
	} else {
		d := sys.def.destination(u)
		dec := p.Check(u, d)
		if !dec.Allowed && dec.Rule != nil && dec.Rule.Source == "user" {
			return nil, &ParseError{File: filename, Line: dec.Rule.Line, Msg: fmt.Sprintf("deny %s %s denies the default destination %s (from %s:%d) and this file sets no default: of its own",
				dec.Rule.Kind, quote(dec.Rule.Pattern), d, sys.def.File, sys.def.Line)}
		}
	}
	return up, nil
}

// withinMayAdd checks that every destination r allows is one that some
// user_may_add rule allows too.
func (w *walker) withinMayAdd(sys *System, r *rule, u User) error {
	folderHint := false
	for _, m := range sys.mayAdd {
		if m.Kind != r.Kind {
			continue
		}
		if r.Kind == Program {
			if m.Pattern == r.Pattern {
				return nil
			}
			continue
		}
		mx := m.expand(u)
		if !includes(&mx, r.x) {
			continue
		}
		if r.folders && !m.folders {
			folderHint = true
			continue
		}
		return nil
	}
	msg := fmt.Sprintf("allow %s %s is outside what %s lets users add (user_may_add)", r.Kind, quote(r.Pattern), sys.File)
	switch {
	case len(sys.mayAdd) == 0:
		msg = fmt.Sprintf("allow %s %s: %s lets users add nothing (it has no user_may_add)", r.Kind, quote(r.Pattern), sys.File)
	case folderHint:
		msg += "; the matching user_may_add rule admits no folders: add folders: false"
	}
	return &ParseError{File: w.file, Line: r.Line, Msg: msg}
}

// destination is the destination a default rule names for u.
func (r *rule) destination(u User) Destination {
	if r.Kind == Program {
		return Destination{Kind: Program, Program: r.Pattern}
	}
	x := r.expand(u)
	return Destination{Kind: r.Kind, Path: x.path()}
}

// Rules returns a copy of every rule of the user's file: the default, then
// allow and deny, in file order.
func (up *UserPolicy) Rules() []Rule {
	var out []Rule
	if up.def != nil {
		out = append(out, up.def.Rule)
	}
	for _, list := range [][]*rule{up.allow, up.deny} {
		for _, r := range list {
			out = append(out, r.Rule)
		}
	}
	return out
}
