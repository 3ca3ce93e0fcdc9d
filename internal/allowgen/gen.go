package allowgen

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"lda/internal/aliases"
	"lda/internal/forward"
	"lda/policy"
)

// Config is what allowgen is asked to do (see allowgen(8)).
type Config struct {
	Aliases     []string // aliases files to read
	Policy      string   // the system policy file to write or compare
	Base        string   // the administrator's policy without generated lines ("" = Policy, else the built-in default)
	Passwd      string   // the passwd file
	Users       []string // users whose .forward files are read (nil = every user with uid >= min_uid)
	Forward     string   // the name of .forward files in home directories ("" = none)
	DefaultUser string   // who runs programs and files of root-owned alias files
	Central     string   // directory for per-user files instead of the homes ("" = the homes)
	Sieve       bool     // also convert .forward files to Sieve
	SievePipe   bool     // write allowed programs as Pigeonhole's pipe "NAME"
	SieveName   string   // the Sieve script's name in the home directory
	Domain      string   // qualifies local names in Sieve redirects and virtual tables
	Table       string   // "", "aliases" or "virtual"
	IncludeDest bool     // convert programs and files found in :include: files
	LDA         string   // lda's path, for the report and tables
}

// ConfigError is a problem with the configuration (the base policy, the
// default user, a flag): nothing can be generated.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Output is one file allowgen would write.
type Output struct {
	Path    string
	Role    string // "system policy", "policy of alice", "Sieve script of alice"
	Content []byte // nil: the file should not exist (a stale generated file is removed)
	UID     int
	GID     int
	Mode    os.FileMode
	Whole   bool // allowgen writes the whole file (user files, Sieve scripts)
	// Incomplete says why the file is shown but not written (a Sieve
	// script with elements that could not be converted).
	Incomplete string
	Old        existing
	home       *home
}

// Changed reports whether the file on disk differs from Content.
func (o *Output) Changed() bool {
	if o.Incomplete != "" {
		return false
	}
	if o.Content == nil {
		return o.Old.exists
	}
	return !o.Old.exists || string(o.Old.data) != string(o.Content)
}

// Refused says why the file cannot be written ("" = it can).
func (o *Output) Refused() string {
	if !o.Changed() {
		return ""
	}
	return o.Old.refuse
}

// OldContent is the file on disk (nil if none).
func (o *Output) OldContent() []byte { return o.Old.data }

// Result is everything allowgen derived.
type Result struct {
	Outputs []*Output
	Diags   []aliases.Diag
	Routes  []Route
	Table   string
	Summary Summary
	homes   []*home
}

// Close releases the home directories held open.
func (r *Result) Close() {
	for _, h := range r.homes {
		h.close()
	}
	r.homes = nil
}

// Summary counts what was found and done.
type Summary struct {
	AliasFiles, Aliases                   int
	Users, Forwards, ForwardsRefused      int
	SystemAdded, UserRules, UserFiles     int
	AlreadyAllowed, Outside, NotConverted int
	SieveScripts, SieveIncomplete         int
	Errors, Warnings                      int
}

// source is where a destination was written.
type source struct {
	pos  string // file:line
	what string // "alias archive", "alice's .forward"
}

// dest is a file or program destination, as found.
type dest struct {
	kind   policy.Kind
	path   string // Mbox, Maildir
	folder string // Maildir
	cmd    string // Program: the command line as written
	argv   []string
	name   string // Program: the policy's name for it
	runAs  *Account
	srcs   []source
	// decided
	allowedBy string // the rule that allows it already
	rejected  string // why it is not in the policy
}

func (d *dest) destination() policy.Destination {
	if d.kind == policy.Program {
		return policy.Destination{Kind: policy.Program, Program: d.name}
	}
	return policy.Destination{Kind: d.kind, Path: d.path, Folder: d.folder}
}

// deliverArgs is how an MTA asks lda for this destination.
func (d *dest) deliverArgs(lda string) string {
	s := lda + " deliver -d " + d.runAs.Name
	switch d.kind {
	case policy.Program:
		return s + " -dest program:" + d.name
	case policy.Maildir:
		s += " -dest maildir:" + d.path
		if d.folder != "" {
			s += " -folder " + d.folder
		}
		return s
	}
	return s + " -dest mbox:" + d.path
}

func (d *dest) describe() string {
	switch d.kind {
	case policy.Program:
		if d.name != "" {
			return "program " + d.name + " (" + strconv.Quote("|"+d.cmd) + ")"
		}
		return "program " + strconv.Quote("|"+d.cmd)
	case policy.Maildir:
		if d.folder != "" {
			return "maildir " + d.path + " folder " + d.folder
		}
		return "maildir " + d.path
	}
	return "mbox " + d.path
}

func (d *dest) key() string {
	if d.kind == policy.Program {
		return "program\x00" + strings.Join(d.argv, "\x00")
	}
	return d.kind.String() + "\x00" + d.path + "\x00" + d.folder
}

// gen holds the state of one run.
type gen struct {
	cfg     Config
	pw      *Passwd
	base    *base
	defUser *Account
	res     *Result
	// system destinations (aliases) and per-user ones (.forward), in order
	sysDests  []*dest
	sysByKey  map[string]*dest
	users     []*userState
	programs  map[string][]string // name -> argv, defined so far (base and new)
	newProgs  map[string]*dest    // name -> first dest that needs a new definition
	mayAdd    map[string]*dest    // program name -> first .forward dest that needs it in user_may_add
	finalSys  *policy.System
	finalText string
}

// userState is one user whose .forward was read.
type userState struct {
	acct    *Account
	home    *home
	file    string // the .forward's path
	fwd     *forward.File
	refused bool // the .forward exists but was refused
	members []aliases.Member
	dests   []*dest
	routes  []Hop
}

func (g *gen) diag(file string, line int, sev aliases.Severity, format string, args ...any) {
	g.res.Diags = append(g.res.Diags, aliases.Diag{File: file, Line: line, Severity: sev, Msg: fmt.Sprintf(format, args...)})
}

func posOf(p string) (string, int) {
	i := strings.LastIndexByte(p, ':')
	if i < 0 {
		return p, 0
	}
	n, err := strconv.Atoi(p[i+1:])
	if err != nil {
		return p, 0
	}
	return p[:i], n
}

func (g *gen) warnAt(pos string, format string, args ...any) {
	f, l := posOf(pos)
	g.diag(f, l, aliases.Warning, format, args...)
}

func (g *gen) errAt(pos string, format string, args ...any) {
	f, l := posOf(pos)
	g.diag(f, l, aliases.Error, format, args...)
}

// Generate reads the sources and computes every output; it writes
// nothing. A *ConfigError means nothing could be generated.
func Generate(cfg Config) (*Result, error) {
	if cfg.DefaultUser == "" {
		cfg.DefaultUser = "nobody"
	}
	if cfg.SieveName == "" {
		cfg.SieveName = ".lda.sieve"
	}
	if cfg.LDA == "" {
		cfg.LDA = "/usr/local/sbin/lda"
	}
	switch cfg.Table {
	case "", "aliases", "virtual":
	default:
		return nil, &ConfigError{fmt.Errorf("-table %s: want aliases or virtual", strconv.Quote(cfg.Table))}
	}
	if cfg.SieveName != filepath.Base(cfg.SieveName) || cfg.SieveName == "." || cfg.SieveName == ".." {
		return nil, &ConfigError{fmt.Errorf("-sieve-name %s: want a file name", strconv.Quote(cfg.SieveName))}
	}
	g := &gen{cfg: cfg, res: &Result{}, sysByKey: map[string]*dest{}, programs: map[string][]string{}, newProgs: map[string]*dest{}, mayAdd: map[string]*dest{}}
	var err error
	if g.pw, err = LoadPasswd(cfg.Passwd); err != nil {
		return nil, &ConfigError{fmt.Errorf("passwd file: %w", err)}
	}
	if err := g.loadBase(); err != nil {
		return nil, &ConfigError{err}
	}
	g.defUser = g.pw.Lookup(cfg.DefaultUser)
	switch {
	case g.defUser == nil:
		return nil, &ConfigError{fmt.Errorf("-default-user %s: no such user in %s", strconv.Quote(cfg.DefaultUser), cfg.Passwd)}
	case g.defUser.UID == 0:
		return nil, &ConfigError{fmt.Errorf("-default-user %s: has uid 0; programs and files never run as root", cfg.DefaultUser)}
	}
	for n, argv := range g.base.programs {
		g.programs[n] = argv
	}
	for _, f := range cfg.Aliases {
		g.readAliases(f)
	}
	if cfg.Forward != "" {
		if err := g.readForwards(); err != nil {
			return nil, &ConfigError{err}
		}
	}
	if err := g.buildSystem(); err != nil {
		g.res.Close()
		return nil, err
	}
	g.buildUsers()
	g.res.Table = g.table()
	g.summarise()
	return g.res, nil
}

// loadBase finds the administrator's policy: -base, else the existing
// system file with allowgen's lines removed, else the built-in default.
func (g *gen) loadBase() error {
	var text, file string
	switch {
	case g.cfg.Base != "":
		b, err := os.ReadFile(g.cfg.Base)
		if err != nil {
			return fmt.Errorf("-base: %w", err)
		}
		text, file = string(b), g.cfg.Base
	default:
		b, err := os.ReadFile(g.cfg.Policy)
		switch {
		case err == nil:
			text, file = string(b), g.cfg.Policy
		case errors.Is(err, fs.ErrNotExist):
			text, file = string(policy.DefaultYAML()), policy.DefaultFile
		default:
			return err
		}
	}
	text = stripGenerated(text)
	b, err := loadBase(text, file)
	if err != nil {
		return fmt.Errorf("base policy: %w", err)
	}
	g.base = b
	return nil
}

// runAsOwner is the account that programs and files of a file owned by
// uid run as: the owner, or the default user if root owns it (Postfix's
// rule for alias and :include: files, with default_privs).
func (g *gen) runAsOwner(uid int, file string) *Account {
	if uid == 0 {
		return g.defUser
	}
	if a := g.pw.ByUID(uid); a != nil {
		return a
	}
	g.warnAt(file, "owned by uid %d, which has no passwd entry: its programs and files are taken to run as %s", uid, g.defUser.Name)
	return g.defUser
}

// readAliases reads one aliases file.
func (g *gen) readAliases(file string) {
	data, owner, err := readAliasesFile(file)
	if err != nil {
		g.diag(file, 0, aliases.Error, "%v", err)
		return
	}
	g.res.Summary.AliasFiles++
	runAs := g.runAsOwner(owner, file)
	a := aliases.Parse(data, file)
	g.res.Diags = append(g.res.Diags, a.Diags...)
	g.res.Summary.Aliases += len(a.Entries)
	open := func(path string, by aliases.Element) (*aliases.Opened, error) {
		return readInclude(path, ownerRule{uid: -1})
	}
	for _, e := range a.Entries {
		members, diags := aliases.ExpandIncludes(e.Elements, open, aliases.Options{})
		g.res.Diags = append(g.res.Diags, diags...)
		route := Route{Kind: "alias", Name: e.Key, Pos: e.Pos(), OwnerOf: e.OwnerOf, RequestOf: e.RequestOf}
		for _, m := range members {
			who := runAs
			if len(m.Via) > 0 {
				who = g.runAsOwner(m.Owner, m.Via[len(m.Via)-1].Value)
			}
			src := source{pos: m.Pos(), what: "alias " + e.Key}
			route.Hops = append(route.Hops, g.hop(m, who, src, nil))
		}
		g.res.Routes = append(g.res.Routes, route)
	}
}

// hop classifies one member: a redirect, or a destination for lda.
func (g *gen) hop(m aliases.Member, who *Account, src source, u *userState) Hop {
	h := Hop{Member: m}
	if len(m.Via) > 0 {
		var via []string
		for _, v := range m.Via {
			via = append(via, ":include:"+v.Value)
		}
		h.Via = strings.Join(via, " > ")
	}
	fromInclude := len(m.Via) > 0
	switch m.Kind {
	case aliases.Address, aliases.NoExpand:
		if u != nil && m.Domain == "" && m.Value == u.acct.Name {
			h.Keep = true
		}
		return h
	case aliases.Special:
		return h
	}
	if fromInclude && !g.cfg.IncludeDest {
		h.NotConverted = "a " + m.Kind.String() + " in an :include: file: Postfix refuses them by default (allow_mail_to_commands and allow_mail_to_files = alias, forward); use -include-destinations to convert them"
		g.warnAt(m.Pos(), "%s: not converted: %s", m.Internal(), h.NotConverted)
		g.res.Summary.NotConverted++
		return h
	}
	d := &dest{runAs: who, srcs: []source{src}}
	switch m.Kind {
	case aliases.Program:
		d.kind, d.cmd = policy.Program, m.Value
		argv, err := SplitCommand(m.Value)
		if err != nil {
			h.NotConverted = err.Error()
			g.warnAt(m.Pos(), "%s: not convertible to an lda program: %v", strconv.Quote("|"+m.Value), err)
			g.res.Summary.NotConverted++
			return h
		}
		if strings.Contains(argv[0], "%") {
			h.NotConverted = "argv[0] contains %, which lda-policy(5) does not allow"
			g.warnAt(m.Pos(), "%s: not convertible: %s", strconv.Quote("|"+m.Value), h.NotConverted)
			g.res.Summary.NotConverted++
			return h
		}
		d.argv = argv
		switch filepath.Base(argv[0]) {
		case "sh", "bash", "dash", "ksh", "mksh", "zsh", "csh", "tcsh", "fish", "busybox":
			g.warnAt(m.Pos(), "%s runs a shell (%s): lda starts it without one, but what the shell then runs is up to its arguments", strconv.Quote("|"+m.Value), argv[0])
		}
		if fi, err := os.Stat(who.Home); err != nil || !fi.IsDir() {
			g.warnAt(m.Pos(), "%s runs as %s, whose home directory %s does not exist: lda runs programs there, so deliveries will fail (450 4.2.0); choose a -default-user with a home directory", strconv.Quote("|"+m.Value), who.Name, who.Home)
		}
	case aliases.File, aliases.HomeFile:
		p := m.Value
		if m.Kind == aliases.HomeFile {
			p = u.acct.Home + m.Value
		}
		d.kind = policy.Mbox
		if strings.HasSuffix(p, "/") && len(p) > 1 {
			d.kind, p = policy.Maildir, strings.TrimSuffix(p, "/")
		}
		if err := policy.ValidPath(p); err != nil {
			h.NotConverted = err.Error()
			g.warnAt(m.Pos(), "%s: not convertible: %v", strconv.Quote(m.Internal()), err)
			g.res.Summary.NotConverted++
			return h
		}
		d.path = p
	}
	if u != nil {
		u.dests = append(u.dests, d)
	} else {
		if old := g.sysByKey[d.key()+"\x00"+who.Name]; old != nil {
			old.srcs = append(old.srcs, src)
			d = old
		} else {
			g.sysByKey[d.key()+"\x00"+who.Name] = d
			g.sysDests = append(g.sysDests, d)
		}
	}
	h.Dest = d
	return h
}

// readForwards reads the .forward file of every selected user.
func (g *gen) readForwards() error {
	accts, err := g.pw.Select(g.cfg.Users, g.base.sys.MinUID)
	if err != nil {
		return err
	}
	for _, a := range accts {
		g.res.Summary.Users++
		if a.UID == 0 {
			g.diag(a.Home, 0, aliases.Warning, "%s has uid 0: lda never delivers as root; its %s is not read", a.Name, g.cfg.Forward)
			continue
		}
		h, err := openHome(a)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			g.diag(a.Home, 0, aliases.Error, "user %s: %v", a.Name, err)
			continue
		}
		g.res.homes = append(g.res.homes, h)
		u := &userState{acct: a, home: h, file: filepath.Join(a.Home, g.cfg.Forward)}
		g.users = append(g.users, u)
		data, err := h.read(g.cfg.Forward, ownerRule{uid: a.UID, rootReadable: true})
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			g.diag(u.file, 0, aliases.Error, "%v", err)
			g.res.Summary.ForwardsRefused++
			u.refused = true
			continue
		}
		g.res.Summary.Forwards++
		u.fwd = forward.Parse(data, u.file)
		g.res.Diags = append(g.res.Diags, u.fwd.Diags...)
		if u.fwd.Format != forward.List {
			continue
		}
		open := func(path string, by aliases.Element) (*aliases.Opened, error) {
			return readInclude(path, ownerRule{uid: a.UID, rootReadable: true})
		}
		members, diags := aliases.ExpandIncludes(u.fwd.Elements, open, aliases.Options{Home: true})
		g.res.Diags = append(g.res.Diags, diags...)
		u.members = members
		route := Route{Kind: "user", Name: a.Name, Pos: u.file}
		for _, m := range members {
			route.Hops = append(route.Hops, g.hop(m, a, source{pos: m.Pos(), what: a.Name + "'s " + g.cfg.Forward}, u))
		}
		u.routes = route.Hops
		g.res.Routes = append(g.res.Routes, route)
	}
	return nil
}

// programFor finds or makes the policy's name for a program destination
// run as runAs: a program of the base policy with the same argument
// vector (after %u), else a new name.
func (g *gen) programFor(d *dest) {
	names := make([]string, 0, len(g.programs))
	for n := range g.programs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if equalArgv(expandArgv(g.programs[n], d.runAs.Name), d.argv) {
			d.name = n
			return
		}
	}
	for l := 8; ; l += 4 {
		n := programName(d.argv, l)
		if g.programs[n] == nil {
			d.name = n
			g.programs[n] = d.argv
			g.newProgs[n] = d
			return
		}
	}
}

// comment is the generated line's comment: where, and as whom.
func comment(srcs []source, runAs []string) string {
	var parts []string
	for i, s := range srcs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(srcs)-3))
			break
		}
		parts = append(parts, s.pos+" ("+s.what+")")
	}
	c := strings.Join(parts, "; ")
	if len(runAs) > 0 {
		c += ", runs as " + strings.Join(runAs, ", ")
	}
	return sanitizeComment(c)
}

// sanitizeComment keeps a comment on one line of printable text.
func sanitizeComment(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// buildSystem decides the system file's generated lines and renders it.
func (g *gen) buildSystem() error {
	sys := g.base.sys
	var adds []addition
	addOnce := map[string]bool{}
	add := func(a addition) {
		k := a.section + "\x00" + a.text
		if !addOnce[k] {
			addOnce[k] = true
			adds = append(adds, a)
		}
	}
	// Candidate lines are checked one by one against the base policy, so
	// that one that lda-policy(5) refuses is reported, not fatal.
	try := func(cand []addition) error {
		_, err := parseSystemText(g.base.render(cand), g.base.file)
		var pe *policy.ParseError
		if errors.As(err, &pe) {
			// The line is in the candidate text, not in any file: say what.
			return errors.New("lda-policy(5) refuses the rule: " + pe.Msg)
		}
		return err
	}
	runAsOf := func(d *dest) []string { return []string{d.runAs.Name} }
	sysAllowed := map[string]bool{} // programs that the system file allows to everyone
	// Aliases: allow rules for everyone (the system file has no per-user
	// rules), each commented with its sources and the user it runs as.
	for _, d := range g.sysDests {
		if d.runAs.UID < sys.MinUID {
			g.warnAt(d.srcs[0].pos, "%s runs as %s (uid %d), below min_uid %d: lda will refuse to deliver as %s", d.describe(), d.runAs.Name, d.runAs.UID, sys.MinUID, d.runAs.Name)
		}
		var cand []addition
		if d.kind == policy.Program {
			g.programFor(d)
			if nd := g.newProgs[d.name]; nd != nil {
				cand = append(cand, addition{section: "programs", text: programLine(d.name, d.argv), comment: comment(nd.srcs, nil)})
			}
		}
		dec := (&policy.Policy{Sys: sys}).Check(d.runAs.User(), g.checkable(d))
		if dec.Allowed {
			d.allowedBy = dec.Rule.String()
			g.res.Summary.AlreadyAllowed++
			for _, c := range cand {
				add(c)
			}
			continue
		}
		if dec.Rule != nil && dec.Rule.Action == "deny" {
			d.rejected = "denied by " + dec.Rule.String()
			g.warnAt(d.srcs[0].pos, "%s is outside what %s allows: %s", d.describe(), g.base.file, dec.Reason)
			g.res.Summary.Outside++
			continue
		}
		text, err := g.ruleText(d, nil)
		if err == nil {
			cand = append(cand, addition{section: "allow", text: text, comment: comment(d.srcs, runAsOf(d))})
			err = try(cand)
		}
		if err != nil {
			d.rejected = err.Error()
			g.warnAt(d.srcs[0].pos, "%s: not added to the policy: %v", d.describe(), err)
			g.res.Summary.NotConverted++
			continue
		}
		for _, c := range cand {
			add(c)
		}
		if d.kind == policy.Program {
			sysAllowed[d.name] = true
		}
		g.res.Summary.SystemAdded++
	}
	// .forward programs: defined, and listed in user_may_add, so that the
	// user's own file may allow them; they run as the user.
	for _, u := range g.users {
		for _, d := range u.dests {
			if d.kind != policy.Program {
				continue
			}
			g.programFor(d)
			if nd := g.newProgs[d.name]; nd != nil && nd == d {
				add(addition{section: "programs", text: programLine(d.name, d.argv), comment: comment(d.srcs, nil)})
			}
			if g.baseLetsUserHave(d) || sysAllowed[d.name] {
				continue
			}
			if first := g.mayAdd[d.name]; first != nil {
				first.srcs = append(first.srcs, d.srcs...)
				continue
			}
			g.mayAdd[d.name] = d
		}
	}
	var mayNames []string
	for n := range g.mayAdd {
		mayNames = append(mayNames, n)
	}
	sort.Strings(mayNames)
	for _, n := range mayNames {
		d := g.mayAdd[n]
		var who []string
		seen := map[string]bool{}
		for _, s := range d.srcs {
			name := strings.TrimSuffix(s.what, "'s "+g.cfg.Forward)
			if !seen[name] {
				who = append(who, name)
				seen[name] = true
			}
		}
		add(addition{section: "user_may_add", text: "{program: " + yamlScalar(n) + "}", comment: comment(d.srcs, []string{"the user (" + strings.Join(who, ", ") + ")"})})
		g.res.Summary.SystemAdded++
	}
	sortAdditions(adds)
	text := g.base.render(adds)
	final, err := parseSystemText(text, g.cfg.Policy)
	if err != nil {
		return fmt.Errorf("internal error: the generated system file does not parse: %w", err)
	}
	g.finalSys, g.finalText = final, text
	out := &Output{Path: g.cfg.Policy, Role: "system policy", Content: []byte(text), UID: 0, GID: 0, Mode: 0o644}
	out.Old = readExisting(nil, g.cfg.Policy, false)
	g.res.Outputs = append(g.res.Outputs, out)
	return nil
}

// baseLetsUserHave reports whether the base policy already allows a
// .forward program to its user, or lets the user's file allow it.
func (g *gen) baseLetsUserHave(d *dest) bool {
	if _, ok := g.base.programs[d.name]; !ok {
		return false
	}
	return g.base.sys.Precheck(d.runAs.User(), d.destination()).Allowed
}

// checkable is d as the policy sees it: for a maildir whose last
// component is .FOLDER, the maildir's folder if the policy allows that.
func (g *gen) checkable(d *dest) policy.Destination {
	if d.kind == policy.Maildir && d.folder == "" {
		dir, last := filepath.Split(d.path)
		if f, ok := strings.CutPrefix(last, "."); ok && policy.ValidFolder(f) == nil && len(dir) > 1 {
			fd := policy.Destination{Kind: policy.Maildir, Path: strings.TrimSuffix(dir, "/"), Folder: f}
			if (&policy.Policy{Sys: g.base.sys}).Check(d.runAs.User(), fd).Allowed {
				d.path, d.folder = fd.Path, fd.Folder
			}
		}
	}
	return d.destination()
}

// ruleText writes the rule for d: {mbox: PATTERN}, {maildir: PATTERN}
// or {program: NAME}; with a home directory, paths beneath it as ~/.
func (g *gen) ruleText(d *dest, homeOf *Account) (string, error) {
	if d.kind == policy.Program {
		return "{program: " + yamlScalar(d.name) + "}", nil
	}
	var pat string
	var err error
	if homeOf != nil {
		pat, err = homePattern(d.path, homeOf.Home)
	} else {
		pat, err = literalPattern(d.path)
	}
	if err != nil {
		return "", err
	}
	if d.kind == policy.Maildir {
		return "{maildir: " + yamlScalar(pat) + ", folders: false}", nil
	}
	return "{mbox: " + yamlScalar(pat) + "}", nil
}

func sortAdditions(adds []addition) {
	order := func(a addition) string {
		t := a.text
		switch {
		case strings.HasPrefix(t, "{program:"):
			return "0" + t
		case strings.HasPrefix(t, "{mbox:"):
			return "1" + t
		}
		return "2" + t
	}
	sort.SliceStable(adds, func(i, j int) bool {
		if adds[i].section != adds[j].section {
			return adds[i].section < adds[j].section
		}
		return order(adds[i]) < order(adds[j])
	})
}

// Exists reports whether a file is at the output's path now.
func (e existing) Exists() bool { return e.exists }
