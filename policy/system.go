package policy

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// MboxOptions are the system-wide settings for mbox delivery.
type MboxOptions struct {
	Locking     []string      // subset of "dotlock", "fcntl", "flock"; default ["dotlock","fcntl"]
	LockTimeout time.Duration // default 30s
	StaleLock   time.Duration // default 5m; a dot-lock older than this is broken
	Quoting     string        // "mboxrd" (default) or "mboxo"
}

// Defaults of the system file.
const (
	DefaultMinUID         = 1000
	DefaultUserFile       = ".lda.yaml"
	DefaultLockTimeout    = 30 * time.Second
	DefaultStaleLock      = 5 * time.Minute
	DefaultProgramTimeout = 5 * time.Minute
)

// System is the administrator's policy. It is immutable after parsing and
// safe for concurrent use.
type System struct {
	File          string
	MinUID        int
	UserFile      string // relative to home; "" disables per-user files
	Mbox          MboxOptions
	QuotaTempfail bool

	mboxCreate           bool
	maildirCreate        bool
	maildirCreateFolders bool

	def      *rule
	allow    []*rule
	deny     []*rule
	mayAdd   []*rule
	programs map[string]*program
}

// rule is a parsed rule.
type rule struct {
	Rule
	pat     *pattern   // Mbox and Maildir
	folders bool       // Maildir: the rule admits Maildir++ folders
	x       *xpat      // user rules: pattern already expanded for the user
	texts   *ruleTexts // made once the rule is read (made)
}

// ruleTexts are what a rule's decisions quote. A warm worker's every job
// used to build them again.
type ruleTexts struct {
	allowedBy, deniedBy, defaultFrom string
}

func newRuleTexts(r *Rule) *ruleTexts {
	s := r.String()
	return &ruleTexts{
		allowedBy:   "allowed by " + s,
		deniedBy:    "denied by " + s,
		defaultFrom: "default from " + r.File + ":" + strconv.Itoa(r.Line) + "; ",
	}
}

// made completes r once it is read: the texts its decisions quote.
func (r *rule) made() *rule {
	r.texts = newRuleTexts(&r.Rule)
	return r
}

// text returns r's texts, made afresh for a rule not read through made.
func (r *rule) text() *ruleTexts {
	if r.texts == nil {
		return newRuleTexts(&r.Rule)
	}
	return r.texts
}

func (r *rule) expand(u User) xpat {
	if r.pat == nil {
		return xpat{}
	}
	if r.x != nil {
		return *r.x
	}
	return r.pat.expand(u.Name, u.Home)
}

// symbolic stands for every user at once (see anyUser). It is used only
// by the parser, never by Check. Rules already expanded for one user
// (r.x) keep that expansion.
var symbolic = User{Name: anyUser, Home: anyHome}

// public returns a copy of the Rule, so that callers cannot change the
// policy through a Decision.
func (r *rule) public() *Rule {
	c := r.Rule
	return &c
}

// program is a defined program.
type program struct {
	name    string
	line    int
	argv0   string
	args    [][]seg // segLit and segUser pieces
	timeout time.Duration
}

func (p *program) spec(user string) *ProgramSpec {
	argv := make([]string, 0, 1+len(p.args))
	argv = append(argv, p.argv0)
	for _, a := range p.args {
		var b strings.Builder
		for _, s := range a {
			if s.kind == segUser {
				b.WriteString(user)
			} else {
				b.WriteString(s.lit)
			}
		}
		argv = append(argv, b.String())
	}
	return &ProgramSpec{Name: p.name, Argv: argv, Timeout: p.timeout}
}

type sysDoc struct {
	Version       yaml.Node `yaml:"version"`
	MinUID        yaml.Node `yaml:"min_uid"`
	UserFile      yaml.Node `yaml:"user_file"`
	Default       yaml.Node `yaml:"default"`
	Allow         yaml.Node `yaml:"allow"`
	Deny          yaml.Node `yaml:"deny"`
	UserMayAdd    yaml.Node `yaml:"user_may_add"`
	Programs      yaml.Node `yaml:"programs"`
	Mbox          yaml.Node `yaml:"mbox"`
	Maildir       yaml.Node `yaml:"maildir"`
	QuotaTempfail yaml.Node `yaml:"quota_tempfail"`
}

// LoadSystem opens and parses the system policy file. The file must be a
// regular file owned by root (or by the calling user, for tests and
// unprivileged use) and not writable by group or others.
func LoadSystem(path string) (*System, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkSystemFile(fi); err != nil {
		return nil, &ParseError{File: path, Msg: err.Error()}
	}
	return ParseSystem(f, path)
}

func checkSystemFile(fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("not a regular file")
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("writable by group or others (mode %#o)", fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
			return fmt.Errorf("owned by uid %d, not root", st.Uid)
		}
	}
	return nil
}

// ParseSystem parses a system policy file. filename is used in messages
// and in Rule.File. Every error is a *ParseError ("FILE:LINE: text").
func ParseSystem(r io.Reader, filename string) (*System, error) {
	data, err := readLimited(r, filename)
	if err != nil {
		return nil, err
	}
	var doc sysDoc
	if err := decodeStrict(data, filename, &doc); err != nil {
		return nil, err
	}
	w := &walker{file: filename}
	s := &System{
		File:     filename,
		MinUID:   DefaultMinUID,
		UserFile: DefaultUserFile,
		Mbox: MboxOptions{
			Locking:     []string{"dotlock", "fcntl"},
			LockTimeout: DefaultLockTimeout,
			StaleLock:   DefaultStaleLock,
			Quoting:     "mboxrd",
		},
		mboxCreate:           true,
		maildirCreate:        true,
		maildirCreateFolders: true,
		programs:             map[string]*program{},
	}
	if err := w.version(&doc.Version); err != nil {
		return nil, err
	}
	if n := &doc.MinUID; present(n) {
		v, err := w.integer(n, "min_uid")
		if err != nil {
			return nil, err
		}
		if v < 1 || v > 1<<32-2 {
			return nil, w.errf(n, "min_uid: %d out of range (1 to 4294967294; root is never a recipient)", v)
		}
		s.MinUID = int(v)
	}
	if n := &doc.UserFile; present(n) {
		v, err := w.str(n, `user_file (use "" to disable per-user files)`)
		if err != nil {
			return nil, err
		}
		if v != "" {
			if err := validUserFile(v); err != nil {
				return nil, w.errf(n, "%v", err)
			}
		}
		s.UserFile = v
	}
	if n := &doc.Programs; present(n) {
		if err := w.programs(n, s.programs); err != nil {
			return nil, err
		}
	}
	if n := &doc.Mbox; present(n) {
		if err := w.mboxOptions(n, s); err != nil {
			return nil, err
		}
	}
	if n := &doc.Maildir; present(n) {
		ents, err := w.mapping(n, "maildir", "create", "create_folders")
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			v, err := w.boolean(e.v, "maildir: "+e.key)
			if err != nil {
				return nil, err
			}
			if e.key == "create" {
				s.maildirCreate = v
			} else {
				s.maildirCreateFolders = v
			}
		}
	}
	if n := &doc.QuotaTempfail; present(n) {
		if s.QuotaTempfail, err = w.boolean(n, "quota_tempfail"); err != nil {
			return nil, err
		}
	}
	if !present(&doc.Allow) {
		return nil, w.errf(nil, "allow: missing (a list of rules is required)")
	}
	if s.allow, err = w.rules(&doc.Allow, "system", "allow", s.programs, true); err != nil {
		return nil, err
	}
	if n := &doc.Deny; present(n) {
		if s.deny, err = w.rules(n, "system", "deny", s.programs, false); err != nil {
			return nil, err
		}
	}
	if n := &doc.UserMayAdd; present(n) {
		if s.mayAdd, err = w.rules(n, "system", "user_may_add", s.programs, true); err != nil {
			return nil, err
		}
	}
	if err := w.contradictions(s.allow, s.deny, func(r *rule) string { return ruleKey(r, r.expand(symbolic)) }); err != nil {
		return nil, err
	}
	if !present(&doc.Default) {
		return nil, w.errf(nil, "default: missing (the default destination is required)")
	}
	if s.def, err = w.rule(&doc.Default, "system", "default", s.programs, false); err != nil {
		return nil, err
	}
	if err := s.checkDefault(w); err != nil {
		return nil, err
	}
	return s, nil
}

func (w *walker) version(n *yaml.Node) error {
	if !present(n) {
		return w.errf(nil, "version: missing (write version: 1)")
	}
	v, err := w.integer(n, "version")
	if err != nil {
		return err
	}
	if v != 1 {
		return w.errf(n, "version: %d is not supported (only 1)", v)
	}
	return nil
}

func (w *walker) mboxOptions(n *yaml.Node, s *System) error {
	ents, err := w.mapping(n, "mbox", "locking", "lock_timeout", "stale_lock", "quoting", "create")
	if err != nil {
		return err
	}
	for _, e := range ents {
		what := "mbox: " + e.key
		switch e.key {
		case "locking":
			items, err := w.list(e.v, what)
			if err != nil {
				return err
			}
			var locks []string
			for _, it := range items {
				v, err := w.str(it, what)
				if err != nil {
					return err
				}
				switch v {
				case "dotlock", "fcntl", "flock":
				default:
					return w.errf(it, "%s: unknown locking method %s (dotlock, fcntl or flock)", what, quote(v))
				}
				if contains(locks, v) {
					return w.errf(it, "%s: %s listed twice", what, v)
				}
				locks = append(locks, v)
			}
			s.Mbox.Locking = locks
		case "lock_timeout":
			if s.Mbox.LockTimeout, err = w.duration(e.v, what); err != nil {
				return err
			}
		case "stale_lock":
			if s.Mbox.StaleLock, err = w.duration(e.v, what); err != nil {
				return err
			}
		case "quoting":
			v, err := w.str(e.v, what)
			if err != nil {
				return err
			}
			if v != "mboxrd" && v != "mboxo" {
				return w.errf(e.v, "%s: %s is not mboxrd or mboxo", what, quote(v))
			}
			s.Mbox.Quoting = v
		case "create":
			if s.mboxCreate, err = w.boolean(e.v, what); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *walker) programs(n *yaml.Node, progs map[string]*program) error {
	ents, err := w.mapping(n, "programs")
	if err != nil {
		return err
	}
	if len(ents) == 0 {
		return w.errf(n, "programs: empty mapping (leave the key out instead)")
	}
	for _, e := range ents {
		if err := ValidProgramName(e.key); err != nil {
			return w.errf(e.k, "programs: %v", err)
		}
		what := "programs: " + e.key
		p := &program{name: e.key, line: e.k.Line, timeout: DefaultProgramTimeout}
		fields, err := w.mapping(e.v, what, "argv", "timeout")
		if err != nil {
			return err
		}
		var argvNode *yaml.Node
		for _, f := range fields {
			switch f.key {
			case "argv":
				argvNode = f.v
			case "timeout":
				if p.timeout, err = w.duration(f.v, what+": timeout"); err != nil {
					return err
				}
			}
		}
		if argvNode == nil {
			return w.errf(e.k, "%s: argv is required", what)
		}
		items, err := w.list(argvNode, what+": argv")
		if err != nil {
			return err
		}
		for i, it := range items {
			v, err := w.str(it, what+": argv")
			if err != nil {
				return err
			}
			if i == 0 {
				if err := ValidPath(v); err != nil {
					return w.errf(it, "%s: argv[0] must be an absolute clean path: %v", what, err)
				}
				if strings.ContainsRune(v, '%') {
					return w.errf(it, "%s: argv[0] must not contain %%", what)
				}
				p.argv0 = v
				continue
			}
			a, err := parseArg(v)
			if err != nil {
				return w.errf(it, "%s: argv[%d]: %v", what, i, err)
			}
			p.args = append(p.args, a)
		}
		progs[e.key] = p
	}
	return nil
}

// parseArg compiles a program argument: %u is the user name, %% a "%".
func parseArg(v string) ([]seg, error) {
	if err := checkText(v); err != nil {
		return nil, err
	}
	if len(v) > MaxPathLen {
		return nil, fmt.Errorf("longer than %d bytes", MaxPathLen)
	}
	var out []seg
	var lit strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			lit.WriteByte(v[i])
			continue
		}
		if i+1 == len(v) {
			return nil, fmt.Errorf(`"%%" at the end (write %%%% for a literal %%)`)
		}
		i++
		switch v[i] {
		case '%':
			lit.WriteByte('%')
		case 'u':
			if lit.Len() > 0 {
				out = append(out, seg{kind: segLit, lit: lit.String()})
				lit.Reset()
			}
			out = append(out, seg{kind: segUser})
		default:
			return nil, fmt.Errorf("unknown escape %%%c (only %%u and %%%% are defined)", v[i])
		}
	}
	if lit.Len() > 0 || len(out) == 0 {
		out = append(out, seg{kind: segLit, lit: lit.String()})
	}
	return out, nil
}

// rules parses a non-empty list of rules.
func (w *walker) rules(n *yaml.Node, source, action string, progs map[string]*program, needRoot bool) ([]*rule, error) {
	items, err := w.list(n, action)
	if err != nil {
		return nil, err
	}
	var out []*rule
	seen := map[string]int{}
	for _, it := range items {
		r, err := w.rule(it, source, action, progs, needRoot)
		if err != nil {
			return nil, err
		}
		k := ruleKey(r, r.expand(symbolic))
		if first, dup := seen[k]; dup {
			return nil, w.errf(it, "%s: %s %s repeats the rule at line %d", action, r.Kind, quote(r.Pattern), first)
		}
		seen[k] = r.Line
		out = append(out, r)
	}
	return out, nil
}

// ruleKey identifies what a rule matches (not its folders setting).
func ruleKey(r *rule, x xpat) string {
	if r.Kind == Program {
		return "program\x00" + r.Pattern
	}
	return r.Kind.String() + x.key()
}

// contradictions refuses a deny rule that repeats an allow rule.
func (w *walker) contradictions(allow, deny []*rule, key func(*rule) string) error {
	lines := map[string]int{}
	for _, r := range allow {
		lines[key(r)] = r.Line
	}
	for _, r := range deny {
		if l, ok := lines[key(r)]; ok {
			return &ParseError{File: w.file, Line: r.Line, Msg: fmt.Sprintf("deny %s %s contradicts the allow rule at line %d", r.Kind, quote(r.Pattern), l)}
		}
	}
	return nil
}

// rule parses one rule: a mapping with exactly one of mbox, maildir or
// program, and for allow and user_may_add maildir rules an optional
// folders. needRoot demands a pattern with a fixed trusted directory;
// default rules must name one destination, without wildcards.
func (w *walker) rule(n *yaml.Node, source, action string, progs map[string]*program, needRoot bool) (*rule, error) {
	keys := []string{"mbox", "maildir", "program"}
	if action == "allow" || action == "user_may_add" {
		keys = append(keys, "folders")
	}
	what := action
	if action != "default" {
		what += " rule"
	}
	ents, err := w.mapping(n, what, keys...)
	if err != nil {
		return nil, err
	}
	r := &rule{Rule: Rule{File: w.file, Line: n.Line, Source: source, Action: action}, folders: true}
	var val, fold *yaml.Node
	for _, e := range ents {
		if e.key == "folders" {
			fold = e.v
			continue
		}
		if val != nil {
			return nil, w.errf(e.k, "%s: names both %s and %s (one destination kind per rule)", what, r.Kind, e.key)
		}
		val = e.v
		r.Kind, _ = ParseKind(e.key)
	}
	if val == nil {
		return nil, w.errf(n, "%s: names none of mbox, maildir, program", what)
	}
	if fold != nil {
		if r.Kind != Maildir {
			return nil, w.errf(fold, "%s: folders applies to maildir rules only", what)
		}
		if r.folders, err = w.boolean(fold, what+": folders"); err != nil {
			return nil, err
		}
	}
	what += ": " + r.Kind.String()
	if r.Pattern, err = w.str(val, what); err != nil {
		return nil, err
	}
	if r.Kind == Program {
		if err := ValidProgramName(r.Pattern); err != nil {
			return nil, w.errf(val, "%s: %v", what, err)
		}
		if progs[r.Pattern] == nil {
			return nil, w.errf(val, "%s: program %s is not defined under programs", what, quote(r.Pattern))
		}
		return r.made(), nil
	}
	if r.pat, err = parsePattern(r.Pattern); err != nil {
		return nil, w.errf(val, "%s: %v", what, err)
	}
	if action == "default" && !r.pat.concrete() {
		return nil, w.errf(val, "%s: the default must name one destination, not a pattern with * or **", what)
	}
	if needRoot && !r.pat.hasRoot() {
		return nil, w.errf(val, "%s: pattern %q has no literal directory before its first wildcard or %%u (begin with ~/ or a fixed directory)", what, r.Pattern)
	}
	if w.user != nil {
		x := r.pat.expand(w.user.Name, w.user.Home)
		r.x = &x
	}
	return r.made(), nil
}

// checkDefault proves, for every user at once, that the default
// destination is allowed by an allow rule and not denied by a deny rule.
func (s *System) checkDefault(w *walker) error {
	d := s.def
	var allowed *rule
	if d.Kind == Program {
		for _, r := range s.deny {
			if r.Kind == Program && r.Pattern == d.Pattern {
				return w.errf(&yaml.Node{Line: d.Line}, "default program %s is denied by the deny rule at line %d", quote(d.Pattern), r.Line)
			}
		}
		for _, r := range s.allow {
			if r.Kind == Program && r.Pattern == d.Pattern {
				allowed = r
				break
			}
		}
	} else {
		x := d.pat.expand(anyUser, anyHome)
		pc := make([]string, len(x.comps))
		for i, c := range x.comps {
			pc[i] = c.lit
		}
		for _, r := range s.deny {
			if r.Kind == d.Kind {
				if rx := r.pat.expand(anyUser, anyHome); rx.match(pc) {
					return w.errf(&yaml.Node{Line: d.Line}, "default %s %s is denied by the deny rule at line %d", d.Kind, quote(d.Pattern), r.Line)
				}
			}
		}
		for _, r := range s.allow {
			if r.Kind == d.Kind {
				if rx := r.pat.expand(anyUser, anyHome); rx.match(pc) {
					allowed = r
					break
				}
			}
		}
	}
	if allowed == nil {
		return w.errf(&yaml.Node{Line: d.Line}, "default %s %s is not allowed by any allow rule for every user (write the allow rule with the same ~ and %%u)", d.Kind, quote(d.Pattern))
	}
	return nil
}

// Rules returns a copy of every rule of the system file: the default,
// then allow, deny and user_may_add, in file order.
func (s *System) Rules() []Rule {
	var out []Rule
	if s.def != nil {
		out = append(out, s.def.Rule)
	}
	for _, list := range [][]*rule{s.allow, s.deny, s.mayAdd} {
		for _, r := range list {
			out = append(out, r.Rule)
		}
	}
	return out
}

// Programs returns the names of the defined programs, sorted.
func (s *System) Programs() []string {
	var out []string
	for n := range s.programs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
