package policy

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Policy is the effective policy for one delivery: the system's, and the
// recipient's own file if there is one.
type Policy struct {
	Sys  *System
	User *UserPolicy // may be nil
	// X, if not nil, is Sys expanded for the user (System.Expand); it is
	// used only if it was made for Sys and the user being checked.
	X *Expansion
}

func refuse(format string, args ...any) Decision {
	return Decision{Reason: "refused: " + fmt.Sprintf(format, args...)}
}

// Check decides whether u may receive into d. See the package
// documentation for the order of the checks. Check is pure: it makes no
// system call.
func (p *Policy) Check(u User, d Destination) Decision {
	if p == nil || p.Sys == nil {
		return refuse("no system policy")
	}
	sys, up := p.Sys, p.User
	// 1. Lexical checks, before any rule.
	if err := validUser(u); err != nil {
		return refuse("invalid user: %v", err)
	}
	if up != nil && up.user != u {
		return refuse("the user policy %s was read for user %s, not %s", quote(up.File), quote(up.user.Name), quote(u.Name))
	}
	var pc []string
	switch d.Kind {
	case Mbox, Maildir:
		if err := ValidPath(d.Path); err != nil {
			return refuse("%v", err)
		}
		if d.Program != "" {
			return refuse("a %s destination names no program", d.Kind)
		}
		if d.Folder != "" {
			if d.Kind == Mbox {
				return refuse("an mbox has no folders")
			}
			if err := ValidFolder(d.Folder); err != nil {
				return refuse("%v", err)
			}
		}
		pc = splitPath(d.Path)
	case Program:
		if d.Path != "" || d.Folder != "" {
			return refuse("a program destination has no path or folder")
		}
		if err := ValidProgramName(d.Program); err != nil {
			return refuse("%v", err)
		}
		if sys.programs[d.Program] == nil {
			return refuse("program %s is not defined in %s", quote(d.Program), sys.File)
		}
	default:
		return refuse("invalid destination kind %d", int(d.Kind))
	}
	match := func(r *rule) bool {
		if r.Kind != d.Kind {
			return false
		}
		if d.Kind == Program {
			return r.Pattern == d.Program
		}
		x := p.expand(r, u)
		return x.match(pc)
	}
	// 2. The user's deny rules.
	if up != nil {
		for _, r := range up.deny {
			if match(r) {
				return Decision{Rule: r.public(), Reason: r.text().deniedBy}
			}
		}
	}
	// 3. The system's deny rules.
	for _, r := range sys.deny {
		if match(r) {
			return Decision{Rule: r.public(), Reason: r.text().deniedBy}
		}
	}
	// 4. The system's allow rules.
	var noFolders *rule
	for _, r := range sys.allow {
		if !match(r) {
			continue
		}
		if d.Folder != "" && !r.folders {
			if noFolders == nil {
				noFolders = r
			}
			continue
		}
		return p.allow(u, d, r, r)
	}
	// 5. The user's allow rules, each re-checked against user_may_add,
	// whose rule supplies the trusted Root.
	if up != nil {
		for _, r := range up.allow {
			if !match(r) {
				continue
			}
			if d.Folder != "" && !r.folders {
				if noFolders == nil {
					noFolders = r
				}
				continue
			}
			for _, m := range sys.mayAdd {
				if match(m) && (d.Folder == "" || m.folders) {
					return p.allow(u, d, r, m)
				}
			}
		}
	}
	// 6. Nothing allows it.
	if noFolders != nil {
		return Decision{Rule: noFolders.public(), Reason: fmt.Sprintf("refused: %s matches but admits no Maildir++ folders", noFolders.String())}
	}
	return Decision{Reason: "no rule allows " + d.String()}
}

// allow builds the decision for d allowed by r, with the Root taken from
// the administrator's rule m (m == r for a system rule; the user_may_add
// rule for a user's rule).
func (p *Policy) allow(u User, d Destination, r, m *rule) Decision {
	sys := p.Sys
	dec := Decision{Allowed: true, Rule: r.public(), Reason: r.text().allowedBy}
	if r != m {
		dec.Reason += " (within " + m.String() + ")"
	}
	if d.Kind == Program {
		dec.Program = sys.programs[d.Program].spec(u.Name)
		return dec
	}
	x := p.expand(m, u)
	rel, err := relBeneath(x.root, d.Path)
	if err != nil {
		// Cannot happen for a matching rule; fail closed all the same.
		return Decision{Rule: r.public(), Reason: "refused: internal error: " + err.Error(), Internal: true}
	}
	dec.Root, dec.Rel = x.root, rel
	switch d.Kind {
	case Mbox:
		dec.Create = sys.mboxCreate
	case Maildir:
		dec.Create = sys.maildirCreate
		dec.CreateFolders = sys.maildirCreateFolders && r.folders && m.folders
	}
	return dec
}

// relBeneath returns p relative to root, and checks every promise of
// Decision.Rel.
func relBeneath(root, p string) (string, error) {
	if root == "/" || ValidPath(root) != nil {
		return "", fmt.Errorf("bad root %s", quote(root))
	}
	rel, ok := strings.CutPrefix(p, root+"/")
	if !ok || rel == "" || rel == "." || strings.HasPrefix(rel, "/") {
		return "", fmt.Errorf("%s is not beneath %s", quote(p), quote(root))
	}
	for rest, more := rel, true; more; {
		var c string
		c, rest, more = strings.Cut(rest, "/")
		if c == "" || c == "." || c == ".." {
			return "", fmt.Errorf("%s is not beneath %s", quote(p), quote(root))
		}
	}
	if filepath.Join(root, rel) != p {
		return "", fmt.Errorf("%s is not beneath %s", quote(p), quote(root))
	}
	return rel, nil
}

// Default returns the effective default destination of u (the user's own
// default if their file sets one, else the system's) and its decision.
func (p *Policy) Default(u User) (Destination, Decision) {
	if p == nil || p.Sys == nil || p.Sys.def == nil {
		return Destination{}, refuse("no system policy")
	}
	r := p.Sys.def
	if err := validUser(u); err != nil {
		return Destination{Kind: r.Kind}, refuse("invalid user: %v", err)
	}
	if up := p.User; up != nil {
		if up.user != u {
			return Destination{Kind: r.Kind}, refuse("the user policy %s was read for user %s, not %s", quote(up.File), quote(up.user.Name), quote(u.Name))
		}
		if up.def != nil {
			r = up.def
		}
	}
	d, ok := p.X.defaultFor(p.Sys, u, r)
	if !ok {
		d = r.destination(u)
	}
	dec := p.Check(u, d)
	dec.Reason = r.text().defaultFrom + dec.Reason
	return d, dec
}
