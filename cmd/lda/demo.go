package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"lda/internal/delivery"
	"lda/internal/job"
	"lda/internal/status"
	"lda/internal/userdb"
)

const demoMessage = `From: Demo Sender <demo@example.org>
To: you@localhost
Subject: hello from lda
Date: %s
Message-ID: <demo.%d@localhost>

This message was delivered by lda's worker, running as you, under the
embedded default policy.
From here on, a line that began with "From " is quoted in the mbox copy.
`

// cmdDemo delivers a sample message through the real worker path into a
// temporary home directory: once to the default Maildir and once to an
// mbox. It needs no root and changes nothing outside that directory.
func cmdDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to use as the demo home (default: a new temporary directory)")
	if err := fs.Parse(args); err != nil {
		return status.ExUsage
	}
	home := *dir
	if home == "" {
		var err error
		if home, err = os.MkdirTemp("", "lda-demo-"); err != nil {
			return fail(status.ExCantCreat, "demo: %v", err)
		}
	}
	home, err := filepath.Abs(home)
	if err != nil {
		return fail(status.ExUsage, "demo: %v", err)
	}
	me, err := demoUser(home)
	if err != nil {
		return fail(status.ExUsage, "demo: %v", err)
	}
	c := common{policy: "embedded", log: "stderr", timeout: time.Minute}
	agent, _, err := c.agent()
	if err != nil {
		return fail(status.ExConfig, "demo: %v", err)
	}
	// The demo delivers only as the invoking user (or nobody), whatever
	// the embedded policy's min_uid; uid 0 stays refused by spawn.
	agent.MinUID = 1
	if os.Getuid() == 0 {
		// Root never delivers: the demo delivers as nobody, from a copy of
		// this binary that nobody can execute.
		if agent.Exe, err = copyExe(agent.Exe, home); err != nil {
			return fail(status.ExCantCreat, "demo: %v", err)
		}
		if err := os.Chown(home, me.UID, me.GID); err != nil {
			return fail(status.ExCantCreat, "demo: %v", err)
		}
	}
	// The mbox's directory is the user's to make; lda creates mailboxes,
	// not the directories above them.
	maildir := filepath.Join(home, "mail")
	if err := os.MkdirAll(maildir, 0o700); err != nil {
		return fail(status.ExCantCreat, "demo: %v", err)
	}
	if err := os.Chown(maildir, me.UID, me.GID); err != nil && os.Getuid() == 0 {
		return fail(status.ExCantCreat, "demo: %v", err)
	}
	msg := fmt.Sprintf(demoMessage, time.Now().Format(time.RFC1123Z), time.Now().UnixNano())
	spool, size, st := spoolMessage(strings.NewReader(msg), 1<<20)
	if st != nil {
		return fail(st.Exit(), "demo: %s", st.Reply())
	}
	defer spool.Close()
	fmt.Printf("demo home: %s (user %s, uid %d)\n", home, me.Name, me.UID)
	for _, d := range []struct{ kind, path string }{
		{job.KindDefault, ""},
		{job.KindMbox, filepath.Join(home, "mail", "inbox")},
	} {
		out := agent.Deliver(context.Background(), delivery.Request{
			User: me, Kind: d.kind, Path: d.path, Sender: "demo@example.org",
			Recipient: me.Name + "@localhost", Headers: true, Message: spool, Size: size,
		})
		where := d.path
		if out.Result != nil && out.Result.Where != "" {
			where = out.Result.Where
		}
		fmt.Printf("%-8s -> %s: %s\n", d.kind, where, out.Status.Reply())
		if !out.Status.OK() {
			return out.Status.Exit()
		}
	}
	fmt.Printf("\nlook at them with:\n  find %s -type f\n  cat %s\n", home, filepath.Join(home, "mail", "inbox"))
	return status.ExOK
}

// demoUser is the invoking user with the demo directory as home, or nobody
// when run as root.
func demoUser(home string) (*userdb.User, error) {
	if os.Getuid() == 0 {
		u, err := userdb.Lookup("passwd", "nobody")
		if err != nil {
			return nil, fmt.Errorf("running as root, the demo delivers as nobody: %v", err)
		}
		u.Home = home
		return u, nil
	}
	u, err := userdb.LookupUID(os.Getuid())
	if err != nil {
		return nil, fmt.Errorf("uid %d is not in /etc/passwd: %v", os.Getuid(), err)
	}
	u.Home = home
	return u, nil
}

// copyExe copies our binary into dir with mode 0755.
func copyExe(exe, dir string) (string, error) {
	data, err := os.ReadFile(exe)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, ".lda-demo-bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	dst := filepath.Join(bin, "lda")
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return "", err
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		return "", err
	}
	return dst, os.Chmod(dst, 0o755)
}
