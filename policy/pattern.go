package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A pattern is compiled once from the file and expanded for a user (~ and
// %u) when it is used. Matching is done component by component on clean
// absolute paths:
//
//   - a literal component matches itself only;
//   - "*" matches any run of characters within one component, never "/";
//   - "**" as a whole component matches zero or more components, and one
//     or more when it is the last component (so "~/mail/**" matches what is
//     inside ~/mail, never ~/mail itself);
//   - wildcards never match a component that begins with "." (as in the
//     shell), so "~/**" does not reach ~/.ssh; write the dot to match one;
//   - "~" as the whole first component is the home directory, "%u" the user
//     name, "%%" a literal "%"; "?", "[", "]", "\" and any other "%x" are
//     errors, so that nothing is ambiguous.

type segKind uint8

const (
	segLit  segKind = iota // literal text
	segStar                // *
	segUser                // %u
)

type seg struct {
	kind segKind
	lit  string
}

// comp is one component of a compiled pattern.
type comp struct {
	dstar bool  // the whole component is **
	segs  []seg // otherwise: literal, * and %u pieces; adjacent literals merged
}

// literal reports a component that is plain text (no *, no %u).
func (c comp) literal() bool {
	return !c.dstar && len(c.segs) == 1 && c.segs[0].kind == segLit
}

func (c comp) wild() bool {
	if c.dstar {
		return true
	}
	for _, s := range c.segs {
		if s.kind == segStar {
			return true
		}
	}
	return false
}

type pattern struct {
	src   string
	home  bool   // begins with ~
	comps []comp // the components after ~ or after the leading /
	// rootN is, for a pattern that does not begin with ~, the number of
	// leading literal components that form its root: those before the
	// first component with a wildcard or %u, never the last one.
	rootN int
}

var errReserved = errors.New(`"?", "[", "]" and "\" are reserved in patterns`)

// parsePattern compiles a path pattern.
func parsePattern(src string) (*pattern, error) {
	switch {
	case src == "":
		return nil, errors.New("empty pattern")
	case len(src) > MaxPathLen:
		return nil, fmt.Errorf("pattern longer than %d bytes", MaxPathLen)
	}
	if err := checkText(src); err != nil {
		return nil, fmt.Errorf("pattern %s: %v", strconv.Quote(src), err)
	}
	p := &pattern{src: src}
	rest := src
	switch {
	case src == "~" || strings.HasPrefix(src, "~/"):
		p.home = true
		rest = src[1:]
	case src[0] == '~':
		return nil, fmt.Errorf("pattern %s: ~ must be the whole first component (~user is not supported)", strconv.Quote(src))
	case src[0] != '/':
		return nil, fmt.Errorf("pattern %s must begin with / or ~/", strconv.Quote(src))
	}
	if rest == "" {
		return nil, fmt.Errorf("pattern %s names the home directory itself", strconv.Quote(src))
	}
	if src == "/" {
		return nil, errors.New("pattern / names the whole file system")
	}
	for _, raw := range strings.Split(rest[1:], "/") {
		c, err := parseComp(raw)
		if err != nil {
			return nil, fmt.Errorf("pattern %s: %v", strconv.Quote(src), err)
		}
		if c.dstar && len(p.comps) > 0 && p.comps[len(p.comps)-1].dstar {
			return nil, fmt.Errorf("pattern %s: ** repeated", strconv.Quote(src))
		}
		p.comps = append(p.comps, c)
	}
	if !p.home {
		for p.rootN < len(p.comps)-1 && p.comps[p.rootN].literal() {
			p.rootN++
		}
	}
	return p, nil
}

func parseComp(raw string) (comp, error) {
	switch raw {
	case "":
		return comp{}, errors.New("empty component (// or a trailing /)")
	case ".", "..":
		return comp{}, fmt.Errorf("%s component", raw)
	case "**":
		return comp{dstar: true}, nil
	}
	if len(raw) > MaxNameLen {
		return comp{}, fmt.Errorf("component longer than %d bytes", MaxNameLen)
	}
	if strings.Contains(raw, "**") {
		return comp{}, errors.New("** must be a whole component")
	}
	var c comp
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			c.segs = append(c.segs, seg{kind: segLit, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(raw); i++ {
		switch ch := raw[i]; ch {
		case '*':
			flush()
			c.segs = append(c.segs, seg{kind: segStar})
		case '%':
			if i+1 == len(raw) {
				return comp{}, errors.New(`"%" at the end of a component (write %% for a literal %)`)
			}
			i++
			switch raw[i] {
			case 'u':
				flush()
				c.segs = append(c.segs, seg{kind: segUser})
			case '%':
				lit.WriteByte('%')
			default:
				return comp{}, fmt.Errorf("unknown escape %%%c (only %%u and %%%% are defined)", raw[i])
			}
		case '?', '[', ']', '\\':
			return comp{}, errReserved
		default:
			lit.WriteByte(ch)
		}
	}
	flush()
	return c, nil
}

// concrete reports a pattern without wildcards: one path per user.
func (p *pattern) concrete() bool {
	for _, c := range p.comps {
		if c.wild() {
			return false
		}
	}
	return true
}

// hasRoot reports whether the pattern fixes a trusted directory: the home
// directory or at least one literal leading component.
func (p *pattern) hasRoot() bool {
	return p.home || p.rootN >= 1
}

// xcomp is a component of a pattern expanded for one user.
type xcomp struct {
	dstar bool
	min   int    // dstar: the least number of components it matches (0 or 1)
	lit   string // a literal component (glob == nil, !dstar)
	glob  []seg  // a component with *: segLit and segStar only
}

// xpat is a pattern expanded for one user: ~ and %u replaced.
type xpat struct {
	comps []xcomp
	root  string // the trusted directory (home, or the literal root)
}

// Placeholders used to reason about every user at once (symbolic
// expansion). Wildcards never match a component beginning with \x01, and
// real path components contain neither byte, so a match found with them
// holds for every valid user name and home directory.
const (
	anyUser = "\x00"
	anyHome = "/\x01~"
)

// expand replaces ~ and %u. name and home must be valid (validUser) or the
// placeholders.
func (p *pattern) expand(name, home string) xpat {
	// Every check expands every rule for its user, so this is sized once
	// and copies nothing it can share: a component without * is the
	// literal itself (or %u joined to its neighbours).
	var x xpat
	n := len(p.comps)
	if p.home {
		n += strings.Count(home, "/") // the components of home[1:]
	}
	x.comps = make([]xcomp, 0, n)
	if p.home {
		x.root = home
		for rest := home[1:]; ; {
			h, after, more := strings.Cut(rest, "/")
			x.comps = append(x.comps, xcomp{lit: h})
			if !more {
				break
			}
			rest = after
		}
	}
	var root strings.Builder
	for i, c := range p.comps {
		if c.dstar {
			m := 0
			if i == len(p.comps)-1 {
				m = 1
			}
			x.comps = append(x.comps, xcomp{dstar: true, min: m})
			continue
		}
		var first string // the first segment's text, once %u is replaced
		if lit, ok := c.text(name); ok {
			x.comps = append(x.comps, xcomp{lit: lit})
			first = lit
		} else {
			segs := make([]seg, 0, len(c.segs))
			for _, s := range c.segs {
				t := s
				if s.kind == segUser {
					t = seg{kind: segLit, lit: name}
				}
				if t.kind == segLit && len(segs) > 0 && segs[len(segs)-1].kind == segLit {
					segs[len(segs)-1].lit += t.lit
					continue
				}
				segs = append(segs, t)
			}
			x.comps = append(x.comps, xcomp{glob: segs})
			first = segs[0].lit
		}
		if !p.home && i < p.rootN {
			root.WriteByte('/')
			root.WriteString(first)
		}
	}
	if !p.home {
		x.root = root.String()
		if x.root == "" {
			x.root = "/"
		}
	}
	return x
}

// text returns the component as plain text, with %u replaced by name,
// if it has no *.
func (c comp) text(name string) (string, bool) {
	switch {
	case c.dstar:
		return "", false
	case len(c.segs) == 1 && c.segs[0].kind == segLit:
		return c.segs[0].lit, true
	case len(c.segs) == 1 && c.segs[0].kind == segUser:
		return name, true
	}
	n := 0
	for _, s := range c.segs {
		switch s.kind {
		case segStar:
			return "", false
		case segUser:
			n += len(name)
		default:
			n += len(s.lit)
		}
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range c.segs {
		if s.kind == segUser {
			b.WriteString(name)
		} else {
			b.WriteString(s.lit)
		}
	}
	return b.String(), true
}

// path returns the path of a pattern without wildcards.
func (x *xpat) path() string {
	var b strings.Builder
	for _, c := range x.comps {
		b.WriteByte('/')
		b.WriteString(c.lit)
	}
	return b.String()
}

// key is a canonical form, used to find duplicate and contradictory rules.
func (x *xpat) key() string {
	var b strings.Builder
	for _, c := range x.comps {
		b.WriteByte(0)
		switch {
		case c.dstar:
			b.WriteString("D")
		case c.glob == nil:
			b.WriteString("L" + c.lit)
		default:
			b.WriteString("G")
			for _, s := range c.glob {
				if s.kind == segStar {
					b.WriteString("\x01")
				} else {
					b.WriteString(s.lit)
				}
			}
		}
	}
	return b.String()
}

// wildOK reports whether a wildcard may match the path component s.
func wildOK(s string) bool {
	return s != "" && s[0] != '.' && s[0] != '\x01'
}

// globMatch matches one component against *-globs. A leading * does not
// match a leading ".".
func globMatch(segs []seg, s string) bool {
	if s == "" || s[0] == '\x01' {
		return false
	}
	i := 0
	if segs[0].kind == segLit {
		if !strings.HasPrefix(s, segs[0].lit) {
			return false
		}
		s = s[len(segs[0].lit):]
		i = 1
	} else if s[0] == '.' {
		return false
	}
	if i == len(segs) {
		return s == ""
	}
	last := len(segs) - 1
	if segs[last].kind == segLit {
		suf := segs[last].lit
		if !strings.HasSuffix(s, suf) {
			return false
		}
		s = s[:len(s)-len(suf)]
		last--
	}
	// segs[i..last] begins and ends with *: find the literals in order.
	for j := i; j <= last; j++ {
		if segs[j].kind != segLit {
			continue
		}
		k := strings.Index(s, segs[j].lit)
		if k < 0 {
			return false
		}
		s = s[k+len(segs[j].lit):]
	}
	return true
}

func (c *xcomp) matchComp(s string) bool {
	if c.glob == nil {
		return s == c.lit
	}
	return globMatch(c.glob, s)
}

// match reports whether the path components pc match x.
func (x *xpat) match(pc []string) bool {
	m, n := len(x.comps), len(pc)
	hasD := false
	for i := range x.comps {
		if x.comps[i].dstar {
			hasD = true
			break
		}
	}
	if !hasD {
		if m != n {
			return false
		}
		for i := range x.comps {
			if !x.comps[i].matchComp(pc[i]) {
				return false
			}
		}
		return true
	}
	// dp[i*(n+1)+j]: x.comps[i:] matches pc[j:]. O(m*n).
	w := n + 1
	dp := make([]bool, (m+1)*w)
	dp[m*w+n] = true
	for i := m - 1; i >= 0; i-- {
		c := &x.comps[i]
		for j := n; j >= 0; j-- {
			var ok bool
			switch {
			case c.dstar:
				more := j < n && wildOK(pc[j]) && (dp[i*w+j+1] || dp[(i+1)*w+j+1])
				ok = more || c.min == 0 && dp[(i+1)*w+j]
			default:
				ok = j < n && c.matchComp(pc[j]) && dp[(i+1)*w+j+1]
			}
			dp[i*w+j] = ok
		}
	}
	return dp[0]
}

// absorbable reports whether every component c can match is one that **
// can match too, and the least number of components c matches.
func (c *xcomp) absorbable() (bool, int) {
	switch {
	case c.dstar:
		return true, c.min
	case c.glob == nil:
		return wildOK(c.lit), 1
	case c.glob[0].kind == segStar:
		return true, 1
	default:
		return wildOK(c.glob[0].lit), 1
	}
}

// covers reports whether the single component s matches everything the
// single component u matches (conservatively: false when unsure).
func covers(s, u *xcomp) bool {
	if s.glob == nil {
		return u.glob == nil && u.lit == s.lit
	}
	if u.glob == nil {
		return globMatch(s.glob, u.lit)
	}
	if len(s.glob) == len(u.glob) {
		same := true
		for i := range s.glob {
			if s.glob[i] != u.glob[i] {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	if len(s.glob) == 1 && s.glob[0].kind == segStar {
		ok, _ := u.absorbable()
		return ok
	}
	return false
}

// includes reports whether every path matched by u is matched by s. The
// answer is sound (true only if it holds) but not complete: for unusual
// combinations of globs it may say false where the inclusion holds.
func includes(s, u *xpat) bool {
	ms, mu := len(s.comps), len(u.comps)
	memo := make([]int8, (mu+1)*(ms+1))
	var incl func(i, j int) bool
	incl = func(i, j int) bool {
		k := i*(ms+1) + j
		if memo[k] != 0 {
			return memo[k] > 0
		}
		r := false
		switch {
		case j == ms:
			r = i == mu
		case s.comps[j].dstar:
			sum := 0
			for t := i; ; t++ {
				if sum >= s.comps[j].min && incl(t, j+1) {
					r = true
					break
				}
				if t == mu {
					break
				}
				ok, n := u.comps[t].absorbable()
				if !ok {
					break
				}
				sum += n
			}
		case i == mu || u.comps[i].dstar:
			r = false
		default:
			r = covers(&s.comps[j], &u.comps[i]) && incl(i+1, j+1)
		}
		if r {
			memo[k] = 1
		} else {
			memo[k] = -1
		}
		return r
	}
	return incl(0, 0)
}

// splitPath splits a valid absolute path into its components.
func splitPath(p string) []string {
	if p == "/" {
		return nil
	}
	return strings.Split(p[1:], "/")
}
