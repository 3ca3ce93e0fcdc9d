package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeWarmWorkerMaildirMoves attacks the Maildir a warm worker keeps
// open between deliveries (maildir.Dirs): between deliveries to the same
// worker, the user moves the Maildir away and makes a new one, then puts
// a symlink to the moved one in its place. Each delivery must go where
// opening the Maildir afresh would put it, or be refused as that would:
// never into a directory that is no longer at ~/Maildir.
func TestServeWarmWorkerMaildirMoves(t *testing.T) {
	f := newFixture(t)
	d := startDaemon(t, f, "")
	u := f.u1
	home := u.Home
	send := func(subject, want string) {
		t.Helper()
		d.send(t, u.Name+"@example.org", subject, want)
	}
	count := func(dir string) int {
		ents, _ := os.ReadDir(dir)
		return len(ents)
	}
	holds := func(dir, subject string) bool {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if b, _ := os.ReadFile(filepath.Join(dir, e.Name())); strings.Contains(string(b), "Subject: "+subject+"\n") {
				return true
			}
		}
		return false
	}

	send("one", "250 2.0.0")
	worker := findProc(f.bin, "worker")
	if worker == 0 || count(filepath.Join(home, "Maildir", "new")) != 1 {
		t.Fatalf("first delivery: worker %d, %d messages", worker, count(filepath.Join(home, "Maildir", "new")))
	}

	// Moved away, a new one made in its place: the new one gets the mail.
	old := filepath.Join(home, "old")
	if err := os.Rename(filepath.Join(home, "Maildir"), old); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"", "tmp", "new", "cur"} {
		f.mkdirAs(u, filepath.Join(home, "Maildir", sub))
	}
	send("two", "250 2.0.0")
	if !holds(filepath.Join(home, "Maildir", "new"), "two") || count(filepath.Join(old, "new")) != 1 {
		t.Fatalf("after the move: the new Maildir holds %d, the moved one %d",
			count(filepath.Join(home, "Maildir", "new")), count(filepath.Join(old, "new")))
	}

	// The new one replaced by a symlink to the moved one: refused, as a
	// symlink always is, and nothing reaches the moved one.
	if err := os.Rename(filepath.Join(home, "Maildir"), filepath.Join(home, "second")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("old", filepath.Join(home, "Maildir")); err != nil {
		t.Fatal(err)
	}
	send("three", "450 4.2.0")
	if count(filepath.Join(old, "new")) != 1 || holds(filepath.Join(home, "second", "new"), "three") {
		t.Fatal("a delivery went through the symlink or into the directory moved away")
	}

	// Put back: delivered again.
	if err := os.Remove(filepath.Join(home, "Maildir")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(home, "second"), filepath.Join(home, "Maildir")); err != nil {
		t.Fatal(err)
	}
	send("four", "250 2.0.0")
	if !holds(filepath.Join(home, "Maildir", "new"), "four") {
		t.Fatal("the Maildir put back did not get the delivery")
	}
	// The same warm worker served all four: the deliveries above tested
	// the directories it kept, not a fresh worker's.
	if now := findProc(f.bin, "worker"); now != worker {
		t.Fatalf("the worker changed from pid %d to %d", worker, now)
	}
}

// TestServeWarmWorkerUserFilesAppear attacks the worker's memory that the
// user's home holds none of the per-user files (a Sieve script, a policy
// file of their own): once the same warm worker has stopped looking for
// them, the user creates one, and the very next delivery must obey it, as
// a fresh worker would.
func TestServeWarmWorkerUserFilesAppear(t *testing.T) {
	f := newFixture(t)
	d := startDaemon(t, f, "")
	u := f.u1
	newDir := filepath.Join(u.Home, "Maildir", "new")
	count := func() int {
		ents, _ := os.ReadDir(newDir)
		return len(ents)
	}
	// The worker remembers only what it found in a home it had seen
	// unchanged for 100 ms (3 s where the file system's times have no
	// sub-millisecond digits); let it, with deliveries between.
	settled := func() {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Stat(u.Home, &st); err != nil {
			t.Fatal(err)
		}
		wait := 300 * time.Millisecond
		if st.Ctim.Nsec%1e6 == 0 || st.Mtim.Nsec%1e6 == 0 {
			wait = 3500 * time.Millisecond
		}
		d.sendOne(t, u.Name+"@example.org", "seen")
		time.Sleep(wait)
		d.sendOne(t, u.Name+"@example.org", "remembered")
		d.sendOne(t, u.Name+"@example.org", "not looked for")
	}

	d.sendOne(t, u.Name+"@example.org", "first") // makes ~/Maildir
	worker := findProc(f.bin, "worker")
	settled()
	n := count()
	if n != 4 {
		t.Fatalf("%d messages, want 4", n)
	}

	// A script that discards everything: the next message is discarded.
	script := filepath.Join(u.Home, ".lda.sieve")
	testutilWrite(t, script, []byte("discard;\n"), u.UID, u.GID)
	d.send(t, u.Name+"@example.org", "discarded", "250 2.0.0")
	if count() != n {
		t.Fatal("a Sieve script created after the worker stopped looking was not run")
	}

	// Gone again, and once the worker has stopped looking, a policy file
	// that sends the user's mail to an mbox instead.
	if err := os.Remove(script); err != nil {
		t.Fatal(err)
	}
	settled()
	if count() != n+3 {
		t.Fatalf("%d messages after the script went, want %d", count(), n+3)
	}
	testutilWrite(t, filepath.Join(u.Home, ".lda.yaml"), []byte("version: 1\ndefault: {mbox: ~/inbox}\nallow:\n  - {mbox: ~/inbox}\n"), u.UID, u.GID)
	d.send(t, u.Name+"@example.org", "elsewhere", "250 2.0.0")
	if b, _ := os.ReadFile(filepath.Join(u.Home, "inbox")); count() != n+3 || !strings.Contains(string(b), "Subject: elsewhere\n") {
		t.Fatal("a policy file created after the worker stopped looking was not obeyed")
	}
	if now := findProc(f.bin, "worker"); now != worker {
		t.Fatalf("the worker changed from pid %d to %d: the test proved nothing of a warm worker", worker, now)
	}
}
