package policy

// Expansion is a System's rules expanded for one user, made once by a
// caller that checks many destinations for the same user (a warm worker
// serves one user's jobs one after another). Every check expands every
// rule it tries, for the user it is asked about; with an Expansion that
// work and its allocations are done once.
//
// An Expansion is used only for the very System and User it was made for
// (compared on every use), so one made for someone else, or for a policy
// since reloaded, is ignored, never trusted: the answer is always what
// expanding afresh would give. Immutable, safe for concurrent use.
type Expansion struct {
	sys  *System
	user User
	x    map[*rule]*xpat
	def  Destination // the system's default for user, if a path
}

// Expand expands every Mbox and Maildir rule of s for u. It returns nil
// for a user that Check would refuse (see validUser), for whom nothing is
// ever expanded.
func (s *System) Expand(u User) *Expansion {
	if s == nil || validUser(u) != nil {
		return nil
	}
	e := &Expansion{sys: s, user: u, x: map[*rule]*xpat{}}
	add := func(rs ...*rule) {
		for _, r := range rs {
			if r != nil && r.pat != nil && r.x == nil && e.x[r] == nil {
				x := r.pat.expand(u.Name, u.Home)
				e.x[r] = &x
			}
		}
	}
	add(s.def)
	add(s.allow...)
	add(s.deny...)
	add(s.mayAdd...)
	if x := e.x[s.def]; x != nil {
		e.def = Destination{Kind: s.def.Kind, Path: x.path()}
	}
	return e
}

// defaultFor is r's destination for u, from e, if e was made for s and u
// and r is s's default; ok is false otherwise (the caller expands afresh).
func (e *Expansion) defaultFor(s *System, u User, r *rule) (d Destination, ok bool) {
	if !e.For(s, u) || r != s.def || e.def.Kind == 0 {
		return Destination{}, false
	}
	return e.def, true
}

// For reports whether e was made for s and u.
func (e *Expansion) For(s *System, u User) bool {
	return e != nil && e.sys == s && e.user == u
}

// expand is r expanded for u: the rule's own expansion (a user's rule),
// else p's Expansion if it was made for p's System and u, else afresh.
func (p *Policy) expand(r *rule, u User) xpat {
	if r.pat != nil && r.x == nil && p.X.For(p.Sys, u) {
		if x := p.X.x[r]; x != nil {
			return *x
		}
	}
	return r.expand(u)
}
