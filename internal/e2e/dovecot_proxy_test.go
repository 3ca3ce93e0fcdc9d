package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lda/internal/testutil"
)

// dovecotLMTP is Debian's LMTP server binary (dovecot-lmtpd); the test
// skips without it.
const dovecotLMTP = "/usr/lib/dovecot/lmtp"

// dovecotProxyConf makes a private Dovecot LMTP instance that proxies
// every recipient to lda's loopback TCP listener ({{PORT}}). Its LMTP
// client (lib-smtp) sends BDAT to a server that offers CHUNKING, so it
// is an independent BDAT client.
const dovecotProxyConf = `base_dir = {{DIR}}/run
state_dir = {{DIR}}/state
instance_name = lda-e2e-{{NAME}}
protocols = lmtp
ssl = no
log_path = {{DIR}}/dovecot.log
lmtp_proxy = yes
passdb {
  driver = static
  args = proxy=y host=127.0.0.1 port={{PORT}} protocol=lmtp nopassword=y
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}
service lmtp {
  unix_listener {{DIR}}/lmtp.sock {
    mode = 0600
    user = root
  }
}
`

// recordingProxy relays one TCP port to another and keeps what the
// clients sent, so that a test can see the commands on the wire.
type recordingProxy struct {
	ln   net.Listener
	sent testutil.SyncBuffer
}

func startRecordingProxy(t *testing.T, to string) *recordingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProxy{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", to)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { io.Copy(c, s); c.Close() }()
				io.Copy(io.MultiWriter(s, &p.sent), c)
			}()
		}
	}()
	return p
}

// TestDovecotProxyBDAT: Dovecot's LMTP proxy, a third-party LMTP client,
// hands a message for two recipients to lda over BDAT (it chooses BDAT
// because lda offers CHUNKING). Both are delivered, byte for byte, and
// both replies come back through Dovecot.
func TestDovecotProxyBDAT(t *testing.T) {
	if _, err := os.Stat(dovecotLMTP); err != nil {
		t.Skipf("no %s (dovecot-lmtpd): %v", dovecotLMTP, err)
	}
	f := newFixture(t)
	port := freeLoopbackPort(t)
	d := startDaemon(t, f, fmt.Sprintf("tcp: 127.0.0.1:%d\n", port))
	proxy := startRecordingProxy(t, fmt.Sprintf("127.0.0.1:%d", port))

	// A short directory: Dovecot's sockets live under base_dir.
	dir, err := os.MkdirTemp("", "dv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	testutil.Must(t, os.Chmod(dir, 0o755))
	for _, sub := range []string{"run", "state"} {
		testutil.Must(t, os.Mkdir(filepath.Join(dir, sub), 0o755))
	}
	conf := strings.NewReplacer("{{DIR}}", dir, "{{PORT}}", fmt.Sprint(proxy.ln.Addr().(*net.TCPAddr).Port),
		"{{NAME}}", filepath.Base(dir)).Replace(dovecotProxyConf)
	confPath := filepath.Join(dir, "dovecot.conf")
	testutil.WriteFile(t, confPath, []byte(conf), 0o644, 0, 0)
	// Not CombinedOutput: the daemon keeps the pipes open after the
	// command returns.
	start := exec.Command("dovecot", "-c", confPath)
	out, err := os.Create(filepath.Join(dir, "start.out"))
	testutil.Must(t, err)
	start.Stdout, start.Stderr = out, out
	err = start.Run()
	out.Close()
	if err != nil {
		b, _ := os.ReadFile(out.Name())
		t.Fatalf("dovecot: %v\n%s", err, b)
	}
	t.Cleanup(func() {
		exec.Command("dovecot", "-c", confPath, "stop").Run()
		time.Sleep(200 * time.Millisecond) // let its processes go before the directory does
	})
	sock := filepath.Join(dir, "lmtp.sock")
	waitFor(t, func() bool { _, err := os.Stat(sock); return err == nil }, "Dovecot's LMTP socket")

	cl := dialLMTP(t, sock)
	cl.cmd("LHLO mta.test", "250")
	cl.cmd("MAIL FROM:<sender@example.org>", "250")
	cl.cmd("RCPT TO:<"+f.u1.Name+"@example.org>", "250")
	cl.cmd("RCPT TO:<"+f.u2.Name+"@example.org>", "250")
	cl.cmd("DATA", "354")
	fmt.Fprintf(cl.c, "Subject: through Dovecot's proxy\r\n\r\n..a dot-stuffed line\r\nFrom a line\r\nlast\r\n.\r\n")
	cl.expect("250 2.0.0")
	cl.expect("250 2.0.0")
	cl.cmd("QUIT", "221")

	sent := proxy.sent.String()
	if !strings.Contains(sent, "\r\nBDAT ") || strings.Contains(sent, "\r\nDATA\r\n") {
		t.Fatalf("Dovecot did not send BDAT (and only BDAT) to lda:\n%s", sent)
	}
	for _, u := range []*testutil.User{f.u1, f.u2} {
		ents, _ := os.ReadDir(filepath.Join(u.Home, "Maildir", "new"))
		if len(ents) != 1 {
			t.Fatalf("%s: new/ holds %d messages", u.Name, len(ents))
		}
		b := string(snapshot(t, filepath.Join(u.Home, "Maildir", "new", ents[0].Name())))
		if !strings.HasSuffix(b, "\nSubject: through Dovecot's proxy\n\n.a dot-stuffed line\nFrom a line\nlast\n") ||
			!strings.Contains(b, "Delivered-To: "+u.Name+"@example.org\n") {
			t.Fatalf("%s: message not as sent:\n%s", u.Name, b)
		}
	}
	if !strings.Contains(d.stderr.String(), "unauthenticated") {
		t.Errorf("no log line marks the TCP peer unauthenticated:\n%s", d.stderr)
	}
}
