package allowgen

import (
	"path/filepath"
	"strings"

	"lda/internal/aliases"
	"lda/internal/forward"
	"lda/policy"
)

// userRule is one allow rule of a user's file.
type userRule struct {
	text    string
	comment string
	d       *dest
}

// userFileText writes a user's policy file.
func userFileText(fwd string, rules []userRule) string {
	var b strings.Builder
	b.WriteString(marker + " from " + sanitizeComment(fwd) + " (allowgen(8)).\n")
	b.WriteString("# Do not edit: change the .forward and run allowgen again, or remove this file.\n")
	b.WriteString("version: 1\n")
	b.WriteString("allow:\n")
	for _, r := range rules {
		b.WriteString("  - " + r.text + "  # " + r.comment + "\n")
	}
	return b.String()
}

// buildUsers decides every user's file (and Sieve script).
func (g *gen) buildUsers() {
	for _, u := range g.users {
		g.buildUser(u)
	}
}

func (g *gen) userPath(u *userState, name string, central string) (string, *home) {
	if g.cfg.Central != "" {
		return filepath.Join(g.cfg.Central, u.acct.Name+central), nil
	}
	return filepath.Join(u.acct.Home, name), u.home
}

func (g *gen) buildUser(u *userState) {
	if u.refused {
		// The .forward could not be read: the user's wishes are unknown,
		// so their files are left as they are.
		return
	}
	sys := g.finalSys
	usr := u.acct.User()
	var rules []userRule
	seen := map[string]bool{}
	for _, d := range u.dests {
		if d.kind == policy.Program && d.name == "" {
			g.programFor(d)
		}
		dd := g.checkable(d)
		dec := (&policy.Policy{Sys: sys}).Check(usr, dd)
		if dec.Allowed {
			d.allowedBy = dec.Rule.String()
			g.res.Summary.AlreadyAllowed++
			continue
		}
		if dec.Rule != nil && dec.Rule.Action == "deny" {
			d.rejected = "denied by " + dec.Rule.String()
			g.warnAt(d.srcs[0].pos, "%s is outside what %s lets %s have: %s", d.describe(), g.cfg.Policy, u.acct.Name, dec.Reason)
			g.res.Summary.Outside++
			continue
		}
		if pre := sys.Precheck(usr, dd); !pre.Allowed {
			d.rejected = pre.Reason
			g.warnAt(d.srcs[0].pos, "%s is outside what %s lets %s have: %s (it is neither allowed nor inside user_may_add)", d.describe(), g.cfg.Policy, u.acct.Name, pre.Reason)
			g.res.Summary.Outside++
			continue
		}
		if sys.UserFile == "" && g.cfg.Central == "" {
			d.rejected = "user files are disabled (user_file: \"\")"
			g.warnAt(d.srcs[0].pos, "%s: not added: %s disables user files (user_file: \"\")", d.describe(), g.cfg.Policy)
			g.res.Summary.NotConverted++
			continue
		}
		text, err := g.ruleText(d, u.acct)
		if err == nil {
			// The rule must parse in the user's file on its own.
			_, err = g.parseUser(u, []userRule{{text: text, comment: "x"}})
		}
		if err != nil {
			d.rejected = err.Error()
			g.warnAt(d.srcs[0].pos, "%s: not added to %s's file: %v", d.describe(), u.acct.Name, err)
			g.res.Summary.NotConverted++
			continue
		}
		if seen[text] {
			continue
		}
		seen[text] = true
		rules = append(rules, userRule{text: text, comment: comment(d.srcs, []string{u.acct.Name}), d: d})
	}
	userFile := sys.UserFile
	if userFile == "" {
		userFile = policy.DefaultUserFile
	}
	path, h := g.userPath(u, userFile, ".yaml")
	out := &Output{Path: path, Role: "policy of " + u.acct.Name, UID: u.acct.UID, GID: u.acct.GID, Mode: 0o644, Whole: true, home: h}
	if len(rules) > 0 {
		text := userFileText(u.file, rules)
		if _, err := g.parseUser(u, nil, text); err != nil {
			g.diag(path, 0, aliases.Error, "internal error: the generated file does not parse: %v", err)
			return
		}
		out.Content = []byte(text)
		g.res.Summary.UserRules += len(rules)
		g.res.Summary.UserFiles++
	}
	g.place(out)
	if g.cfg.Sieve && u.fwd != nil && u.fwd.Format == forward.List {
		g.buildSieve(u)
	}
}

// place reads what is at an output's path and records the output: a file
// to write, or a stale generated file to remove. Without content, a file
// that allowgen did not write is left alone and not mentioned.
func (g *gen) place(o *Output) {
	o.Old = readExisting(o.home, o.Path, o.Whole)
	if o.Content == nil && (!o.Old.exists || o.Old.refuse != "") {
		return
	}
	g.addOutput(o)
}

// addOutput records an output, reporting a file that may not be replaced.
func (g *gen) addOutput(o *Output) {
	if r := o.Refused(); r != "" {
		g.diag(o.Path, 0, aliases.Error, "not written: %s", r)
	}
	g.res.Outputs = append(g.res.Outputs, o)
}

// parseUser validates a user file made of rules (or the given text)
// against the generated system file.
func (g *gen) parseUser(u *userState, rules []userRule, text ...string) (*policy.UserPolicy, error) {
	t := ""
	if len(text) > 0 {
		t = text[0]
	} else {
		t = userFileText(u.file, rules)
	}
	return policy.ParseUser(strings.NewReader(t), filepath.Join(u.acct.Home, ".lda.yaml"), g.finalSys, u.acct.User())
}

func quoteSieve(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
}
