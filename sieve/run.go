package sieve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/foxcpp/go-sieve/interp"

	"lda/internal/status"
)

// Envelope is the SMTP envelope of one recipient.
type Envelope struct {
	From   string // the envelope sender (MAIL FROM); "" or "<>" for the null sender
	To     string // the original recipient address (RCPT TO), e.g. "user+lists@example.com"
	User   string // the local user To resolved to; informational, Sieve does not see it
	Detail string // the detail lda found in To; informational: Sieve's :user and :detail split To at its first "+"
}

// Outcome is the result of running the scripts for one recipient.
type Outcome struct {
	Actions      []Action // validated; an implicit keep appears as an explicit Keep action
	ScriptError  error    // non-nil: the script failed at runtime or produced invalid actions -> Actions is exactly [Keep]; tell the user
	EnvelopeOnly bool     // the decision did not depend on the message (only meaningful from RunEnvelope)
	// MessageFirst: the run read the message before anything of the
	// envelope, so for these scripts no envelope decides at RCPT time
	// (RunEnvelope is undecided for every envelope). From Run and from an
	// undecided RunEnvelope alike.
	MessageFirst bool
}

// TempError is a temporary failure of a run: the deadline passed, the
// context was cancelled, or the message could not be read. Run returns it
// wrapped in a *status.Status 451 4.3.0 (also available with errors.As).
type TempError struct{ Err error }

func (e *TempError) Error() string { return "sieve: temporary failure: " + e.Err.Error() }
func (e *TempError) Unwrap() error { return e.Err }

// ScriptError is a runtime failure of a script or an invalid action.
type ScriptError struct {
	Name string // the script
	Err  error
}

// Error is one line: it goes into the user's log file.
func (e *ScriptError) Error() string {
	if e.Name == "" {
		return oneLine(fmt.Sprintf("sieve: %v", e.Err))
	}
	return oneLine(fmt.Sprintf("sieve: script %s: %v", strconv.Quote(e.Name), e.Err))
}

// oneLine replaces control characters (CR, LF, NUL, ...) by "?".
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
func (e *ScriptError) Unwrap() error { return e.Err }

// errNeedsMessage is returned by the envelope-only message.
var errNeedsMessage = errors.New("sieve: the message is not available at RCPT time")

// Run executes the scripts in order (nil entries are skipped) on msg, as
// Pigeonhole executes sieve_before, the user's script and sieve_after:
//
//   - a script runs only if the previous one ended with keep in effect
//     (implicit, or explicit "keep"); otherwise the sequence ends;
//   - "keep" only lets the sequence go on: the keep is done once, at the
//     end, if the last script that ran keeps; its flags are those of the
//     last explicit keep of any script, or else the internal flags at the
//     end of the last script;
//   - every other action of every script that ran is part of the outcome;
//     a delivery (fileinto, fileinto "INBOX", redirect) already done by an
//     earlier script is not repeated;
//   - the imap4flags internal variable carries from one script to the next;
//     other variables do not;
//   - stop ends only the script that executes it.
//
// A runtime error or an invalid action in any script discards every
// action: the outcome is exactly [Keep] and ScriptError. The error result
// is only for temporary failures (deadline, cancellation, read errors); it
// is a *status.Status 451 4.3.0 and the caller must answer 4xx, not keep.
func Run(ctx context.Context, scripts []*Script, env Envelope, msg *Message, lim Limits) (Outcome, error) {
	if msg == nil {
		return Outcome{}, status.New(451, "4.3.0", "temporary failure in the Sieve filter").Wrap(&TempError{Err: errors.New("Run without a message")})
	}
	r := &reads{}
	out, _, err := run(ctx, scripts, env, r, func(c context.Context) interp.Message { return runMessage{m: msg, ctx: c, reads: r} }, lim)
	out.MessageFirst = r.first.Load()
	return out, err
}

// RunEnvelope evaluates the scripts at RCPT time with the envelope alone.
// decided is true only if no run read anything of the message (a header, an
// address, the size or the body); then the outcome cannot depend on the
// message, and out equals what Run returns for every message (with
// EnvelopeOnly set). When decided is false, the decision waits for the
// message, and out is the zero Outcome but for MessageFirst. A temporary
// failure returns an error and decided=false.
func RunEnvelope(ctx context.Context, scripts []*Script, env Envelope, lim Limits) (out Outcome, decided bool, err error) {
	r := &reads{}
	out, panicked, err := run(ctx, scripts, env, r, func(context.Context) interp.Message { return envMessage{reads: r} }, lim)
	if err != nil || r.msg.Load() || panicked {
		return Outcome{MessageFirst: err == nil && r.first.Load()}, false, err
	}
	out.EnvelopeOnly = true
	return out, true, nil
}

// reads records what a run read, and whether the message came first.
// Until a run reads the envelope, what it does is the same for every
// envelope (the environment is constant and Sieve has no other input); so
// if it reaches the message before the envelope, every envelope reaches the
// message there, and no envelope can decide at RCPT time.
type reads struct {
	env, msg atomic.Bool
	first    atomic.Bool // the message was read before anything of the envelope
}

func (r *reads) envelope() { r.env.Store(true) }

func (r *reads) message() {
	if !r.msg.Swap(true) && !r.env.Load() {
		r.first.Store(true)
	}
}

// envMessage is the message at RCPT time: every accessor records that the
// script needs the message; those that can fail return errNeedsMessage
// (go-sieve then stops), and MessageSize, which cannot, returns 0 after
// recording.
type envMessage struct{ reads *reads }

func (e envMessage) HeaderGet(string) ([]string, error) {
	e.reads.message()
	return nil, errNeedsMessage
}

func (e envMessage) MessageSize() int {
	e.reads.message()
	return 0
}

func (e envMessage) BodyRaw(context.Context) (io.Reader, error) {
	e.reads.message()
	return nil, errNeedsMessage
}

func (e envMessage) BodyParts(context.Context, []string) ([]interp.BodyPart, error) {
	e.reads.message()
	return nil, errNeedsMessage
}

// envelope adapts Envelope to go-sieve, recording every read.
type envelope struct {
	from, to string
	reads    *reads
}

func (e envelope) EnvelopeFrom() string { e.reads.envelope(); return e.from }
func (e envelope) EnvelopeTo() string   { e.reads.envelope(); return e.to }
func (e envelope) AuthUsername() string { e.reads.envelope(); return "" }

func newEnvelope(env Envelope, r *reads) envelope {
	unbracket := func(s string) string {
		s = strings.TrimSpace(s)
		if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
			s = s[1 : len(s)-1]
		}
		return s
	}
	return envelope{from: unbracket(env.From), to: unbracket(env.To), reads: r}
}

// environment is what the environment extension (RFC 5183) sees: constant,
// so that it never depends on the message or on the time of evaluation.
var environment = interp.MapEnv{
	"name":     "lda",
	"location": "MDA",
	"phase":    "during",
}

// flagAliases maps every spelling of the IMAP system flags to the canonical
// one, so that removeflag "\\seen" removes "\\Seen" (flags are
// case-insensitive, RFC 3501). go-sieve only reads it. Its 600 entries
// are made on a process's first run, not at every start (of root, the
// listener and every worker, most of which never run a script): they were
// the largest package initialisation of the binary.
var flagAliases = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for _, sf := range systemFlags {
		name := sf.canon[1:]
		n := len(name)
		for mask := 0; mask < 1<<n; mask++ {
			b := []byte(name)
			for i := 0; i < n; i++ {
				if mask&(1<<i) != 0 {
					b[i] = upper(b[i])
				} else {
					b[i] = lower(b[i])
				}
			}
			if v := `\` + string(b); v != sf.canon {
				m[v] = sf.canon
			}
		}
	}
	return m
})

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c - 'A' + 'a'
	}
	return c
}

// sequence is the state of one Run over its scripts.
type sequence struct {
	lim       Limits
	done      []Action       // actions of the scripts so far, keep excluded
	doneIdx   map[string]int // destination key -> index into done
	redirects map[string]bool
	actions   map[string]bool // distinct destinations, for MaxActions
	keepFlags []string        // flags of the last explicit keep
	explicit  bool            // some script executed keep
	reject    bool
}

// script is the state of one script run.
type scriptRun struct {
	acts     []Action // in order, duplicates merged (later flags win)
	idx      map[string]int
	keep     bool // explicit keep executed (the Keep in acts is deferred)
	reject   bool
	delivery bool // keep, fileinto or redirect executed
}

func destKey(a Action) string {
	switch a.Kind {
	case Keep:
		return "keep"
	case FileInto:
		return "fileinto:" + a.Folder
	case Redirect:
		return "redirect:" + a.Address
	case Reject:
		return "reject"
	case Discard:
		return "discard"
	}
	return "?"
}

// onAction validates each action as go-sieve records it, so that a bad
// action stops the script at once.
func (q *sequence) onAction(sr *scriptRun) func(context.Context, interp.AppliedAction, *interp.RuntimeData) error {
	return func(ctx context.Context, aa interp.AppliedAction, d *interp.RuntimeData) error {
		d.AppliedActions = append(d.AppliedActions, aa)
		var a Action
		explicitKeep := false
		switch v := aa.(type) {
		case interp.ActionKeep:
			if v.Implicit {
				return nil // computed by Run itself
			}
			a = Action{Kind: Keep, Flags: canonFlags(v.Flags)}
			explicitKeep = true
		case interp.ActionFileInto:
			folder, keep, err := folderName(v.Mailbox)
			if err != nil {
				return err
			}
			if keep {
				a = Action{Kind: Keep, Flags: canonFlags(v.Flags), Copy: v.Copy}
			} else {
				a = Action{Kind: FileInto, Folder: folder, Flags: canonFlags(v.Flags), Copy: v.Copy}
			}
		case interp.ActionRedirect:
			addr, err := ValidAddress(v.Address)
			if err != nil {
				return err
			}
			a = Action{Kind: Redirect, Address: addr, Copy: v.Copy}
		case interp.ActionReject:
			a = Action{Kind: Reject, Reason: reason(v.Reason)}
		case interp.ActionEReject:
			a = Action{Kind: Reject, Reason: reason(v.Reason), Ereject: true}
		case interp.ActionDiscard:
			a = Action{Kind: Discard}
		default:
			return fmt.Errorf("unknown action %T", aa)
		}
		// RFC 5429 section 2.1 (as Pigeonhole): one reject or ereject, never
		// with keep, fileinto or redirect.
		switch a.Kind {
		case Reject:
			if sr.reject {
				return errors.New("reject/ereject: a second reject is not allowed (RFC 5429)")
			}
			if sr.delivery {
				return errors.New("reject/ereject: not allowed together with keep, fileinto or redirect (RFC 5429)")
			}
			sr.reject = true
		case Keep, FileInto, Redirect:
			if sr.reject {
				return fmt.Errorf("%s: not allowed together with reject/ereject (RFC 5429)", a.Kind)
			}
			sr.delivery = true
		}
		key := destKey(a)
		if a.Kind == Redirect && !q.redirects[key] {
			q.redirects[key] = true
			if len(q.redirects) > q.lim.redirectCap() {
				return fmt.Errorf("redirect: more than %d distinct redirect addresses", q.lim.redirectCap())
			}
		}
		if !q.actions[key] {
			q.actions[key] = true
			if len(q.actions) > q.lim.MaxActions {
				return fmt.Errorf("more than %d distinct actions", q.lim.MaxActions)
			}
		}
		if explicitKeep {
			sr.keep = true // keep, rather than fileinto "INBOX", decides below
		}
		if i, ok := sr.idx[key]; ok {
			// Pigeonhole merges a duplicate: first place, later flags.
			sr.acts[i].Flags = a.Flags
			return nil
		}
		sr.idx[key] = len(sr.acts)
		sr.acts = append(sr.acts, a)
		return nil
	}
}

// run is Run and RunEnvelope. panicked reports a recovered panic (in
// go-sieve), which is also a script error.
func run(ctx context.Context, scripts []*Script, env Envelope, r *reads, newMsg func(context.Context) interp.Message, lim Limits) (out Outcome, panicked bool, err error) {
	lim = lim.WithDefaults()
	q := &sequence{
		lim:       lim,
		doneIdx:   map[string]int{},
		redirects: map[string]bool{},
		actions:   map[string]bool{},
	}
	envl := newEnvelope(env, r)
	var flags []string // the imap4flags internal variable
	keepInEffect := true
	for _, sc := range scripts {
		if sc == nil {
			continue
		}
		sr := &scriptRun{idx: map[string]int{}}
		sctx, cancel := context.WithTimeout(ctx, lim.Timeout)
		d := interp.NewRuntimeData(sc.s, interp.DummyPolicy{}, envl, newMsg(sctx))
		d.Env = environment
		d.FlagAliases = flagAliases()
		d.Flags = flags
		d.OnAction = q.onAction(sr)
		p, err := execute(sctx, sc.s, d)
		var te error
		if err != nil {
			te = temporary(sctx, ctx, err)
		}
		cancel()
		if p {
			panicked = true
		}
		if err != nil {
			if te != nil {
				return Outcome{}, panicked, status.New(451, "4.3.0", "temporary failure in the Sieve filter").Wrap(te)
			}
			return keepOnError(sc.Name, err), panicked, nil
		}
		flags = d.Flags
		// The script's implicit keep: not cancelled by any action it recorded
		// (go-sieve skips its own computation after stop).
		implicit := !sr.keep
		for _, a := range sr.acts {
			if !a.Copy {
				implicit = false
			}
		}
		for _, a := range sr.acts {
			key := destKey(a)
			if a.Kind == Keep && sr.keep {
				// An explicit keep is deferred to the end of the sequence.
				q.keepFlags = a.Flags
				q.explicit = true
				continue
			}
			if _, ok := q.doneIdx[key]; ok {
				continue // already done by an earlier script
			}
			q.doneIdx[key] = len(q.done)
			q.done = append(q.done, a)
			if a.Kind == Reject {
				q.reject = true
			}
		}
		keepInEffect = implicit || sr.keep
		if !keepInEffect {
			break
		}
	}
	var acts []Action
	for _, a := range q.done {
		if a.Kind == Discard {
			continue
		}
		if a.Kind == Keep {
			a.Copy = false
		}
		acts = append(acts, a)
	}
	if keepInEffect {
		kf := canonFlags(flags)
		if q.explicit {
			kf = q.keepFlags
		}
		if _, ok := q.doneIdx["keep"]; !ok {
			acts = append(acts, Action{Kind: Keep, Flags: kf})
		}
	}
	if q.reject && len(acts) > 1 {
		// Only possible across scripts: a delivery by one, a reject by a
		// later one. lda cannot both deliver and refuse the recipient.
		return keepOnError("", errors.New("reject/ereject: not allowed after a delivery by an earlier script")), panicked, nil
	}
	if len(acts) == 0 {
		acts = []Action{{Kind: Discard}}
	}
	return Outcome{Actions: acts}, panicked, nil
}

func keepOnError(name string, err error) Outcome {
	return Outcome{Actions: []Action{{Kind: Keep}}, ScriptError: &ScriptError{Name: name, Err: err}}
}

// temporary classifies a run error: deadline, cancellation and read errors
// are temporary; everything else is the script's fault.
func temporary(sctx, parent context.Context, err error) error {
	var ioe *ioError
	switch {
	case errors.As(err, &ioe):
		return &TempError{Err: err}
	case parent.Err() != nil:
		return &TempError{Err: parent.Err()}
	case sctx.Err() != nil:
		return &TempError{Err: fmt.Errorf("script ran longer than its limit: %w", sctx.Err())}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &TempError{Err: err}
	}
	return nil
}

// execute runs one script in its own goroutine so that the deadline holds
// even while go-sieve computes; a panic in go-sieve becomes an error. A
// context already done fails at once: otherwise a script quick enough to
// finish would race Done in the select, and which one won would be left
// to chance.
func execute(ctx context.Context, s *interp.Script, d *interp.RuntimeData) (panicked bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	type result struct {
		panicked bool
		err      error
	}
	ch := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				ch <- result{true, fmt.Errorf("internal error in the Sieve interpreter: %v", r)}
			}
		}()
		ch <- result{false, s.Execute(ctx, d)}
	}()
	select {
	case r := <-ch:
		return r.panicked, r.err
	case <-ctx.Done():
		// The goroutine stops at its next message access; its RuntimeData
		// is abandoned.
		return false, ctx.Err()
	}
}
