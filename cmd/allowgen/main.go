// Command allowgen derives lda's policy files (and, on request, Sieve
// scripts and a Postfix table) from /etc/aliases and users' .forward
// files. See allowgen(8).
//
//	allowgen [-aliases FILE,...] [-policy FILE] [-base FILE] [-passwd FILE]
//	         [-users NAME,...] [-forward NAME] [-default-user NAME]
//	         [-central DIR] [-include-destinations]
//	         [-sieve [-sieve-name NAME] [-sieve-pipe]] [-domain DOMAIN]
//	         [-table aliases|virtual] [-lda PATH]
//	         [-write | -diff | -check]
//
// Without -write, -diff or -check it is a dry run: it prints the files it
// would write, the routing report and a summary, and changes nothing.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"lda/internal/allowgen"
)

// Exit statuses (allowgen(8), EXIT STATUS).
const (
	exitOK        = 0
	exitDiffers   = 1  // -check: a file disagrees with the sources
	exitSource    = 2  // errors in the sources were reported
	exitUsage     = 64 // EX_USAGE
	exitSoftware  = 70 // EX_SOFTWARE: a generated file does not parse
	exitCantWrite = 73 // EX_CANTCREAT
	exitConfig    = 78 // EX_CONFIG: base policy, passwd, default user
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func list(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("allowgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg      allowgen.Config
		aliasesF = fs.String("aliases", "/etc/aliases", "aliases files, comma-separated (\"\" for none)")
		users    = fs.String("users", "", "users whose .forward files are read, comma-separated (default: every user with uid >= min_uid)")
		write    = fs.Bool("write", false, "write the files (atomically, owned by root or the user, mode 0644; Sieve 0600)")
		diff     = fs.Bool("diff", false, "show the changes against the existing files as unified diffs")
		check    = fs.Bool("check", false, "exit 1 if an existing file disagrees with the sources")
	)
	fs.StringVar(&cfg.Policy, "policy", "/etc/lda/policy.yaml", "the system policy file to write or compare")
	fs.StringVar(&cfg.Base, "base", "", "the administrator's policy to add to (default: -policy without allowgen's lines, else the built-in default)")
	fs.StringVar(&cfg.Passwd, "passwd", "/etc/passwd", "the passwd file (users, uids, home directories)")
	fs.StringVar(&cfg.Forward, "forward", ".forward", "the name of .forward files in home directories (\"\" reads none)")
	fs.StringVar(&cfg.DefaultUser, "default-user", "nobody", "who runs the programs and files of root-owned alias files (never root)")
	fs.StringVar(&cfg.Central, "central", "", "write per-user files to DIR/USER.yaml (and DIR/USER.sieve) instead of the home directories")
	fs.BoolVar(&cfg.IncludeDest, "include-destinations", false, "also convert programs and files found in :include: files")
	fs.BoolVar(&cfg.Sieve, "sieve", false, "also convert .forward files to Sieve scripts")
	fs.StringVar(&cfg.SieveName, "sieve-name", ".lda.sieve", "the Sieve script's name in the home directory")
	fs.BoolVar(&cfg.SievePipe, "sieve-pipe", false, "write allowed programs as Pigeonhole's pipe \"NAME\" (vnd.dovecot.pipe)")
	fs.StringVar(&cfg.Domain, "domain", "", "the domain of local names, for Sieve redirects and virtual tables")
	fs.StringVar(&cfg.Table, "table", "", "also print the routing as a Postfix table: aliases or virtual")
	fs.StringVar(&cfg.LDA, "lda", "/usr/local/sbin/lda", "lda's path, for the routing report and tables")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "allowgen: unexpected operand %q (see allowgen(8))\n", fs.Arg(0))
		return exitUsage
	}
	modes := 0
	for _, m := range []bool{*write, *diff, *check} {
		if m {
			modes++
		}
	}
	if modes > 1 {
		fmt.Fprintln(stderr, "allowgen: give at most one of -write, -diff and -check")
		return exitUsage
	}
	cfg.Aliases = list(*aliasesF)
	cfg.Users = list(*users)

	res, err := allowgen.Generate(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "allowgen: %v\n", err)
		var ce *allowgen.ConfigError
		if errors.As(err, &ce) {
			return exitConfig
		}
		return exitSoftware
	}
	defer res.Close()
	for _, d := range res.Diags {
		fmt.Fprintln(stderr, d.String())
	}
	status := exitOK
	if res.Summary.Errors > 0 {
		status = exitSource
	}
	switch {
	case *write:
		done, errs := res.Write()
		for _, d := range done {
			fmt.Fprintln(stdout, d)
		}
		for _, e := range errs {
			fmt.Fprintf(stderr, "allowgen: %v\n", e)
		}
		if len(done) == 0 && len(errs) == 0 {
			fmt.Fprintln(stdout, "nothing to write: every file agrees with the sources")
		}
		fmt.Fprint(stdout, res.Summary.String())
		if len(errs) > 0 {
			return exitCantWrite
		}
	case *diff, *check:
		differs := 0
		for _, o := range res.Outputs {
			if !o.Changed() {
				continue
			}
			differs++
			if *check {
				what := "differs from the sources"
				switch {
				case !o.Old.Exists():
					what = "is missing"
				case o.Content == nil:
					what = "is stale (no source asks for it any more)"
				}
				fmt.Fprintf(stdout, "%s (%s) %s\n", o.Path, o.Role, what)
			}
			if r := o.Refused(); r != "" {
				fmt.Fprintf(stdout, "# %s: cannot be written: %s\n", o.Path, r)
			}
			fmt.Fprint(stdout, allowgen.UnifiedDiff(o.Path, o.Path+" (from the sources)", o.OldContent(), o.Content))
		}
		if *diff && differs == 0 {
			fmt.Fprintln(stdout, "no changes: every file agrees with the sources")
		}
		fmt.Fprint(stdout, res.Summary.String())
		if *check && differs > 0 {
			return exitDiffers
		}
	default:
		fmt.Fprintln(stdout, "# allowgen: dry run; nothing is written (use -write, -diff or -check)")
		for _, o := range res.Outputs {
			switch {
			case o.Incomplete != "":
				fmt.Fprintf(stdout, "\n==> %s (%s): NOT WRITTEN, not fully convertible <==\n", o.Path, o.Role)
			case o.Content == nil:
				fmt.Fprintf(stdout, "\n==> %s (%s): to be removed (no source asks for it) <==\n", o.Path, o.Role)
				continue
			case o.Refused() != "":
				fmt.Fprintf(stdout, "\n==> %s (%s): CANNOT BE WRITTEN: %s <==\n", o.Path, o.Role, o.Refused())
			case !o.Changed():
				fmt.Fprintf(stdout, "\n==> %s (%s): unchanged <==\n", o.Path, o.Role)
			default:
				fmt.Fprintf(stdout, "\n==> %s (%s) <==\n", o.Path, o.Role)
			}
			stdout.Write(o.Content)
		}
		fmt.Fprintf(stdout, "\n== routing (what the MTA does; allowgen changes nothing here)\n%s", res.Report(cfg.LDA))
		if res.Table != "" {
			fmt.Fprintf(stdout, "\n== Postfix %s table\n%s", cfg.Table, res.Table)
		}
		fmt.Fprintf(stdout, "\n== summary\n%s", res.Summary.String())
	}
	if (*diff || *write) && res.Table != "" {
		fmt.Fprintf(stdout, "\n== Postfix %s table\n%s", cfg.Table, res.Table)
	}
	return status
}
