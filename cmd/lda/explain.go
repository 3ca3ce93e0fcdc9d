package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"lda/internal/daemon"
	"lda/internal/delivery"
	"lda/internal/job"
	"lda/internal/status"
	"lda/policy"
)

// describe prints the effective system settings.
func describe(w *os.File, sys *policy.System) {
	fmt.Fprintf(w, "min_uid: %d\n", sys.MinUID)
	fmt.Fprintf(w, "user_file: %q\n", sys.UserFile)
	fmt.Fprintf(w, "mbox: locking %v, lock timeout %s, stale lock %s, quoting %s\n",
		sys.Mbox.Locking, sys.Mbox.LockTimeout, sys.Mbox.StaleLock, sys.Mbox.Quoting)
	fmt.Fprintf(w, "quota_tempfail: %v\n", sys.QuotaTempfail)
}

// cmdExplain prints the decision for USER DEST. The user's own policy file
// is read by a worker running as that user, as for a delivery.
func cmdExplain(args []string) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	var c common
	c.register(fs)
	folder := fs.String("folder", "", "Maildir++ folder of a maildir destination")
	c.log = "none"
	if err := fs.Parse(args); err != nil {
		return status.ExUsage
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return fail(status.ExUsage, "usage: lda explain [flags] USER [KIND:VALUE]")
	}
	dest := ""
	if fs.NArg() == 2 {
		dest = fs.Arg(1)
	}
	kind, path, destFolder, program, err := parseDest(dest)
	if err != nil {
		return fail(status.ExUsage, "explain: %v", err)
	}
	if destFolder != "" {
		*folder = destFolder
	}
	agent, _, err := c.agent()
	if err != nil {
		return fail(status.ExConfig, "%v", err)
	}
	u, st := c.lookupUser(fs.Arg(0))
	if st != nil {
		return fail(st.Exit(), "%s: %v", st.Reply(), st.Cause)
	}
	out := agent.Deliver(context.Background(), delivery.Request{
		Mode: job.ModeExplain, User: u, Kind: kind, Path: path, Folder: *folder, Program: program,
	})
	return printExplain(os.Stdout, out)
}

func printExplain(w *os.File, out delivery.Outcome) int {
	st := out.Status
	r := out.Result
	if r == nil {
		return fail(st.Exit(), "%s: %v", st.Reply(), st.Cause)
	}
	verdict := "refused"
	if st.OK() {
		verdict = "allowed"
	} else if st.Enhanced != status.PolicyRefused.Enhanced {
		return fail(st.Exit(), "%s: %s", st.Reply(), r.Detail)
	}
	rule := r.Rule
	if rule == "" {
		rule = "(none)"
	}
	fmt.Fprintf(w, "destination: %s\ndecision: %s\nrule: %s\nreason: %s\n", r.Where, verdict, rule, r.Detail)
	if r.Warning != "" {
		fmt.Fprintf(w, "warning: %s\n", r.Warning)
	}
	if st.OK() {
		return status.ExOK
	}
	return status.ExNoPerm
}

// cmdCheck validates the system policy and, with -u, a user's own file (as
// that user), and prints the effective settings.
func cmdCheck(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	var c common
	c.register(fs)
	user := fs.String("u", "", "also check this user's own policy file and default destination")
	cfgPath := fs.String("config", "", "also check this daemon configuration (lda.yaml); its policy is checked")
	c.log = "none"
	if err := fs.Parse(args); err != nil {
		return status.ExUsage
	}
	if *cfgPath != "" {
		cfg, err := daemon.LoadConfig(*cfgPath)
		if err != nil {
			return fail(status.ExConfig, "%v", err)
		}
		c.policy, c.userdb = cfg.Policy, cfg.UserDB
		fmt.Printf("config: %s\nsocket: %s (mode %s, group %q)\ntcp: %q\nlistener_user: %s\npeers: %v\nspool_dir: %s\n",
			cfg.File, cfg.Socket, cfg.SocketMode, cfg.SocketGroup, cfg.TCP, cfg.ListenerUser, cfg.Peers, cfg.SpoolDir)
		fmt.Printf("limits: %+v\nrecipient_delimiter: %q, detail_to_folder: %v, bare_lf: %s, chunking: %v, headers: %v, parallel: %d, delivery_timeout: %s\n",
			cfg.Limits, cfg.Delimiter, cfg.DetailFolder, cfg.BareLF, cfg.Chunking, cfg.Headers, cfg.Parallel, cfg.DeliveryTime)
	}
	agent, sys, err := c.agent()
	if err != nil {
		return fail(status.ExConfig, "%v", err)
	}
	src := c.policy
	fmt.Printf("policy: %s\n", src)
	describe(os.Stdout, sys)
	if *user == "" {
		return status.ExOK
	}
	u, st := c.lookupUser(*user)
	if st != nil {
		return fail(st.Exit(), "%s: %v", st.Reply(), st.Cause)
	}
	out := agent.Deliver(context.Background(), delivery.Request{Mode: job.ModeExplain, User: u, Kind: job.KindDefault})
	fmt.Printf("user %s (uid %d, home %s), default destination:\n", u.Name, u.UID, u.Home)
	return printExplain(os.Stdout, out)
}
