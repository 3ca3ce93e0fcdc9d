package main

import (
	"flag"
	"log/slog"
	"os"
	"path/filepath"

	"lda/internal/daemon"
	"lda/internal/status"
)

// cmdServe is `lda serve`: the root parent of the LMTP daemon.
func cmdServe(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", daemon.DefaultConfigFile, "daemon configuration file")
	logTo := fs.String("log", "", `override the configuration's log ("stderr", "syslog", "none" or a file)`)
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return status.ExUsage
	}
	cfg, err := daemon.LoadConfig(*cfgPath)
	if err != nil {
		return fail(status.ExConfig, "%v", err)
	}
	dest := cfg.Log
	if *logTo != "" {
		dest = *logTo
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return fail(status.ExOSErr, "%v", err)
	}
	log, file := openLog(dest, os.Stderr)
	p := &daemon.Parent{Exe: exe, Log: log, LogFile: file, LogSyslog: dest == "syslog" || dest == "", LogNone: dest == "none"}
	if err := p.Serve(*cfgPath); err != nil {
		return fail(status.ExTempFail, "serve: %v", err)
	}
	return status.ExOK
}

// cmdListener is `lda listener`, started by `lda serve` only, with
// "syslog", "none" or "stderr" as its argument: it logs to syslog itself,
// nowhere, or to standard error, which is the parent's log file or
// standard error (in batches when that is a regular file; see
// daemon.BatchedStderr).
func cmdListener(args []string) int {
	if len(args) == 1 && (args[0] == "syslog" || args[0] == "none") {
		return daemon.ListenerMain(newLogger(args[0], os.Stderr), func() {})
	}
	w, flush := daemon.BatchedStderr()
	return daemon.ListenerMain(slog.New(slog.NewTextHandler(w, nil)), flush)
}
