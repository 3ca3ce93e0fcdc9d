package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/delivery"
	"lda/internal/job"
	"lda/internal/spawn"
	"lda/internal/status"
	"lda/internal/userdb"
	"lda/policy"
)

const defaultPolicy = "/etc/lda/policy.yaml"

// common holds the flags shared by deliver, explain and check.
type common struct {
	policy   string
	userdb   string
	log      string
	timeout  time.Duration
	sieveDir string
	// mtaStderr: standard error goes to the MTA, which may put it in a
	// bounce, so a log that cannot be opened is no log rather than
	// standard error (lda deliver).
	mtaStderr bool
}

// logger returns the -log logger.
func (c *common) logger() *slog.Logger {
	if c.mtaStderr {
		return newLogger(c.log, io.Discard)
	}
	return newLogger(c.log, os.Stderr)
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.policy, "policy", defaultPolicy, `system policy file, or "embedded" for the built-in default`)
	fs.StringVar(&c.userdb, "userdb", "passwd", `user database: "passwd" (/etc/passwd), "getent" (NSS) or "yaml:PATH" (virtual users)`)
	fs.StringVar(&c.log, "log", "syslog", `structured log: "syslog", "stderr", "none" or a file`)
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "time limit for one delivery")
	fs.StringVar(&c.sieveDir, "sieve-dir", "/etc/lda/sieve", `directory of the system before.sieve and after.sieve ("" for none)`)
}

// agent loads the system policy (as root it is the administrator's file;
// the worker parses it again from the same path) and returns the agent.
func (c *common) agent() (*delivery.Agent, *policy.System, error) {
	var sys *policy.System
	path := c.policy
	if path == "embedded" {
		sys, path = policy.Default(), ""
	} else {
		var err error
		if sys, err = policy.LoadSystem(path); err != nil {
			return nil, nil, err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return nil, nil, err
	}
	return &delivery.Agent{Exe: exe, PolicyPath: path, SieveDir: c.sieveDir, MinUID: sys.MinUID, Timeout: c.timeout,
		TimerSlack: spawn.DefaultTimerSlack, Log: c.logger()}, sys, nil
}

// lookupUser resolves name, and refuses anyone but oneself when not root.
func (c *common) lookupUser(name string) (*userdb.User, *status.Status) {
	u, err := userdb.Lookup(c.userdb, name)
	if errors.Is(err, userdb.ErrNotFound) {
		return nil, status.UnknownUser.Wrap(err)
	}
	if err != nil {
		return nil, status.Unknown.Wrap(err)
	}
	if me := os.Getuid(); me != 0 && me != u.UID {
		return nil, status.PolicyRefused.Wrapf("uid %d may deliver only as itself, not as %s", me, name)
	}
	return u, nil
}

// parseDest parses -dest (policy.ParseDestination's form). The empty
// string is the user's default destination.
func parseDest(s string) (kind, path, folder, program string, err error) {
	if s == "" {
		return job.KindDefault, "", "", "", nil
	}
	d, err := policy.ParseDestination(s)
	if err != nil {
		return "", "", "", "", errors.New("destination must be mbox:PATH, maildir:PATH[#FOLDER] or program:NAME, with an absolute clean path (no .., //, /./, trailing /, control characters)")
	}
	return d.Kind.String(), d.Path, d.Folder, d.Program, nil
}

func cmdDeliver(args []string) int {
	fs := flag.NewFlagSet("deliver", flag.ContinueOnError)
	c := common{mtaStderr: true}
	c.register(fs)
	sender := fs.String("f", "", "envelope sender (empty: the null sender)")
	user := fs.String("d", "", "destination user (required)")
	rcpt := fs.String("a", "", "original recipient address, for Delivered-To")
	dest := fs.String("dest", "", "explicit destination KIND:VALUE (default: the user's default)")
	folder := fs.String("folder", "", "Maildir++ folder of a maildir destination")
	maxSize := fs.Int64("max-size", 100<<20, "largest message accepted, in bytes")
	noHeaders := fs.Bool("no-headers", false, "do not add Return-Path and Delivered-To")
	fs.StringVar(&Sendmail[0], "sendmail", Sendmail[0], "sendmail-compatible command that submits a filter's redirects (run as the user)")
	// An MTA passes our standard error on (into a bounce, say): a bad
	// flag is one line, not the flag package's usage text.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
		}
		return fail(status.ExUsage, "%s: %v (see lda(8))", status.Usage.Reply(), err)
	}
	if *user == "" || fs.NArg() != 0 {
		return fail(status.ExUsage, "%s: -d USER is required and no operands are taken", status.Usage.Reply())
	}
	// A negative size would refuse every message as too big, a
	// permanent bounce of all mail for a typo in the MTA's command line.
	if *maxSize < 0 || c.timeout <= 0 {
		return fail(status.ExUsage, "%s: -max-size must be 0 or more and -timeout more than 0", status.Usage.Reply())
	}
	kind, path, destFolder, program, err := parseDest(*dest)
	if err != nil {
		return fail(status.ExUsage, "%s: %v", status.Usage.Reply(), err)
	}
	if destFolder != "" {
		if *folder != "" && *folder != destFolder {
			return fail(status.ExUsage, "%s: -folder and #FOLDER in -dest disagree", status.Usage.Reply())
		}
		*folder = destFolder
	}
	st := deliverStdin(&c, request{
		user: *user, sender: *sender, rcpt: *rcpt, kind: kind, path: path, program: program,
		folder: *folder, headers: !*noHeaders, maxSize: *maxSize,
	}, os.Stdin)
	if !st.OK() {
		return fail(st.Exit(), "%s", st.Reply())
	}
	return status.ExOK
}

type request struct {
	user, sender, rcpt, kind, path, program, folder string
	headers                                         bool
	maxSize                                         int64
}

func deliverStdin(c *common, r request, in io.Reader) *status.Status {
	agent, _, err := c.agent()
	if err != nil {
		// The detail (which file, and why) goes to the log; the caller
		// prints the one line that the MTA passes on.
		c.logger().Error("delivery", "user", r.user, "sender", r.sender, "recipient", r.rcpt,
			"status", fmt.Sprintf("%d %s", status.ConfigError.Code, status.ConfigError.Enhanced), "detail", err.Error())
		return status.ConfigError.Wrap(err)
	}
	u, st := c.lookupUser(r.user)
	if st != nil {
		agent.Log.Warn("delivery", "user", r.user, "sender", r.sender, "recipient", r.rcpt, "status", fmt.Sprintf("%d %s", st.Code, st.Enhanced), "detail", st.Error())
		return st
	}
	if f, ok := in.(*os.File); ok && closedAtStart(f) {
		st := status.ConfigError.Wrapf("standard input was closed when lda started: the MTA gave no message")
		agent.Log.Error("delivery", "user", r.user, "sender", r.sender, "recipient", r.rcpt, "status", fmt.Sprintf("%d %s", st.Code, st.Enhanced), "detail", st.Error())
		return st
	}
	spool, size, st := spoolMessage(in, r.maxSize)
	if st != nil {
		agent.Log.Warn("delivery", "user", r.user, "sender", r.sender, "status", fmt.Sprintf("%d %s", st.Code, st.Enhanced), "detail", st.Error())
		return st
	}
	defer spool.Close()
	out := agent.Deliver(context.Background(), delivery.Request{
		User: u, Kind: r.kind, Path: r.path, Folder: r.folder, Program: r.program,
		Sender: r.sender, Recipient: r.rcpt, Headers: r.headers, Message: spool, Size: size,
	})
	if out.Status.OK() && out.Result != nil {
		if to := job.Redirects(out.Result.Actions); len(to) > 0 {
			rcpt := r.rcpt
			if rcpt == "" {
				rcpt = u.Name
			}
			if err := submitRedirect(agent, u, r.sender, rcpt, to, spool, size); err != nil {
				st := status.Unknown.Wrap(err)
				agent.Log.Warn("redirect", "user", u.Name, "recipient", rcpt, "status", "451 4.3.0", "detail", err.Error())
				return st
			}
			agent.Log.Info("redirect", "user", u.Name, "recipient", rcpt, "to", strings.Join(to, ","))
		}
	}
	return out.Status
}

// Sendmail submits a filter's redirects for lda deliver (-sendmail sets
// argv[0]); lda appends -f SENDER -- ADDRESSES.
var Sendmail = []string{"/usr/sbin/sendmail", "-i"}

// submitRedirect sends the message on to the filter's redirect addresses
// through sendmail, run as the recipient (through spawn, never as root),
// with a Delivered-To line so that a loop comes back refused. If it
// fails, the delivery fails temporarily: a retry may duplicate the other
// actions, but the redirect is never silently lost.
func submitRedirect(agent *delivery.Agent, u *userdb.User, sender, rcpt string, to []string, msg *os.File, size int64) error {
	for _, a := range to {
		if a == "" || a[0] == '-' || strings.ContainsAny(a, " \t\r\n\x00") {
			return fmt.Errorf("refusing redirect address %q", a)
		}
	}
	data := make([]byte, size)
	if _, err := msg.ReadAt(data, 0); err != nil && size > 0 {
		return err
	}
	args := append(append([]string{}, Sendmail[1:]...), "-f", sender, "--")
	out, err := spawn.Run(context.Background(), spawn.Request{
		Exe: Sendmail[0], Args: append(args, to...), UID: u.UID, GID: u.GID, MinUID: agent.MinUID,
		Stdin: append([]byte("Delivered-To: "+rcpt+"\n"), data...), Timeout: 2 * time.Minute,
	})
	if err != nil {
		return err
	}
	if out.ExitCode != 0 {
		return fmt.Errorf("%s exited %d: %s", Sendmail[0], out.ExitCode, status.Sanitize(string(out.Stderr)))
	}
	return nil
}

// TooBig is the reply for a message over -max-size.
var TooBig = status.New(552, "5.3.4", "message too big")

// spoolMessage copies the message to an unlinked temporary file, so that
// workers read it by descriptor.
func spoolMessage(in io.Reader, max int64) (*os.File, int64, *status.Status) {
	f, err := os.CreateTemp("", "lda-spool-")
	if err != nil {
		return nil, 0, status.FromSpool(err)
	}
	os.Remove(f.Name())
	n, err := io.Copy(f, io.LimitReader(in, max+1))
	if err != nil {
		f.Close()
		return nil, 0, status.FromSpool(fmt.Errorf("spool: %w", err))
	}
	if n > max {
		f.Close()
		return nil, 0, TooBig.Wrapf("message larger than %d bytes", max)
	}
	return f, n, nil
}

// closedAtStart reports whether f, standard input, was closed when the
// program started. The Go runtime then opens /dev/null read-write in its
// place (a shell's "</dev/null" is read-only), and reading it would make
// an empty message of a missing one: delivered, exit 0, and the MTA's
// copy dropped.
func closedAtStart(f *os.File) bool {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		return false
	}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_ACCMODE == unix.O_RDWR
}
