package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// heldPaths returns what the descriptors of process pid lead to, as
// readlink of /proc/PID/fd gives them.
func heldPaths(pid int) []string {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if p, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// TestServeHeldMbox attacks the warm worker's held mbox (mbox.Held)
// through the real daemon: between deliveries the recipient renames the
// mbox away, swaps in a symlink to another of their files, and links
// it. The worker holds the first mbox open between deliveries; each
// delivery after a swap must go where a fresh open would (the new file),
// or be refused as a fresh open would be (450 4.2.0), and the file held
// before must get nothing more. A worker idle for a second lets it go.
func TestServeHeldMbox(t *testing.T) {
	f := newFixture(t)
	d := startDaemon(t, f, "workers: {max_idle: 8, idle_time: 1m, max_deliveries: 100}\n")
	u := f.u1
	mail := filepath.Join(u.Home, "mail")
	box := filepath.Join(mail, "inbox")
	notes := filepath.Join(u.Home, "held-notes")
	asU := func(argv ...string) { t.Helper(); f.asUser(u, argv...) }
	asU("mkdir", "-p", mail)
	asU("sh", "-c", "printf 'not a mailbox\\n' > "+notes)
	send := func(subject, want string) {
		t.Helper()
		cl := dialLMTP(t, d.socket)
		cl.cmd("LHLO mta.test", "250")
		cl.cmd("MAIL FROM:<sender@example.org>", "250")
		cl.cmd("RCPT TO:<"+u.Name+"@example.org> XLDA-DEST=mbox:"+box, "250")
		cl.cmd("DATA", "354")
		fmt.Fprintf(cl.c, "Subject: %s\r\n\r\nx\r\n.\r\n", subject)
		cl.expect(want)
		cl.cmd("QUIT", "221")
	}
	has := func(path, subject string) bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), "Subject: "+subject+"\n")
	}

	send("one", "250 2.0.0")
	ws := warmWorkers(f.bin, u.UID)
	if len(ws) != 1 {
		t.Fatalf("warm workers after one delivery: %v, want one", ws)
	}
	worker := ws[0]
	holds := func(path string) bool {
		for _, p := range heldPaths(worker) {
			if p == path {
				return true
			}
		}
		return false
	}
	if !holds(box) {
		t.Fatalf("the warm worker does not hold %s open: %v", box, heldPaths(worker))
	}

	// Renamed away, a new mbox in its place: the new one gets the mail.
	asU("mv", box, box+".old")
	asU("sh", "-c", ": > "+box)
	send("two", "250 2.0.0")
	if !has(box, "two") || has(box+".old", "two") {
		t.Fatalf("after the rename, message two went to the held file, not to %s", box)
	}
	if !holds(box) || holds(box+".old") {
		t.Fatalf("after the rename the worker holds %v", heldPaths(worker))
	}

	// A symlink to another file of the user's in its place: refused, as
	// a fresh open refuses it; neither file changes.
	asU("mv", box, box+".second")
	asU("ln", "-s", notes, box)
	before, _ := os.ReadFile(notes)
	second, _ := os.ReadFile(box + ".second")
	send("three", "450 4.2.0")
	if after, _ := os.ReadFile(notes); string(after) != string(before) {
		t.Fatalf("the symlink's target changed:\n%s", after)
	}
	if after, _ := os.ReadFile(box + ".second"); string(after) != string(second) {
		t.Fatal("the mbox held before the symlink got message three")
	}

	// A regular file again, with a second link: refused (st_nlink).
	asU("rm", box)
	asU("sh", "-c", ": > "+box)
	asU("ln", box, filepath.Join(mail, "inbox.link"))
	send("four", "450 4.2.0")
	if has(box, "four") {
		t.Fatal("a mailbox with two links got message four")
	}
	asU("rm", filepath.Join(mail, "inbox.link"))
	send("five", "250 2.0.0")
	if !has(box, "five") {
		t.Fatal("message five is not in the mbox")
	}
	if got := warmWorkers(f.bin, u.UID); len(got) != 1 || got[0] != worker {
		t.Fatalf("workers %v, want the same warm worker %d throughout", got, worker)
	}

	// A second without mail, and the worker lets the mbox go (a deleted
	// one is then freed at once); the next delivery opens it afresh.
	if !holds(box) {
		t.Fatalf("after message five the worker holds %v", heldPaths(worker))
	}
	waitFor(t, func() bool { return !holds(box) }, "the idle worker to close the mbox")
	send("six", "250 2.0.0")
	if !has(box, "six") || !holds(box) {
		t.Fatalf("message six: in the mbox %v, held %v", has(box, "six"), heldPaths(worker))
	}
}
