// Command lda is a secure local delivery agent. See lda(8).
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"lda/internal/spawn"
	"lda/internal/status"
	"lda/internal/syslog"
	"lda/internal/worker"
)

const usage = `usage: lda COMMAND [flags]

commands:
  serve     run the LMTP daemon (root parent, unprivileged listener, workers)
  deliver   deliver one message from standard input (sysexits exit codes)
  explain   print the policy decision for USER DEST and the rule behind it
  check     validate the system policy (and a user's own file) and print it
  sieve-test  print what a Sieve filter would do with a message, changing nothing
  demo        deliver a sample message into a temporary Maildir and mbox
  version   print the version

See lda(8), lda-policy(5).
`

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "0.1.0-dev"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(status.ExUsage)
	}
	// Only the descriptors spawn hands a worker may reach it; the worker
	// itself keeps 3 to 5 (message or socket, policy or recovery record,
	// a direct worker's policy) until it has opened them.
	switch os.Args[1] {
	case "worker":
		spawn.SealDescriptors(6)
	case "listener":
		spawn.SealDescriptors(9)
	default:
		spawn.SealDescriptors(3)
	}
	if cmd := os.Args[1]; cmd != "version" && cmd != "help" && cgoBuild() {
		// A cgo binary cannot set PR_SET_NO_NEW_PRIVS on all threads
		// (AllThreadsSyscall returns ENOTSUP), so its workers would refuse
		// every delivery. Say so at once instead.
		os.Exit(fail(status.ExSoftware, "this binary was built with cgo; build lda with CGO_ENABLED=0 (see README.md)"))
	}
	var code int
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "worker":
		// Started by package spawn only, as the destination user: one
		// job on standard input, or ("worker warm") a warm worker serving
		// one user's jobs over the socket on fd 3, or ("worker direct")
		// a warm worker that root bound to one user and handed to the
		// listener.
		switch {
		case len(args) == 1 && args[0] == "warm":
			code = worker.MainWarm()
		case len(args) == 1 && args[0] == "direct":
			code = worker.MainDirect()
		default:
			code = worker.Main()
		}
	case "serve":
		code = cmdServe(args)
	case "listener":
		// Started by `lda serve` only, as the listener user.
		code = cmdListener(args)
	case "deliver":
		code = cmdDeliver(args)
	case "explain":
		code = cmdExplain(args)
	case "check":
		code = cmdCheck(args)
	case "demo":
		code = cmdDemo(args)
	case "sieve-test":
		code = cmdSieveTest(args)
	case "version":
		fmt.Println("lda", Version)
	case "help", "-h", "-help", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "lda: unknown command %q\n%s", cmd, usage)
		code = status.ExUsage
	}
	os.Exit(code)
}

// cgoBuild reports whether this binary was built with CGO_ENABLED=1.
func cgoBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "CGO_ENABLED" {
			return s.Value == "1"
		}
	}
	return false
}

// fail prints the one-line message of a failed command and returns its
// sysexits code. A cause that spans lines (a YAML decoder's list of
// errors, say) is joined with "; ", so the message stays one line.
func fail(code int, format string, args ...any) int {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	msg = strings.NewReplacer("\r\n", "; ", "\n", "; ", "\r", "; ").Replace(msg)
	fmt.Fprintf(os.Stderr, "lda: %s\n", msg)
	return code
}

// newLogger returns the structured logger selected by -log: "syslog"
// (facility mail), "stderr", "none", or a file name to append to. When
// syslog or the file cannot be used it logs to fallback instead.
func newLogger(dest string, fallback io.Writer) *slog.Logger {
	l, _ := openLog(dest, fallback)
	return l
}

// openLog is newLogger that also returns the log file, when dest is one.
func openLog(dest string, fallback io.Writer) (*slog.Logger, *os.File) {
	var w io.Writer
	var file *os.File
	switch dest {
	case "none":
		w = io.Discard
	case "stderr":
		w = os.Stderr
	case "syslog", "":
		if sw, err := syslog.Dial(syslog.FacilityMail|syslog.SevInfo, "lda"); err == nil {
			w = sw
		} else {
			w = fallback
		}
	default:
		f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			w = fallback
		} else {
			w, file = f, f
		}
	}
	return slog.New(slog.NewTextHandler(w, nil)), file
}
