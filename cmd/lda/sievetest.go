package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"lda/internal/delivery"
	"lda/internal/job"
	"lda/internal/status"
	"lda/sieve"
)

// cmdSieveTest prints what a Sieve filter would do with a message, and
// whether the envelope alone decided it, changing nothing.
//
//	lda sieve-test -script FILE [-f SENDER] [-a RCPT] [MESSAGE]
//	lda sieve-test -u USER     [-f SENDER] [-a RCPT] [MESSAGE]
//
// With -script the file is run in this process, as the invoking user.
// With -u the user's own scripts (and the system's before/after scripts)
// are run by a worker as that user, exactly as for a delivery.
func cmdSieveTest(args []string) int {
	fs := flag.NewFlagSet("sieve-test", flag.ContinueOnError)
	var c common
	c.register(fs)
	script := fs.String("script", "", "a Sieve script to run")
	user := fs.String("u", "", "run this user's scripts, as the user")
	sender := fs.String("f", "sender@example.org", "envelope sender")
	rcpt := fs.String("a", "", "envelope recipient (default: the user, or recipient@example.org)")
	c.log = "none"
	if err := fs.Parse(args); err != nil {
		return status.ExUsage
	}
	if (*script == "") == (*user == "") || fs.NArg() > 1 {
		return fail(status.ExUsage, "usage: lda sieve-test (-script FILE | -u USER) [-f SENDER] [-a RCPT] [MESSAGE]")
	}
	in := io.Reader(os.Stdin)
	if fs.NArg() == 1 {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return fail(status.ExNoInput, "%v", err)
		}
		defer f.Close()
		in = f
	}
	spool, size, st := spoolMessage(in, 100<<20)
	if st != nil {
		return fail(st.Exit(), "%s", st.Reply())
	}
	defer spool.Close()
	if *script != "" {
		return sieveTestScript(*script, *sender, *rcpt, spool, size)
	}
	agent, _, err := c.agent()
	if err != nil {
		return fail(status.ExConfig, "%v", err)
	}
	u, st := c.lookupUser(*user)
	if st != nil {
		return fail(st.Exit(), "%s: %v", st.Reply(), st.Cause)
	}
	if *rcpt == "" {
		*rcpt = u.Name
	}
	req := delivery.Request{User: u, Kind: job.KindDefault, Sender: *sender, Recipient: *rcpt, Message: spool, Size: size}
	req.Mode = job.ModeEnvelope
	env := agent.Deliver(context.Background(), req)
	req.Mode = job.ModeFilter
	full := agent.Deliver(context.Background(), req)
	if full.Result == nil {
		return fail(full.Status.Exit(), "%s", full.Status.Reply())
	}
	printSieveTest(os.Stdout, fmt.Sprintf("user %s", u.Name), env.Result != nil && env.Result.Decided, full.Result.Actions, full.Status, full.Result.Warning)
	return status.ExOK
}

func sieveTestScript(path, sender, rcpt string, spool *os.File, size int64) int {
	f, err := os.Open(path)
	if err != nil {
		return fail(status.ExNoInput, "%v", err)
	}
	s, err := sieve.Load(f, path, sieve.Limits{})
	f.Close()
	if err != nil {
		return fail(status.ExDataErr, "%v", err)
	}
	if rcpt == "" {
		rcpt = "recipient@example.org"
	}
	env := sieve.Envelope{From: sender, To: rcpt}
	if local, _, ok := strings.Cut(rcpt, "@"); ok {
		if _, d, ok := strings.Cut(local, "+"); ok {
			env.Detail = d
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, decided, err := sieve.RunEnvelope(ctx, []*sieve.Script{s}, env, sieve.Limits{})
	if err != nil {
		return fail(status.ExTempFail, "%v", err)
	}
	msg, err := sieve.ParseMessage(spool, size, sieve.Limits{})
	if err != nil {
		return fail(status.ExDataErr, "%v", err)
	}
	out, err := sieve.Run(ctx, []*sieve.Script{s}, env, msg, sieve.Limits{})
	if err != nil {
		return fail(status.ExTempFail, "%v", err)
	}
	warn := ""
	if out.ScriptError != nil {
		warn = "script error, implicit keep: " + out.ScriptError.Error()
	}
	var acts []string
	for _, a := range out.Actions {
		acts = append(acts, actionString(a))
	}
	printSieveTest(os.Stdout, "script "+path, decided && out.ScriptError == nil, acts, nil, warn)
	return status.ExOK
}

func actionString(a sieve.Action) string {
	switch a.Kind {
	case sieve.Keep:
		return withFlags("keep", a.Flags)
	case sieve.FileInto:
		return withFlags("fileinto "+a.Folder, a.Flags)
	case sieve.Redirect:
		if a.Copy {
			return "redirect :copy " + a.Address
		}
		return "redirect " + a.Address
	case sieve.Reject:
		return "reject " + a.Reason
	case sieve.Discard:
		return "discard"
	}
	return "unknown"
}

func withFlags(s string, flags []string) string {
	if len(flags) == 0 {
		return s
	}
	return s + " :flags " + strings.Join(flags, " ")
}

func printSieveTest(w io.Writer, what string, decided bool, actions []string, st *status.Status, warning string) {
	fmt.Fprintf(w, "%s\n", what)
	if decided {
		fmt.Fprintf(w, "decided by the envelope alone: yes (this outcome can be given at RCPT time)\n")
	} else {
		fmt.Fprintf(w, "decided by the envelope alone: no (the outcome depends on the message)\n")
	}
	fmt.Fprintf(w, "actions:\n")
	if len(actions) == 0 {
		fmt.Fprintf(w, "  discard\n")
	}
	for _, a := range actions {
		fmt.Fprintf(w, "  %s\n", a)
	}
	if st != nil && !st.OK() {
		fmt.Fprintf(w, "reply: %s\n", st.Reply())
	}
	if warning != "" {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
}
