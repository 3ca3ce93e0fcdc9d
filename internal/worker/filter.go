package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/job"
	"lda/internal/status"
	"lda/policy"
	"lda/sieve"
)

// UserScripts are the user's active Sieve script, in order of preference:
// ours, then Dovecot's name for migrators. Both are read as the user, and
// may be symlinks (managesieve makes ~/.dovecot.sieve one): following them
// reads nothing the user could not read anyway.
var UserScripts = []string{".lda.sieve", ".dovecot.sieve"}

// UserLog is where script errors are written for the user to read.
const UserLog = ".lda-sieve.log"

var sieveLimits = sieve.Limits{}

// scriptCache keeps the scripts this worker loaded (a *sieve.Script is not
// changed by running it).
var scriptCache fileCache[struct{}, *sieve.Script]

// loadScripts returns the system before-script, the user's script and the
// system after-script that exist, in that order. A system script that does
// not load is the administrator's error: delivery waits (451 4.3.5). A
// user script that does not load is the user's: it is skipped (so the
// implicit keep applies) and reported in userErr.
//
// hp, if not nil, may say that no user script exists (see homeProbe), and
// is told when this job's lookups found no entry of either name.
func loadScripts(j *job.Job, hp *homeProbe) (scripts []*sieve.Script, userErr error, st *status.Status) {
	load := func(path string) (*sieve.Script, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		var fst unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
			return nil, err
		}
		if fst.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, fmt.Errorf("%s is not a regular file", path)
		}
		if s, ok := scriptCache.get(path, &fst, struct{}{}); ok {
			return s, nil
		}
		readAt := cacheClock()
		s, err := sieve.Load(f, path, sieveLimits)
		if err == nil {
			scriptCache.put(path, &fst, readAt, struct{}{}, s)
		}
		return s, err
	}
	system := func(name string) *status.Status {
		if j.SieveDir == "" {
			return nil
		}
		s, err := load(filepath.Join(j.SieveDir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return status.ConfigError.Wrapf("system sieve script: %v", err)
		}
		scripts = append(scripts, s)
		return nil
	}
	if st := system("before.sieve"); st != nil {
		return nil, nil, st
	}
	none := true // no entry of any of the names
	for _, name := range UserScripts {
		if hp.skip() {
			break
		}
		s, err := load(filepath.Join(j.Home, name))
		if errors.Is(err, os.ErrNotExist) {
			none = none && hp.recording() && noEntry(j.Home, name, err)
			continue
		}
		none = false
		if err != nil {
			userErr = err
		} else {
			scripts = append(scripts, s)
		}
		break
	}
	if hp != nil {
		hp.scriptsLooked, hp.noScripts = true, none
	}
	if st := system("after.sieve"); st != nil {
		return nil, nil, st
	}
	return scripts, userErr, nil
}

// userLog appends one line to ~/.lda-sieve.log, as the user, so that they
// learn why their script did not do what they meant.
func userLog(j *job.Job, format string, args ...any) {
	path := filepath.Join(j.Home, UserLog)
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return
	}
	fmt.Fprintf(f, "%s %s\n", time.Now().Format(time.RFC3339), status.Sanitize(fmt.Sprintf(format, args...)))
}

func envelope(j *job.Job) sieve.Envelope {
	env := sieve.Envelope{From: j.Sender, To: j.Recipient, User: j.User}
	local := j.Recipient
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local = local[:i]
	}
	if _, d, ok := strings.Cut(local, "+"); ok {
		env.Detail = d
	}
	return env
}

// describe renders actions in the wire form of lda-lmtp(7).
func describe(actions []sieve.Action) []string {
	var out []string
	for _, a := range actions {
		switch a.Kind {
		case sieve.Keep:
			out = append(out, "keep")
		case sieve.FileInto:
			out = append(out, "fileinto "+a.Folder)
		case sieve.Redirect:
			out = append(out, "redirect "+a.Address)
		case sieve.Reject:
			out = append(out, "reject "+a.Reason)
		case sieve.Discard:
			out = append(out, "discard")
		}
	}
	if len(out) == 0 {
		out = []string{"discard"}
	}
	return out
}

// rejection returns the per-recipient reply for a reject action, if any.
func rejection(actions []sieve.Action) *status.Status {
	for _, a := range actions {
		if a.Kind == sieve.Reject {
			text := status.Sanitize(a.Reason)
			if text == "" {
				text = "rejected by the recipient's filter"
			}
			return &status.Status{Code: 550, Enhanced: "5.7.1", Text: text}
		}
	}
	return nil
}

// filter runs the user's filter for a default-destination job. handled is
// false when there is no script at all, so that the plain default delivery
// applies.
func filter(p *policy.Policy, u policy.User, t *task, res *job.Result) (handled bool) {
	j := t.Job
	scripts, userErr, st := loadScripts(j, t.home)
	if st != nil {
		res.Status = st
		return true
	}
	if userErr != nil {
		userLog(j, "your Sieve script was not used (the message was kept): %v", userErr)
		res.Warning = "user sieve script: " + userErr.Error()
	}
	if len(scripts) == 0 {
		res.SkipRcpt = userErr == nil
		if j.Mode == job.ModeEnvelope || j.Mode == job.ModeFilter {
			res.Status, res.Actions, res.Decided = status.Delivered, []string{"keep"}, true
			return true
		}
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := envelope(j)
	if j.Mode == job.ModeEnvelope {
		out, decided, err := sieve.RunEnvelope(ctx, scripts, env, sieveLimits)
		if err != nil {
			res.Status = status.Unknown.Wrapf("sieve at RCPT time: %v", err)
			t.retire = true
			return true
		}
		res.Decided = decided && out.ScriptError == nil
		res.SkipRcpt = out.MessageFirst
		res.Actions = describe(out.Actions)
		res.Status = status.Delivered
		if res.Decided {
			if r := rejection(out.Actions); r != nil {
				res.Status = r
			}
		}
		return true
	}
	if t.msg == nil {
		res.Status = status.Unknown.Wrapf("sieve: no message descriptor")
		return true
	}
	msg, err := sieve.ParseMessage(io.NewSectionReader(t.msg, 0, j.Size), j.Size, sieveLimits)
	if err != nil {
		res.Status = status.From(fmt.Errorf("sieve: read message: %w", err))
		return true
	}
	out, err := sieve.Run(ctx, scripts, env, msg, sieveLimits)
	if err != nil {
		// A temporary failure (time limit, I/O): 4xx, not keep.
		res.Status = status.Unknown.Wrapf("sieve: %v", err)
		t.retire = true
		return true
	}
	if out.ScriptError != nil {
		userLog(j, "your Sieve script failed, so the message was kept in your inbox: %v", out.ScriptError)
		res.Warning = "sieve: " + out.ScriptError.Error()
	}
	res.Actions = describe(out.Actions)
	res.SkipRcpt = out.MessageFirst
	if r := rejection(out.Actions); r != nil {
		res.Status = r
		return true
	}
	if j.Mode == job.ModeFilter {
		res.Status = status.New(250, "2.0.0", "filtered, nothing delivered")
		return true
	}
	res.Status = perform(p, u, t, out.Actions, res)
	return true
}

// perform carries out keep, fileinto and discard under the policy. A
// fileinto that the policy refuses is kept in the inbox instead, and the
// user is told. Redirects are only reported (the MTA or the listener
// sends them). The first failure stops the rest: a retry may then deliver
// a copy twice, but never loses one.
func perform(p *policy.Policy, u policy.User, t *task, actions []sieve.Action, res *job.Result) *status.Status {
	j := t.Job
	def, dec := p.Default(u)
	if !dec.Allowed {
		return refusal(dec)
	}
	done := map[string]bool{}
	var where []string
	for _, a := range actions {
		if a.Kind != sieve.Keep && a.Kind != sieve.FileInto {
			continue
		}
		d, dd := def, dec
		if a.Kind == sieve.FileInto && a.Folder != "" {
			if def.Kind != policy.Maildir {
				userLog(j, "fileinto %q: your default mailbox is not a Maildir; kept in the inbox", a.Folder)
			} else {
				d.Folder = a.Folder
				if dd = p.Check(u, d); !dd.Allowed {
					userLog(j, "fileinto %q refused by policy (%s); kept in the inbox", a.Folder, dd.Reason)
					d, dd = def, dec
				}
			}
		}
		key := d.String()
		if done[key] {
			continue
		}
		done[key] = true
		var st *status.Status
		switch d.Kind {
		case policy.Maildir:
			var w string
			w, st = deliverMaildirFlags(t, dd, d.Folder, sieve.MaildirFlags(a.Flags), messageReader(t))
			where = append(where, filepath.Join(d.Path, w))
		case policy.Mbox:
			sys := p.Sys
			st = deliverMbox(sys, dd, t, messageReader(t), nil)
			where = append(where, d.String())
		default:
			st = status.ConfigError.Wrapf("sieve: default destination %s cannot take keep", d)
		}
		if !st.OK() {
			return st
		}
	}
	res.Where = strings.Join(where, ", ")
	return status.Delivered
}
