package policy

// Precheck answers, from the system policy alone, whether d could ever be
// allowed for u: it is allowed by the system, or not denied by the system
// and inside user_may_add (so that the user's own file might allow it).
// The LMTP listener uses it to refuse at RCPT time an instruction that can
// never succeed; the worker's Check, as the user, stays authoritative.
func (s *System) Precheck(u User, d Destination) Decision {
	p := &Policy{Sys: s}
	dec := p.Check(u, d)
	if dec.Allowed || (dec.Rule != nil && dec.Rule.Action == "deny") || (dec.Rule == nil && dec.Reason != "no rule allows "+d.String()) {
		// Allowed, denied by a system rule, or refused lexically.
		return dec
	}
	if d.Kind == Program {
		// A user may add a program only where user_may_add names it.
		for _, m := range s.mayAdd {
			if m.Kind == Program && m.Pattern == d.Program {
				return Decision{Allowed: true, Rule: m.public(), Reason: "a user's own file may allow it (" + m.String() + ")"}
			}
		}
		return dec
	}
	pc := splitPath(d.Path)
	for _, m := range s.mayAdd {
		if m.Kind != d.Kind || (d.Folder != "" && !m.folders) {
			continue
		}
		if x := m.expand(u); x.match(pc) {
			return Decision{Allowed: true, Rule: m.public(), Reason: "a user's own file may allow it (" + m.String() + ")"}
		}
	}
	return dec
}
