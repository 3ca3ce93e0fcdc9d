package main

import (
	"bufio"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"lda/internal/status"
	"lda/internal/userdb"
	"lda/internal/xtext"
	"lda/policy"
)

const demoMessage = "From: Demo Sender <demo@example.org>\r\n" +
	"To: you@localhost\r\n" +
	"Subject: hello from lda\r\n" +
	"Message-ID: <demo.%d@localhost>\r\n" +
	"\r\n" +
	"This message came through lda serve: its listener spooled it and a\r\n" +
	"worker running as you wrote it, under the embedded default policy.\r\n" +
	"From here on, a line that began with \"From \" is quoted in the mbox copy.\r\n" +
	"..and this line was dot-stuffed on the wire.\r\n"

// cmdDemo runs the real daemon on a private socket in a new temporary
// directory, delivers a sample message over LMTP to a Maildir and an mbox
// there, and shows where it went. It needs no root and changes nothing
// outside that directory: the recipient is a virtual user of the invoking
// uid (or nobody, when run as root) whose home is the demo directory.
func cmdDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for the demo (default: a new temporary directory)")
	if err := fs.Parse(args); err != nil {
		return status.ExUsage
	}
	base := *dir
	var err error
	if base == "" {
		if base, err = os.MkdirTemp("", "lda-demo-"); err != nil {
			return fail(status.ExCantCreat, "demo: %v", err)
		}
	}
	if base, err = filepath.Abs(base); err != nil {
		return fail(status.ExUsage, "demo: %v", err)
	}
	if err := runDemo(base); err != nil {
		return fail(status.ExTempFail, "demo: %v", err)
	}
	return status.ExOK
}

func runDemo(base string) error {
	me, err := demoIdentity()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return err
	}
	home := filepath.Join(base, "home")
	for _, d := range []string{base, filepath.Join(base, "run"), home, filepath.Join(home, "mail")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	if os.Getuid() == 0 {
		// Root never delivers: nobody does, from a copy of this binary
		// that nobody can execute.
		os.Chmod(base, 0o755)
		if exe, err = copyExe(exe, base); err != nil {
			return err
		}
		for _, d := range []string{home, filepath.Join(home, "mail")} {
			if err := os.Chown(d, me.UID, me.GID); err != nil {
				return err
			}
		}
	}
	// The embedded policy, with min_uid lowered so that any invoking user
	// can try it.
	pol := strings.Replace(string(policy.DefaultYAML()), "min_uid: 1000", "min_uid: 1", 1)
	files := map[string]string{
		"policy.yaml": pol,
		"virtual.yaml": fmt.Sprintf("version: 1\nusers:\n  you@localhost: {home: %s, uid: %d, gid: %d}\n",
			home, me.UID, me.GID),
		"lda.yaml": fmt.Sprintf("version: 1\npolicy: %s\nuserdb: yaml:%s\nsocket: %s\nsocket_mode: \"0600\"\n"+
			"listener_user: %s\npeers: [\"%d\"]\nspool_dir: %s\nhostname: localhost\nlog: %s\n",
			filepath.Join(base, "policy.yaml"), filepath.Join(base, "virtual.yaml"), filepath.Join(base, "run", "lmtp.sock"),
			me.Name, os.Getuid(), filepath.Join(base, "spool"), filepath.Join(base, "lda.log")),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(base, name), []byte(text), 0o644); err != nil {
			return err
		}
	}

	daemon := exec.Command(exe, "serve", "-config", filepath.Join(base, "lda.yaml"))
	daemon.Stderr = os.Stderr
	if err := daemon.Start(); err != nil {
		return err
	}
	defer func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
	}()
	sock := filepath.Join(base, "run", "lmtp.sock")
	var c net.Conn
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			return fmt.Errorf("the daemon did not come up: %v", err)
		}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	parent := "parent (root)"
	if os.Getuid() != 0 {
		parent = "parent (single-user mode, no root)"
	}
	fmt.Printf("demo directory: %s\nlda serve: %s pid %d; listener and workers as %s (uid %d)\n\n",
		base, parent, daemon.Process.Pid, me.Name, me.UID)
	mbox := filepath.Join(home, "mail", "inbox")
	steps := []string{
		"LHLO demo.localhost",
		"MAIL FROM:<demo@example.org>",
		"RCPT TO:<you@localhost>",
		"RCPT TO:<you@localhost> XLDA-DEST=" + xtext.Encode("mbox:"+mbox),
		"DATA",
		fmt.Sprintf(demoMessage, time.Now().UnixNano()) + ".",
		"QUIT",
	}
	replies := []int{1, 1, 1, 1, 1, 2, 1}
	for i, line := range steps {
		show := line
		if strings.Contains(line, "\r\n") {
			show = "(message)\r\n."
		}
		fmt.Printf("C: %s\n", strings.ReplaceAll(show, "\r\n", "\nC: "))
		fmt.Fprintf(c, "%s\r\n", line)
		if i == 0 {
			if err := readReply(r); err != nil { // the greeting
				return err
			}
		}
		for n := 0; n < replies[i]; n++ {
			if err := readReply(r); err != nil {
				return err
			}
		}
	}
	fmt.Printf("\ndelivered files:\n")
	filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fmt.Printf("  %s\n", p)
		}
		return nil
	})
	fmt.Printf("\nthe daemon's log (one line per recipient): %s\nlook at the mbox: cat %s\n", filepath.Join(base, "lda.log"), mbox)
	return nil
}

// readReply prints one (possibly multi-line) reply and fails on 4xx/5xx.
func readReply(r *bufio.Reader) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		fmt.Printf("S: %s\n", line)
		if len(line) < 4 || line[3] != '-' {
			if line != "" && (line[0] == '4' || line[0] == '5') {
				return fmt.Errorf("the daemon answered %q", line)
			}
			return nil
		}
	}
}

// demoIdentity is the invoking user, or nobody when run as root.
func demoIdentity() (*userdb.User, error) {
	if os.Getuid() == 0 {
		u, err := userdb.Lookup("passwd", "nobody")
		if err != nil {
			return nil, fmt.Errorf("run as root, the demo delivers as nobody: %v", err)
		}
		return u, nil
	}
	u, err := userdb.LookupUID(os.Getuid())
	if err != nil {
		return nil, fmt.Errorf("uid %d is not in /etc/passwd: %v", os.Getuid(), err)
	}
	return u, nil
}

// copyExe copies our binary into dir/bin with mode 0755.
func copyExe(exe, dir string) (string, error) {
	data, err := os.ReadFile(exe)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	os.Chmod(bin, 0o755)
	dst := filepath.Join(bin, "lda")
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return "", err
	}
	return dst, os.Chmod(dst, 0o755)
}
