package allowgen

import (
	"fmt"
	"sort"
	"strings"

	"lda/internal/aliases"
)

// Route is what one alias, or one user's .forward, does with mail.
type Route struct {
	Kind      string // "alias" or "user"
	Name      string
	Pos       string // the alias's file:line, or the .forward's path
	OwnerOf   string
	RequestOf string
	Hops      []Hop
}

// Hop is one element of a route.
type Hop struct {
	aliases.Member
	Via          string // ":include:/a > :include:/b"
	Keep         bool   // the user's own name in their .forward: keep a copy
	Dest         *dest  // a file or program, for lda
	NotConverted string // why a program or file is not in the policy
}

// text describes the hop on one line for the routing report.
func (h Hop) text(lda string) string {
	var s string
	switch {
	case h.Keep:
		s = "keep (" + h.Value + "'s own mailbox: lda deliver -d " + h.Value + ")"
	case h.Dest != nil:
		d := h.Dest
		s = d.describe() + ", as " + d.runAs.Name
		switch {
		case d.rejected != "":
			s += " [NOT in the policy: " + d.rejected + "]"
		case d.allowedBy != "":
			s += ": " + d.deliverArgs(lda) + " [already allowed by " + d.allowedBy + "]"
		default:
			s += ": " + d.deliverArgs(lda)
		}
	case h.NotConverted != "":
		s = h.Element.String() + " [NOT converted: " + h.NotConverted + "]"
	default:
		switch h.Kind {
		case aliases.NoExpand:
			s = h.Value + " (no further alias expansion)"
		case aliases.Special:
			switch h.Value {
			case ":blackhole:":
				s = ":blackhole: (discarded, Exim)"
			case ":fail:":
				s = ":fail: " + h.Text + " (bounced, Exim)"
			case ":defer:":
				s = ":defer: " + h.Text + " (deferred, Exim)"
			default:
				s = h.Value + " (Exim)"
			}
		default:
			s = h.Element.String()
		}
	}
	if h.Via != "" {
		s += " (via " + h.Via + ")"
	}
	return sanitizeComment(s)
}

// Report is the routing report: what the MTA does, alias by alias and
// user by user. allowgen changes none of it.
func (r *Result) Report(lda string) string {
	var b strings.Builder
	for _, rt := range r.Routes {
		head := rt.Kind + " " + rt.Name + " (" + rt.Pos
		if rt.OwnerOf != "" {
			head += "; owner of list " + rt.OwnerOf + ": its errors come here"
		}
		if rt.RequestOf != "" {
			head += "; requests about list " + rt.RequestOf
		}
		head += ")"
		b.WriteString(sanitizeComment(head) + "\n")
		if len(rt.Hops) == 0 {
			b.WriteString("    (nothing)\n")
		}
		for _, h := range rt.Hops {
			b.WriteString("    -> " + h.text(lda) + "\n")
		}
	}
	return b.String()
}

// table writes the routing facts as a Postfix table (-table).
func (g *gen) table() string {
	if g.cfg.Table == "" {
		return ""
	}
	var b strings.Builder
	virtual := g.cfg.Table == "virtual"
	if virtual {
		b.WriteString("# Postfix virtual(5) table written by allowgen(8): which addresses redirect where.\n")
		b.WriteString("# Files and programs cannot be written in virtual(5): lda delivers them (see the comments).\n")
	} else {
		b.WriteString("# Postfix aliases(5) table written by allowgen(8): which addresses redirect where.\n")
		b.WriteString("# Files and programs go through lda, which checks them against its policy.\n")
	}
	keys := map[string]bool{}
	for _, rt := range g.res.Routes {
		if rt.Kind == "alias" {
			keys[rt.Name] = true
		}
	}
	qualify := func(s string) string {
		if virtual && g.cfg.Domain != "" && !strings.Contains(s, "@") {
			return s + "@" + g.cfg.Domain
		}
		return s
	}
	for _, rt := range g.res.Routes {
		key := rt.Name
		if rt.Kind == "user" && keys[key] {
			fmt.Fprintf(&b, "# %s: the .forward is not listed: an alias of the same name exists\n", sanitizeComment(key))
			continue
		}
		var rhs, notes []string
		for _, h := range rt.Hops {
			switch {
			case h.Keep:
				if virtual {
					rhs = append(rhs, qualify(h.Value))
				} else {
					rhs = append(rhs, `\`+h.Value)
				}
			case h.Dest != nil:
				d := h.Dest
				switch {
				case d.rejected != "":
					notes = append(notes, d.describe()+": left out, not in the policy: "+d.rejected)
				case virtual || rt.Kind == "user":
					notes = append(notes, d.describe()+": delivered by "+d.deliverArgs(g.cfg.LDA))
				default:
					rhs = append(rhs, aliases.Element{Kind: aliases.Program, Value: d.deliverArgs(g.cfg.LDA)}.String())
				}
			case h.NotConverted != "":
				notes = append(notes, h.Element.String()+": left out, not converted: "+h.NotConverted)
			case h.Kind == aliases.Special:
				notes = append(notes, h.Element.String()+": left out (an Exim item; Postfix has none)")
			case h.Kind == aliases.NoExpand && !virtual:
				rhs = append(rhs, h.Element.String())
			default:
				rhs = append(rhs, qualify(aliases.Element{Kind: aliases.Address, Value: h.Value, Domain: h.Domain}.String()))
			}
		}
		for _, n := range notes {
			fmt.Fprintf(&b, "# %s: %s\n", sanitizeComment(key), sanitizeComment(n))
		}
		if len(rhs) == 0 {
			continue
		}
		if virtual {
			fmt.Fprintf(&b, "%s\t%s\n", qualify(aliases.FormatKey(key)), strings.Join(rhs, ", "))
		} else {
			fmt.Fprintf(&b, "%s: %s\n", aliases.FormatKey(key), strings.Join(rhs, ", "))
		}
	}
	return b.String()
}

// summarise counts the diagnostics.
func (g *gen) summarise() {
	// Diagnostics in the order of the files they name, then by line.
	order := map[string]int{}
	for _, d := range g.res.Diags {
		if _, ok := order[d.File]; !ok {
			order[d.File] = len(order)
		}
	}
	sort.SliceStable(g.res.Diags, func(i, j int) bool {
		a, b := g.res.Diags[i], g.res.Diags[j]
		if order[a.File] != order[b.File] {
			return order[a.File] < order[b.File]
		}
		return a.Line < b.Line
	})
	for _, d := range g.res.Diags {
		if d.Severity == aliases.Error {
			g.res.Summary.Errors++
		} else {
			g.res.Summary.Warnings++
		}
	}
}

// String is the summary on a few lines.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "aliases: %d entries in %d files\n", s.Aliases, s.AliasFiles)
	fmt.Fprintf(&b, ".forward: %d users scanned, %d .forward files read, %d refused\n", s.Users, s.Forwards, s.ForwardsRefused)
	fmt.Fprintf(&b, "policy: %d lines added to the system file, %d rules in %d user files; %d destinations already allowed, %d outside the policy, %d not convertible\n",
		s.SystemAdded, s.UserRules, s.UserFiles, s.AlreadyAllowed, s.Outside, s.NotConverted)
	if s.SieveScripts > 0 || s.SieveIncomplete > 0 {
		fmt.Fprintf(&b, "sieve: %d scripts, %d not written (not fully convertible)\n", s.SieveScripts, s.SieveIncomplete)
	}
	fmt.Fprintf(&b, "%d errors, %d warnings\n", s.Errors, s.Warnings)
	return b.String()
}
