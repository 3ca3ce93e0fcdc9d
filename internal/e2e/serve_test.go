package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"lda/internal/spawn"
	"lda/internal/testutil"
)

// daemon is a running `lda serve` for one test.
type daemon struct {
	f        *fixture
	cmd      *exec.Cmd
	socket   string
	listener *testutil.User
	stderr   *testutil.SyncBuffer
}

// startDaemon starts `lda serve`; extra is appended to its configuration.
// peers are the users allowed to connect (default: root).
func startDaemon(t *testing.T, f *fixture, extra string, peers ...string) *daemon {
	t.Helper()
	if len(peers) == 0 {
		peers = []string{"root"}
	}
	d := &daemon{f: f, socket: filepath.Join(f.base, "run", "lmtp.sock"), stderr: &testutil.SyncBuffer{}}
	d.listener = testutil.CreateUser(t, nextUserName(), filepath.Join(f.base, "home"))
	logLine := "log: stderr\n"
	if strings.Contains(extra, "log:") {
		logLine = "" // the test's own
	}
	cfg := fmt.Sprintf(`version: 1
policy: %s
socket: %s
socket_mode: "0660"
listener_user: %s
peers: [%s]
spool_dir: %s
hostname: lda.test
%slimits: {connections: 16, recipients: 50, message_size: 1048576, line_length: 4096, idle_timeout: 30s, data_timeout: 30s}
%s`, f.policy, d.socket, d.listener.Name, strings.Join(peers, ", "), filepath.Join(f.base, "spool-lda"), logLine, extra)
	cfgPath := filepath.Join(f.base, "lda.yaml")
	testutil.WriteFile(t, cfgPath, []byte(cfg), 0o640, 0, 0)
	d.cmd = exec.Command(f.bin, "serve", "-config", cfgPath)
	d.cmd.Stderr = d.stderr
	d.cmd.Stdout = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd == nil {
			return // the test stopped it itself
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- d.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			d.cmd.Process.Kill()
			t.Errorf("lda serve did not drain and exit after SIGTERM")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", d.socket)
		if err == nil {
			c.Close()
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket never came up: %v\n%s", err, d.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sendOne delivers one small message to rcpt over a new connection and
// expects 250 for it.
func (d *daemon) sendOne(t *testing.T, rcpt, subject string) {
	t.Helper()
	d.send(t, rcpt, subject, "250 2.0.0")
}

// send delivers one small message to rcpt over a new connection and
// expects a reply starting with want for it.
func (d *daemon) send(t *testing.T, rcpt, subject, want string) {
	t.Helper()
	cl := dialLMTP(t, d.socket)
	cl.cmd("LHLO mta.test", "250")
	cl.cmd("MAIL FROM:<sender@example.org>", "250")
	cl.cmd("RCPT TO:<"+rcpt+">", "250")
	cl.cmd("DATA", "354")
	fmt.Fprintf(cl.c, "Subject: %s\r\n\r\nx\r\n.\r\n", subject)
	cl.expect(want)
	cl.cmd("QUIT", "221")
}

// lmtpClient is a minimal client that reads whole (multi-line) replies.
type lmtpClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialLMTP(t *testing.T, socket string) *lmtpClient {
	t.Helper()
	cl := dialRaw(t, socket)
	cl.expect("220")
	return cl
}

func dialRaw(t *testing.T, socket string) *lmtpClient {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &lmtpClient{t: t, c: c, r: bufio.NewReader(c)}
}

func (cl *lmtpClient) reply() string {
	cl.t.Helper()
	var all []string
	for {
		line, err := cl.r.ReadString('\n')
		if err != nil {
			cl.t.Fatalf("read reply: %v (so far %q)", err, all)
		}
		all = append(all, strings.TrimRight(line, "\r\n"))
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(all, "\n")
		}
	}
}

func (cl *lmtpClient) expect(prefix string) string {
	cl.t.Helper()
	r := cl.reply()
	last := r[strings.LastIndex(r, "\n")+1:]
	if !strings.HasPrefix(last, prefix) {
		cl.t.Fatalf("got %q, want a reply starting %q", r, prefix)
	}
	return r
}

func (cl *lmtpClient) cmd(line, prefix string) string {
	cl.t.Helper()
	fmt.Fprintf(cl.c, "%s\r\n", line)
	return cl.expect(prefix)
}

// TestServe runs a transaction through the real daemon: root parent,
// unprivileged listener, one worker per recipient.
func TestServe(t *testing.T) {
	f := newFixture(t)
	d := startDaemon(t, f, "")
	u1, u2 := f.u1, f.u2
	f.mkdirAs(u1, filepath.Join(u1.Home, "mail"))

	cl := dialLMTP(t, d.socket)
	caps := cl.cmd("LHLO mta.test", "250")
	for _, want := range []string{"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "CHUNKING", "SIZE 1048576", "SMTPUTF8", "XLDA"} {
		if !strings.Contains(caps, want) {
			t.Errorf("LHLO lacks %s:\n%s", want, caps)
		}
	}
	cl.cmd("MAIL FROM:<sender@example.org>", "250")
	cl.cmd("RCPT TO:<"+u1.Name+"@example.org>", "250")
	cl.cmd("RCPT TO:<"+u2.Name+"+lists@example.org>", "250")
	cl.cmd("RCPT TO:<no-such-user-zz@example.org>", "550 5.1.1")
	cl.cmd("RCPT TO:<"+u1.Name+"@example.org> XLDA-DEST=mbox:/etc/passwd", "550 5.7.1")
	cl.cmd("RCPT TO:<"+u1.Name+"@example.org> XLDA-DEST=mbox:"+filepath.Join(u1.Home, "mail", "inbox"), "250")
	cl.cmd("DATA", "354")
	fmt.Fprintf(cl.c, "Subject: through the daemon\r\n\r\n..dot-stuffed line\r\nFrom a line\r\n.\r\n")
	for i := 0; i < 3; i++ {
		cl.expect("250 2.0.0")
	}
	cl.cmd("QUIT", "221")

	for _, u := range []*testutil.User{u1, u2} {
		ents, _ := os.ReadDir(filepath.Join(u.Home, "Maildir", "new"))
		if len(ents) != 1 {
			t.Fatalf("%s: new/ holds %d messages", u.Name, len(ents))
		}
		b := snapshot(t, filepath.Join(u.Home, "Maildir", "new", ents[0].Name()))
		if !strings.Contains(string(b), "\n.dot-stuffed line\nFrom a line\n") || !strings.Contains(string(b), "Delivered-To: "+u.Name) {
			t.Fatalf("%s: message not byte-exact:\n%s", u.Name, b)
		}
		if fi, _ := os.Stat(filepath.Join(u.Home, "Maildir", "new", ents[0].Name())); fi.Sys().(*syscall.Stat_t).Uid != uint32(u.UID) {
			t.Fatalf("%s: message not owned by the user", u.Name)
		}
	}
	if n := len(readMbox(t, filepath.Join(u1.Home, "mail", "inbox"))); n != 1 {
		t.Fatalf("explicit mbox holds %d messages", n)
	}

	t.Run("bdat", func(t *testing.T) {
		// The same content as above, in two BDAT chunks split inside a
		// CR LF, pipelined in one write: no dot-stuffing, and the stored
		// message matches the one DATA stored.
		before := map[string]bool{}
		ents, _ := os.ReadDir(filepath.Join(u2.Home, "Maildir", "new"))
		for _, e := range ents {
			before[e.Name()] = true
		}
		cl := dialLMTP(t, d.socket)
		cl.cmd("LHLO mta.test", "250")
		part1, part2 := "Subject: through BDAT\r\n\r\n.dot-stuffed line\r", "\nFrom a line\r\n"
		fmt.Fprintf(cl.c, "MAIL FROM:<sender@example.org>\r\nRCPT TO:<%s@example.org>\r\nBDAT %d\r\n%sBDAT %d LAST\r\n%s",
			u2.Name, len(part1), part1, len(part2), part2)
		cl.expect("250 2.1.0")
		cl.expect("250 2.1.5")
		cl.expect(fmt.Sprintf("250 2.0.0 %d octets received", len(part1)))
		cl.expect("250 2.0.0")
		cl.cmd("QUIT", "221")
		ents, _ = os.ReadDir(filepath.Join(u2.Home, "Maildir", "new"))
		var got []string
		for _, e := range ents {
			if !before[e.Name()] {
				got = append(got, string(snapshot(t, filepath.Join(u2.Home, "Maildir", "new", e.Name()))))
			}
		}
		if len(got) != 1 || !strings.HasSuffix(got[0], "\nSubject: through BDAT\n\n.dot-stuffed line\nFrom a line\n") {
			t.Fatalf("BDAT stored %d new messages: %q", len(got), got)
		}
	})

	t.Run("bdat out of step", func(t *testing.T) {
		// A BDAT whose size cannot be read ends the session: the bytes
		// behind it, a forged transaction here, are never read as
		// commands, and nothing is delivered.
		count := func(u *testutil.User) int {
			ents, _ := os.ReadDir(filepath.Join(u.Home, "Maildir", "new"))
			return len(ents)
		}
		n1, n2 := count(u1), count(u2)
		cl := dialLMTP(t, d.socket)
		cl.cmd("LHLO mta.test", "250")
		fmt.Fprintf(cl.c, "MAIL FROM:<sender@example.org>\r\nRCPT TO:<%s@example.org>\r\nBDAT 99999999999999999999 LAST\r\n"+
			"MAIL FROM:<admin@example.org>\r\nRCPT TO:<%s@example.org>\r\nDATA\r\nSubject: forged\r\n\r\nx\r\n.\r\n", u2.Name, u1.Name)
		cl.expect("250 2.1.0")
		cl.expect("250 2.1.5")
		cl.expect("501 5.5.4")
		if line, err := cl.r.ReadString('\n'); err == nil {
			t.Fatalf("the session went on after an unreadable BDAT: %q", line)
		}
		if count(u1) != n1 || count(u2) != n2 {
			t.Fatalf("new/ went from %d, %d to %d, %d messages", n1, n2, count(u1), count(u2))
		}
		waitFor(t, func() bool { return strings.Contains(d.stderr.String(), "out of step") }, "a log line for the unreadable BDAT")
	})

	t.Run("loop", func(t *testing.T) {
		cl := dialLMTP(t, d.socket)
		cl.cmd("LHLO mta.test", "250")
		cl.cmd("MAIL FROM:<>", "250")
		cl.cmd("RCPT TO:<"+u1.Name+"@example.org>", "250")
		cl.cmd("DATA", "354")
		fmt.Fprintf(cl.c, "Delivered-To: %s@example.org\r\nSubject: loop\r\n\r\nx\r\n.\r\n", u1.Name)
		cl.expect("554 5.4.6")
		waitFor(t, func() bool {
			for _, l := range strings.Split(d.stderr.String(), "\n") {
				if strings.Contains(l, "msg=recipient") && strings.Contains(l, " recipient="+u1.Name+"@example.org ") && strings.Contains(l, `status="554 5.4.6"`) {
					return true
				}
			}
			return false
		}, "a log line for the looping recipient")
	})

	t.Run("unauthorised peer", func(t *testing.T) {
		probe := testutil.Build(t, filepath.Join(f.base, "prog"), "./internal/testprog/lmtpgreet")
		os.Chmod(d.socket, 0o666) // let u2 reach the socket; only SO_PEERCRED stands in the way
		out := f.asUser(u2, probe, d.socket)
		if !strings.HasPrefix(out, "530 5.7.0") || strings.Contains(out, "250") {
			t.Fatalf("unauthorised peer got %q", out)
		}
		if !strings.Contains(d.stderr.String(), "peer refused") {
			t.Fatalf("no log line for the refused peer:\n%s", d.stderr)
		}
	})

	t.Run("listener runs unprivileged", func(t *testing.T) {
		pid := listenerPid(t, f.bin)
		st := string(snapshot(t, "/proc/"+strconv.Itoa(pid)+"/status"))
		uid := strconv.Itoa(d.listener.UID)
		if !strings.Contains(st, "Uid:\t"+uid+"\t"+uid+"\t"+uid+"\t"+uid) || !strings.Contains(st, "CapEff:\t0000000000000000") {
			t.Fatalf("listener status:\n%s", st)
		}
	})
}

// findProc returns the pid of "bin sub", or 0.
func findProc(bin, sub string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline"); strings.HasPrefix(string(b), bin+"\x00"+sub+"\x00") {
			return pid
		}
	}
	return 0
}

// TestServeVirtualUsers: a YAML map of virtual users onto a system uid and
// a mail directory; the worker runs as that uid with the directory as ~.
func TestServeVirtualUsers(t *testing.T) {
	f := newFixture(t)
	vhome := filepath.Join(f.base, "vmail", "example.org", "vuser")
	testutil.Must(t, os.MkdirAll(filepath.Dir(vhome), 0o755))
	os.Chmod(filepath.Join(f.base, "vmail"), 0o755)
	os.Chmod(filepath.Dir(vhome), 0o755)
	f.mkdirAs(f.u2, vhome)
	vmap := filepath.Join(f.base, "virtual.yaml")
	testutil.WriteFile(t, vmap, []byte(fmt.Sprintf("version: 1\nuid: %d\ngid: %d\nusers:\n  VUser@example.org: {home: %s}\n", f.u2.UID, f.u2.GID, vhome)), 0o644, 0, 0)
	d := startDaemon(t, f, "userdb: yaml:"+vmap+"\n")
	cl := dialLMTP(t, d.socket)
	cl.cmd("LHLO mta.test", "250")
	cl.cmd("MAIL FROM:<s@example.org>", "250")
	cl.cmd("RCPT TO:<vuser+tag@example.org>", "250")
	cl.cmd("RCPT TO:<vuser@other.example>", "550 5.1.1")
	cl.cmd("RCPT TO:<"+f.u1.Name+"@example.org>", "550 5.1.1") // system users are not in the map
	cl.cmd("DATA", "354")
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.stderr)
		}
	}()
	fmt.Fprintf(cl.c, "Subject: virtual\r\n\r\nhello\r\n.\r\n")
	cl.expect("250 2.0.0")
	ents, err := os.ReadDir(filepath.Join(vhome, "Maildir", "new"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("virtual Maildir: %d entries, %v\n%s", len(ents), err, d.stderr)
	}
	fi, _ := os.Stat(filepath.Join(vhome, "Maildir", "new", ents[0].Name()))
	if fi.Sys().(*syscall.Stat_t).Uid != uint32(f.u2.UID) {
		t.Fatalf("virtual message not owned by the mapped uid")
	}
}

// TestServeReloadAndDrain: SIGHUP with a bad configuration keeps the
// running one (and its connections); SIGHUP with a good one starts a new
// listener while an open session on the old one goes on; SIGTERM lets an
// open transaction finish, answers the next command with 421, and exits 0.
func TestServeReloadAndDrain(t *testing.T) {
	f := newFixture(t)
	d := startDaemon(t, f, "")
	cfgPath := filepath.Join(f.base, "lda.yaml")
	good := snapshot(t, cfgPath)
	old := listenerPid(t, f.bin)

	cl := dialLMTP(t, d.socket)
	cl.cmd("LHLO mta.test", "250")

	// A bad configuration: logged, ignored.
	testutil.WriteFile(t, cfgPath, append(append([]byte{}, good...), []byte("frobnicate: 1\n")...), 0o640, 0, 0)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(d.stderr.String(), "reload failed") }, "a logged reload failure")
	if findProc(f.bin, "listener") != old {
		t.Fatal("a bad configuration replaced the listener")
	}
	cl.cmd("NOOP", "250")

	// A good one: a new listener; the old session still works. Its new
	// spool_dir is one that only a restart could make (root makes it for
	// the listener user at start-up): the running one is kept, and said so.
	moved := bytes.Replace(good, []byte("spool-lda"), []byte("spool-moved"), 1)
	if bytes.Equal(moved, good) {
		t.Fatal("no spool_dir in the configuration to change")
	}
	testutil.WriteFile(t, cfgPath, moved, 0o640, 0, 0)
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(d.stderr.String(), "msg=reloaded") }, "a reload")
	if !strings.Contains(d.stderr.String(), "change only on restart") || !strings.Contains(d.stderr.String(), "keys=spool_dir") {
		t.Fatalf("a reload that changed spool_dir did not say it kept the running one:\n%s", d.stderr)
	}
	cl.cmd("MAIL FROM:<a@example.org>", "250")
	cl.cmd("RCPT TO:<"+f.u1.Name+"@example.org>", "250")
	cl.cmd("DATA", "354")
	fmt.Fprintf(cl.c, "Subject: across a reload\r\n\r\nx\r\n.\r\n")
	cl.expect("250 2.0.0")
	cl2 := dialLMTP(t, d.socket) // served by the new listener
	cl2.cmd("LHLO mta.test", "250")
	cl2.cmd("QUIT", "221")
	d.sendOne(t, f.u1.Name+"@example.org", "through the new listener")

	// Drain: the transaction in progress finishes, then 421.
	cl.cmd("MAIL FROM:<a@example.org>", "250")
	cl.cmd("RCPT TO:<"+f.u1.Name+"@example.org>", "250")
	d.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	cl.cmd("DATA", "354")
	fmt.Fprintf(cl.c, "Subject: during the drain\r\n\r\nx\r\n.\r\n")
	cl.expect("250 2.0.0")
	fmt.Fprintf(cl.c, "NOOP\r\n")
	if r := cl.reply(); !strings.HasPrefix(r, "421") {
		t.Fatalf("after the drained transaction: %q, want 421", r)
	}
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("lda serve exited with %v after SIGTERM\n%s", err, d.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("lda serve did not exit after draining")
	}
	d.cmd = nil
	if ents, _ := os.ReadDir(filepath.Join(f.u1.Home, "Maildir", "new")); len(ents) != 3 {
		t.Fatalf("%d messages delivered, want 3", len(ents))
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeLogFile: with log: FILE, the listener's lines (connect, per
// recipient) go to the file too, next to root's; a recipient delivered
// by a direct worker gets one line, which says where the message went and
// under which policy rule.
func TestServeLogFile(t *testing.T) {
	f := newFixture(t)
	logFile := filepath.Join(f.base, "serve.log")
	d := startDaemon(t, f, "log: "+logFile+"\n")
	addr := f.u1.Name + "@example.org"
	d.sendOne(t, addr, "logged")
	waitFor(t, func() bool {
		log := string(snapshot(t, logFile))
		return strings.Contains(log, "msg=connect") && strings.Contains(log, "msg=recipient") && strings.Contains(log, `msg="listener started"`)
	}, "the listener's and root's lines in "+logFile)
	var mine []string
	for _, l := range strings.Split(string(snapshot(t, logFile)), "\n") {
		// The RCPT-time Sieve evaluation (msg=rcpt-sieve) is another
		// event; the delivery is logged once.
		if strings.Contains(l, " recipient="+addr+" ") && !strings.Contains(l, "msg=rcpt-sieve") {
			mine = append(mine, l)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("%d lines for the one recipient, want 1:\n%s", len(mine), strings.Join(mine, "\n"))
	}
	for _, want := range []string{"msg=recipient", `status="250 2.0.0"`, `where="` + filepath.Join(f.u1.Home, "Maildir", "new") + "/", "rule=", "session="} {
		if !strings.Contains(mine[0], want) {
			t.Errorf("the recipient's line lacks %q: %s", want, mine[0])
		}
	}
	if st, err := os.Stat(logFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("log file mode: %v %v", st, err)
	}
}

// TestServeLogNone: with log: none, neither root nor the listener writes
// a line anywhere, and mail is still delivered.
func TestServeLogNone(t *testing.T) {
	f := newFixture(t)
	d := startDaemon(t, f, "log: none\n")
	d.sendOne(t, f.u1.Name+"@example.org", "unlogged")
	d.sendOne(t, f.u1.Name+"@example.org", "unlogged again")
	if out := d.stderr.String(); strings.Contains(out, "msg=") {
		t.Fatalf("log: none, yet lines on standard error:\n%s", out)
	}
}

// listenerPid waits for the daemon's listener: the parent binds the socket
// before it starts the listener, so the socket alone does not mean it runs.
func listenerPid(t *testing.T, bin string) int {
	t.Helper()
	var pid int
	waitFor(t, func() bool { pid = findProc(bin, "listener"); return pid != 0 }, "the listener to start")
	return pid
}

// TestServeTimerSlack: the timer slack reaches every thread of the
// listener and of a direct worker (root passes it on at fork; see
// spawn/slack.go): timer_slack for both, or each one's default.
func TestServeTimerSlack(t *testing.T) {
	for _, tc := range []struct {
		name, config     string
		listener, worker string // ns
	}{
		{"set", "timer_slack: 3ms\n", "3000000", "3000000"},
		{"defaults", "", strconv.FormatInt(spawn.DefaultListenerSlack.Nanoseconds(), 10), strconv.FormatInt(spawn.DefaultTimerSlack.Nanoseconds(), 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			d := startDaemon(t, f, tc.config)
			d.sendOne(t, f.u1.Name+"@example.org", "slack")
			for _, p := range []struct{ sub, want string }{{"listener", tc.listener}, {"worker", tc.worker}} {
				pid := findProc(f.bin, p.sub)
				if pid == 0 {
					t.Fatalf("no %s process (a direct worker stays for idle_time)", p.sub)
				}
				tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
				if err != nil || len(tasks) == 0 {
					t.Fatalf("%s threads: %v", p.sub, err)
				}
				checked := 0
				for _, task := range tasks {
					b, err := os.ReadFile("/proc/" + task.Name() + "/timerslack_ns")
					if err != nil {
						continue // the thread ended
					}
					checked++
					if got := strings.TrimSpace(string(b)); got != p.want {
						t.Errorf("%s thread %s: timer slack %s ns, want %s", p.sub, task.Name(), got, p.want)
					}
				}
				if checked == 0 {
					t.Fatalf("%s: no thread's timer slack could be read", p.sub)
				}
			}
		})
	}
}
