package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDiskSpoolRecipients: with spool_memory 0 every message is spooled
// on the disk, and the workers get it read-only (a 0600 file of the
// listener's, each recipient a description of its own) rather than
// sealed; root and the warm workers accept it, and every recipient of a
// message gets it whole. Through root (no warm workers) and through warm
// workers.
func TestDiskSpoolRecipients(t *testing.T) {
	for _, tc := range []struct{ name, extra string }{
		{"through root", ""},
		{"warm workers", "workers: {max_idle: 8, idle_time: 1m, max_deliveries: 100}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			d := startDaemonLimits(t, f, "{connections: 16, recipients: 50, message_size: 1048576, spool_memory: 0, line_length: 4096, idle_timeout: 30s, data_timeout: 30s}", tc.extra)
			body := strings.Repeat("a line of the message on the disk spool\n", 100)
			cl := dialLMTP(t, d.socket)
			cl.c.SetDeadline(time.Now().Add(30 * time.Second))
			cl.cmd("LHLO disk.test", "250")
			cl.cmd("MAIL FROM:<s@example.org>", "250")
			cl.cmd("RCPT TO:<"+f.u1.Name+"@example.org>", "250")
			cl.cmd("RCPT TO:<"+f.u2.Name+"@example.org>", "250")
			cl.cmd("DATA", "354")
			fmt.Fprintf(cl.c, "Subject: disk\r\n\r\n%s.\r\n", strings.ReplaceAll(body, "\n", "\r\n"))
			cl.expect("250 2.0.0")
			cl.expect("250 2.0.0")
			cl.cmd("QUIT", "221")
			for _, u := range []string{f.u1.Home, f.u2.Home} {
				dir := filepath.Join(u, "Maildir", "new")
				ents, err := os.ReadDir(dir)
				if err != nil || len(ents) != 1 {
					t.Fatalf("%s holds %d messages (%v), want 1\n%s", dir, len(ents), err, d.stderr)
				}
				data := snapshot(t, filepath.Join(dir, ents[0].Name()))
				if !bytes.HasSuffix(data, []byte("Subject: disk\n\n"+body)) {
					t.Fatalf("%s: the message is not whole:\n%s", dir, data)
				}
			}
		})
	}
}
