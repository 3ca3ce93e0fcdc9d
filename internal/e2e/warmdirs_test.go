package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
