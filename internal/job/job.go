// Package job is the one wire format between the root side of lda and a
// per-delivery worker. A job travels to the worker on its standard input;
// the result comes back on its standard output. Both are short, versioned,
// line-oriented records:
//
//	lda-job 1            lda-result 1
//	key value            progress OFFSET DEV INO FROMLINE
//	...                  status CODE ENHANCED TEXT
//	end                  key value ... end
//
// Every value is RFC 3461 xtext, so no record can carry a raw CR, LF, NUL
// or space. Keys are fixed, each may appear once, and unknown keys, a
// missing "end", trailing bytes or an oversized record are errors.
//
// Security: the root side trusts nothing it reads here. Decode validates
// every field (user names and paths with the policy's own lexical checks,
// numbers without signs or leading zeros, reply codes with status.Validate,
// and the values a worker writes into header lines, sender, recipient and
// Received, as valid UTF-8 without C0 or C1 controls, U+2028 or U+2029)
// before anything acts on it. The worker decodes the job with the same
// strictness, because it must not assume the parent is the only writer of
// its standard input; a direct worker's jobs come from the unprivileged
// listener, and only its first record (ModeBind) from root. (The
// listener's first record is not a job: it is package seqpacket's reply
// record, "lda-reply 1" and nothing else, carrying the socket the worker
// answers on; a warm worker reads the same from root before any job.)
// The recovery record a direct worker leaves for root (recovery.go) is a
// job too, and root decodes it as strictly and checks that it names the
// worker's own user before acting on it.
package job

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"lda/internal/affinity"
	"lda/internal/status"
	"lda/internal/xtext"
	"lda/maildir"
	"lda/policy"
)

// Version is the only job and result version this binary speaks.
const Version = 1

// MaxRecord bounds a job or a result, in bytes.
const MaxRecord = 16 << 10

// Modes of a job.
const (
	ModeDeliver = "deliver" // deliver the message on fd 3
	ModeExplain = "explain" // report the policy decision, change nothing
	ModeRecover = "recover" // undo a partial mbox append described by Recover
	// ModeFilter runs the user's Sieve filter on the message and reports
	// the actions without performing any (XLDA-FILTER=only).
	ModeFilter = "filter"
	// ModeEnvelope evaluates the filter at RCPT time, with the envelope
	// alone, and reports whether that decided the outcome.
	ModeEnvelope = "envelope"
	// ModeBind is the first record a direct worker reads, written by root
	// before the listener gets the other end of the socket: it binds the
	// worker to one user, home, policy and Sieve directory for life.
	ModeBind = "bind"
)

// Kinds of destination in a job. "default" asks the worker for the user's
// effective default destination.
const (
	KindDefault = "default"
	KindMbox    = "mbox"
	KindMaildir = "maildir"
	KindProgram = "program"
)

// Progress says where an mbox append is about to start, so that a dead
// worker's partial message can be cut off again.
type Progress struct {
	Offset   int64
	Dev, Ino uint64
	FromLine string
}

// Job is one delivery instruction for one user.
type Job struct {
	Mode      string
	User      string
	UID, GID  int
	Home      string
	Kind      string
	Path      string
	Folder    string
	Program   string
	Sender    string
	Recipient string
	Headers   bool   // prepend Return-Path and Delivered-To
	Received  string // with Headers: the value of a Received line to prepend too ("" for none)
	Policy    string // "embedded", or the system policy's path (its content is on fd 4)
	SieveDir  string // "" or the directory of the system's before.sieve and after.sieve
	Size      int64  // bytes of the message on fd 3
	Recover   *Progress
	// RecoverTmp: in ModeRecover for a Maildir, the tmp/ file a dead
	// worker may have left (maildir.RemoveTmp), instead of Recover.
	RecoverTmp string
	// Gather: the listener runs gathered on CPU (package affinity), and
	// asks the direct worker to run there too. Only a deliver, filter or
	// envelope job carries it; a worker whose starting mask lacks CPU
	// runs spread.
	Gather bool
	CPU    int
}

// MaxCPU bounds Job.CPU: the CPUs a unix.CPUSet can hold.
const MaxCPU = affinity.MaxCPU

// Encode returns the wire form of j. It validates j first, so that the
// parent can never send what the worker would refuse.
func (j *Job) Encode() ([]byte, error) {
	// One buffer sized for a typical job: no fmt, and no copy for the
	// values xtext leaves as they are.
	return j.AppendEncode(make([]byte, 0, 512))
}

// AppendEncode appends j's record to b, as Encode returns it, for a
// caller that reuses one buffer (a warm worker's recovery record). On
// error it returns b unchanged.
func (j *Job) AppendEncode(b []byte) ([]byte, error) {
	if err := j.Validate(); err != nil {
		return b, err
	}
	start := len(b)
	b = append(b, "lda-job "...)
	b = strconv.AppendInt(b, Version, 10)
	b = append(b, '\n')
	kv := func(k, v string) {
		b = append(b, k...)
		b = append(b, ' ')
		b = xtext.Append(b, v)
		b = append(b, '\n')
	}
	num := func(k string, n int64) { // digits need no xtext
		b = append(b, k...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, n, 10)
		b = append(b, '\n')
	}
	kv("mode", j.Mode)
	kv("user", j.User)
	num("uid", int64(j.UID))
	num("gid", int64(j.GID))
	kv("home", j.Home)
	kv("kind", j.Kind)
	kv("path", j.Path)
	kv("folder", j.Folder)
	kv("program", j.Program)
	kv("sender", j.Sender)
	kv("recipient", j.Recipient)
	kv("headers", strconv.FormatBool(j.Headers))
	kv("received", j.Received)
	kv("policy", j.Policy)
	kv("sievedir", j.SieveDir)
	num("size", j.Size)
	if p := j.Recover; p != nil {
		b = appendProgress(b, "recover", p)
	}
	if j.RecoverTmp != "" {
		kv("recovertmp", j.RecoverTmp)
	}
	if j.Gather {
		num("cpu", int64(j.CPU))
	}
	b = append(b, "end\n"...)
	if len(b)-start > MaxRecord {
		return b[:start], errors.New("job: record too large")
	}
	return b, nil
}

// appendProgress appends the line "key offset dev ino fromline".
func appendProgress(b []byte, key string, p *Progress) []byte {
	b = append(b, key...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, p.Offset, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, p.Dev, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, p.Ino, 10)
	b = append(b, ' ')
	b = xtext.Append(b, p.FromLine)
	return append(b, '\n')
}

// Validate checks every field of j.
func (j *Job) Validate() error {
	switch j.Mode {
	case ModeDeliver, ModeExplain, ModeRecover, ModeFilter, ModeEnvelope:
	case ModeBind:
		if j.Kind != KindDefault || j.Path != "" || j.Program != "" || j.Folder != "" || j.Size != 0 || j.Recover != nil {
			return errors.New("job: a bind record names a user only")
		}
	default:
		return fmt.Errorf("job: bad mode %q", j.Mode)
	}
	if err := policy.ValidUserName(j.User); err != nil {
		return fmt.Errorf("job: user: %w", err)
	}
	if j.UID < 1 || j.GID < 0 {
		return fmt.Errorf("job: bad uid/gid %d/%d", j.UID, j.GID)
	}
	if err := policy.ValidPath(j.Home); err != nil {
		return fmt.Errorf("job: home: %w", err)
	}
	switch j.Kind {
	case KindDefault:
		if j.Path != "" || j.Program != "" {
			return errors.New("job: default destination with a path or program")
		}
	case KindMbox, KindMaildir:
		if err := policy.ValidPath(j.Path); err != nil {
			return fmt.Errorf("job: path: %w", err)
		}
		if j.Program != "" || (j.Kind == KindMbox && j.Folder != "") {
			return errors.New("job: stray program or folder")
		}
	case KindProgram:
		if policy.ValidProgramName(j.Program) != nil || j.Path != "" || j.Folder != "" {
			return fmt.Errorf("job: bad program %q", j.Program)
		}
	default:
		return fmt.Errorf("job: bad kind %q", j.Kind)
	}
	if j.Folder != "" {
		if err := policy.ValidFolder(j.Folder); err != nil {
			return fmt.Errorf("job: folder: %w", err)
		}
	}
	for _, f := range []struct{ name, v string }{{"sender", j.Sender}, {"recipient", j.Recipient}} {
		if err := validAddress(f.v); err != nil {
			return fmt.Errorf("job: %s: %w", f.name, err)
		}
	}
	if err := validLine(j.Received); err != nil || strings.Contains(j.Received, "\n") || headerText(j.Received) != nil {
		return fmt.Errorf("job: received: bad header value")
	}
	if j.SieveDir != "" && policy.ValidPath(j.SieveDir) != nil {
		return fmt.Errorf("job: bad sieve directory")
	}
	if (j.Mode == ModeFilter || j.Mode == ModeEnvelope) && j.Kind != KindDefault {
		return fmt.Errorf("job: %s applies to the default destination only", j.Mode)
	}
	if j.Policy != "embedded" && policy.ValidPath(j.Policy) != nil {
		return fmt.Errorf("job: bad policy source %q", j.Policy)
	}
	if j.Size < 0 {
		return errors.New("job: negative size")
	}
	if (j.Mode == ModeRecover) != (j.Recover != nil || j.RecoverTmp != "") || (j.Recover != nil && j.RecoverTmp != "") {
		return errors.New("job: recover mode and one recover record must go together")
	}
	if j.RecoverTmp != "" && ((j.Kind != KindMaildir && j.Kind != KindDefault) || maildir.ValidTmpName(j.RecoverTmp) != nil) {
		return errors.New("job: bad maildir recover record")
	}
	if j.Recover != nil && ((j.Kind != KindMbox && j.Kind != KindDefault) || j.Recover.Offset < 0 || validLine(j.Recover.FromLine) != nil) {
		return errors.New("job: bad recover record")
	}
	if j.Gather && (j.CPU < 0 || j.CPU > MaxCPU || (j.Mode != ModeDeliver && j.Mode != ModeFilter && j.Mode != ModeEnvelope)) {
		return errors.New("job: bad cpu")
	}
	if !j.Gather && j.CPU != 0 {
		return errors.New("job: cpu without gathering")
	}
	return nil
}

// validAddress accepts an envelope address: valid UTF-8 (RFC 6531) with
// no control character and no Unicode line break (headerText), at most
// 512 bytes (a space can only be part of an RFC 5321 quoted local part,
// which the LMTP engine has checked). The empty string is the null sender
// or an absent recipient.
func validAddress(s string) error {
	if len(s) > 512 {
		return errors.New("address too long")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return errors.New("control character in address")
		}
	}
	return headerText(s)
}

// headerText checks the non-ASCII part of a value that a worker writes
// into a header line (Return-Path, Delivered-To, Received): valid UTF-8,
// as RFC 6532 requires of a header, with no C1 control and no character
// at which a Unicode-aware reader ends a line (status.UnicodeLineBreak),
// which would make the rest of the value a header of its own. ASCII
// controls are the callers'.
func headerText(s string) error {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return nil // ASCII, as nearly every address is
	}
	s = s[i:]
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if (r >= 0x80 && r < 0xa0) || status.UnicodeLineBreak(r) {
			return fmt.Errorf("control character or line break U+%04X", r)
		}
	}
	return nil
}

func validLine(s string) error {
	if len(s) > 1024 {
		return errors.New("line too long")
	}
	for i := 0; i < len(s); i++ {
		if (s[i] < ' ' && s[i] != '\t' && !(s[i] == '\n' && i == len(s)-1)) || s[i] == 0x7f {
			return errors.New("control character in line")
		}
	}
	return nil
}

// keySet is the fixed list of keys one kind of record may carry. A
// record holds at most one value per key, so its values fit in an array
// indexed by the key's place in the list: no map per record.
type keySet []string

// maxKeys bounds a keySet, so that a record's values fit in one array and
// which keys were seen fits in one word.
const maxKeys = 20

func (ks keySet) index(k string) int {
	for i, name := range ks {
		if name == k {
			return i
		}
	}
	return -1
}

// fields are the values of a parsed record, by key.
type fields struct {
	keys keySet
	vals [maxKeys]string
	seen uint32 // bit i: keys[i] was present
}

// lookup returns the value of k and whether the record carried it.
func (f *fields) lookup(k string) (string, bool) {
	i := f.keys.index(k)
	if i < 0 || f.seen&(1<<i) == 0 {
		return "", false
	}
	return f.vals[i], true
}

// get returns the value of k, or "" if the record did not carry it.
func (f *fields) get(k string) string {
	v, _ := f.lookup(k)
	return v
}

// missing returns the first key of f's set that the record lacks, other
// than those in optional, or "".
func (f *fields) missing(optional ...string) string {
	for i, k := range f.keys {
		if f.seen&(1<<i) == 0 && !slices.Contains(optional, k) {
			return k
		}
	}
	return ""
}

// record is a parsed "lda-job 1" or "lda-result 1" record.
type record struct {
	fields   fields
	progress *Progress
	complete bool
}

var errTruncated = errors.New("job: record has no end line")

// parse reads data into rec, which the caller owns (so that a record
// costs no allocation of its own). A record without its end line returns
// errTruncated, leaving what it had in rec for a caller that can use a
// partial record (DecodeResult: a dead worker's progress line).
func parse(data []byte, magic string, keys keySet, rec *record) error {
	if len(data) > MaxRecord {
		return errors.New("job: record too large")
	}
	if len(keys) > maxKeys {
		panic("job: key set too large")
	}
	// The record is in memory already: it is copied into one string, and
	// its lines (and the values, which xtext mostly leaves as they are)
	// are cut out of that, not copied through a scanner's buffer (4 KiB
	// per record, on every job and every result). A "\r" stays in its
	// line, where no key or xtext value accepts it.
	rest := string(data)
	next := func() (string, bool) {
		if len(rest) == 0 {
			return "", false
		}
		line, after, _ := strings.Cut(rest, "\n")
		rest = after
		return line, true
	}
	first, ok := next()
	if !ok || first != magic+" "+strconv.Itoa(Version) {
		return fmt.Errorf("job: not a version %d %s record", Version, magic)
	}
	*rec = record{fields: fields{keys: keys}}
	consumed := len(first) + 1
	for {
		line, ok := next()
		if !ok {
			break
		}
		consumed += len(line) + 1
		if line == "end" {
			rec.complete = true
			break
		}
		k, v, ok := strings.Cut(line, " ")
		if !ok && line != "" {
			k, v = line, ""
		}
		i := keys.index(k)
		if k == "progress" || k == "recover" {
			if rec.progress != nil {
				return fmt.Errorf("job: duplicate %s", k)
			}
			if i < 0 {
				return fmt.Errorf("job: unexpected key %q", k)
			}
			p, err := parseProgress(v)
			if err != nil {
				return err
			}
			rec.progress = p
			continue
		}
		if i < 0 {
			return fmt.Errorf("job: unknown key %q", k)
		}
		if rec.fields.seen&(1<<i) != 0 {
			return fmt.Errorf("job: duplicate key %q", k)
		}
		dv, err := xtext.Decode(v)
		if err != nil {
			return fmt.Errorf("job: key %q: %w", k, err)
		}
		rec.fields.vals[i] = dv
		rec.fields.seen |= 1 << i
	}
	if !rec.complete {
		return errTruncated
	}
	if consumed != len(data) {
		return errors.New("job: bytes after end line")
	}
	return nil
}

func parseProgress(v string) (*Progress, error) {
	f := strings.Split(v, " ")
	if len(f) != 4 {
		return nil, errors.New("job: malformed progress record")
	}
	off, err1 := parseUint(f[0])
	dev, err2 := parseUint(f[1])
	ino, err3 := parseUint(f[2])
	line, err4 := xtext.Decode(f[3])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, fmt.Errorf("job: malformed progress record: %w", err)
	}
	if off > 1<<62 {
		return nil, errors.New("job: progress offset out of range")
	}
	if err := validLine(line); err != nil || !strings.HasPrefix(line, "From ") {
		return nil, errors.New("job: bad From_ line in progress record")
	}
	return &Progress{Offset: int64(off), Dev: dev, Ino: ino, FromLine: line}, nil
}

// parseUint accepts canonical decimal only: no sign, no leading zero.
func parseUint(s string) (uint64, error) {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad number %q", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

var jobKeys = keySet{
	"mode", "user", "uid", "gid", "home", "kind",
	"path", "folder", "program", "sender", "recipient",
	"headers", "received", "policy", "sievedir", "size", "recover",
	"recovertmp", "cpu",
}

// Decode parses and validates a job record.
func Decode(data []byte) (*Job, error) {
	var rec record
	if err := parse(data, "lda-job", jobKeys, &rec); err != nil {
		return nil, err
	}
	f := &rec.fields
	if k := f.missing("recover", "recovertmp", "cpu"); k != "" {
		return nil, fmt.Errorf("job: missing key %q", k)
	}
	uid, err1 := parseUint(f.get("uid"))
	gid, err2 := parseUint(f.get("gid"))
	size, err3 := parseUint(f.get("size"))
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("job: %w", err)
	}
	if uid > 1<<31-1 || gid > 1<<31-1 || size > 1<<62 {
		return nil, errors.New("job: number out of range")
	}
	var headers bool
	switch f.get("headers") {
	case "true":
		headers = true
	case "false":
	default:
		return nil, errors.New("job: bad headers flag")
	}
	j := &Job{
		Mode: f.get("mode"), User: f.get("user"), UID: int(uid), GID: int(gid), Home: f.get("home"),
		Kind: f.get("kind"), Path: f.get("path"), Folder: f.get("folder"), Program: f.get("program"),
		Sender: f.get("sender"), Recipient: f.get("recipient"), Headers: headers, Received: f.get("received"),
		Policy: f.get("policy"), SieveDir: f.get("sievedir"), Size: int64(size), Recover: rec.progress,
		RecoverTmp: f.get("recovertmp"),
	}
	if v, ok := f.lookup("cpu"); ok {
		cpu, err := parseUint(v)
		if err != nil || cpu > MaxCPU {
			return nil, errors.New("job: bad cpu")
		}
		j.Gather, j.CPU = true, int(cpu)
	}
	if err := j.Validate(); err != nil {
		return nil, err
	}
	return j, nil
}

// Result is what a worker reports.
type Result struct {
	Progress *Progress // set once an mbox append has started
	Status   *status.Status
	Detail   string // the cause, for the log only
	Where    string // where the message went, for the log only
	Rule     string // the policy rule that decided
	Warning  string // e.g. an ignored per-user policy file
	// Actions are the Sieve actions taken (or, in ModeFilter and
	// ModeEnvelope, that would be taken), in the wire form of lda-lmtp(7):
	// "keep", "fileinto FOLDER", "redirect ADDRESS", "reject REASON",
	// "discard".
	Actions []string
	Decided bool // ModeEnvelope: the envelope alone decided the outcome
	// SkipRcpt: RCPT-time evaluation can decide nothing for this user
	// (a default-destination job only): there is no script at all (theirs
	// or the system's), or the scripts read the message before anything
	// of the envelope, so that no envelope can decide at RCPT time
	// (sieve.Outcome.MessageFirst). On the wire it keeps its first name,
	// "nofilter", so that processes started from a binary replaced under a
	// running daemon still understand each other.
	SkipRcpt bool
}

var resultKeys = keySet{
	"progress", "status", "detail", "where", "rule", "warning",
	"actions", "decided", "nofilter",
}

// ResultHeader is the first line of a result; a worker writes it, then
// an optional progress line, then the rest (AppendResultBody).
func ResultHeader() []byte { return AppendResultHeader(nil) }

// AppendResultHeader appends the header line to b.
func AppendResultHeader(b []byte) []byte {
	b = append(b, "lda-result "...)
	b = strconv.AppendInt(b, Version, 10)
	return append(b, '\n')
}

// EncodeProgress is the progress line.
func EncodeProgress(p Progress) []byte {
	return appendProgress(make([]byte, 0, 128), "progress", &p)
}

// AppendResultBody appends everything after the header and progress lines
// to b, which a warm worker reuses from one result to the next.
func AppendResultBody(b []byte, r *Result) []byte {
	st := r.Status
	b = append(b, "status "...)
	// The xtext of "code enhanced text", a piece at a time: xtext encodes
	// byte by byte, and the code's digits are left as they are.
	b = strconv.AppendInt(b, int64(st.Code), 10)
	b = xtext.Append(b, " ")
	b = xtext.Append(b, st.Enhanced)
	b = xtext.Append(b, " ")
	b = xtext.Append(b, status.Sanitize(st.Text))
	b = append(b, '\n')
	kv := func(k, v string) {
		if v != "" {
			b = append(b, k...)
			b = append(b, ' ')
			b = xtext.Append(b, clip(v, 2048))
			b = append(b, '\n')
		}
	}
	kv("detail", r.Detail)
	kv("where", r.Where)
	kv("rule", r.Rule)
	kv("warning", r.Warning)
	kv("actions", EncodeActions(r.Actions))
	if r.Decided {
		kv("decided", "true")
	}
	if r.SkipRcpt {
		kv("nofilter", "true")
	}
	return append(b, "end\n"...)
}

// MaxActions bounds an action list crossing a process boundary.
const MaxActions = 64

// EncodeActions joins actions with TAB (each action is one line without
// TAB, CR, LF or NUL; anything else is replaced).
func EncodeActions(actions []string) string {
	clean := make([]string, 0, len(actions))
	for i, a := range actions {
		if i == MaxActions {
			break
		}
		clean = append(clean, status.Sanitize(a))
	}
	return strings.Join(clean, "\t")
}

// Redirects returns the addresses of the redirect actions in actions.
func Redirects(actions []string) []string {
	var to []string
	for _, a := range actions {
		if addr, ok := strings.CutPrefix(a, "redirect "); ok {
			to = append(to, addr)
		}
	}
	return to
}

// DecodeActions splits and sanitizes an action list.
func DecodeActions(s string) []string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, "\t")
	if len(parts) > MaxActions {
		parts = parts[:MaxActions]
	}
	for i := range parts {
		parts[i] = status.Sanitize(parts[i])
	}
	return parts
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// ErrIncomplete is returned by DecodeResult when the worker stopped
// before its end line; the returned Result may still carry Progress.
var ErrIncomplete = errors.New("job: worker result incomplete")

// DecodeResult parses a worker's output. The status line is validated:
// its codes must agree (RFC 3463) and its text is reduced to one safe line.
func DecodeResult(data []byte) (*Result, error) {
	var rec record
	err := parse(data, "lda-result", resultKeys, &rec)
	if err != nil && err != errTruncated {
		return nil, err
	}
	r := &Result{Progress: rec.progress}
	if err == errTruncated {
		return r, ErrIncomplete
	}
	f := &rec.fields
	line, ok := f.lookup("status")
	if !ok {
		return nil, errors.New("job: result without status")
	}
	st, err := parseStatus(line)
	if err != nil {
		return nil, err
	}
	r.Status = st
	r.Detail, r.Where, r.Rule, r.Warning = status.Sanitize(f.get("detail")), status.Sanitize(f.get("where")), status.Sanitize(f.get("rule")), status.Sanitize(f.get("warning"))
	r.Actions = DecodeActions(f.get("actions"))
	switch f.get("decided") {
	case "", "false":
	case "true":
		r.Decided = true
	default:
		return nil, errors.New("job: bad decided flag")
	}
	switch f.get("nofilter") {
	case "", "false":
	case "true":
		r.SkipRcpt = true
	default:
		return nil, errors.New("job: bad nofilter flag")
	}
	return r, nil
}
