package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lda/mbox"
)

// TestDemo runs README's first command, `lda demo`, as root (it delivers as
// nobody) and as an ordinary user, and checks what it delivered.
func TestDemo(t *testing.T) {
	f := newFixture(t)
	check := func(t *testing.T, dir, out string) {
		t.Helper()
		if strings.Count(out, "S: 250 2.0.0 delivered") != 2 {
			t.Fatalf("demo output:\n%s", out)
		}
		ents, err := os.ReadDir(filepath.Join(dir, "home", "Maildir", "new"))
		if err != nil || len(ents) != 1 {
			t.Fatalf("demo Maildir: %d, %v", len(ents), err)
		}
		fh, err := os.Open(filepath.Join(dir, "home", "mail", "inbox"))
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		m, err := mbox.NewReader(fh, mbox.MboxRD).Next()
		if err != nil || !strings.Contains(string(m.Body), "\nFrom here on") || !strings.Contains(string(m.Body), "\n.and this line was dot-stuffed") {
			t.Fatalf("demo mbox message: %v\n%s", err, m.Body)
		}
	}
	t.Run("root", func(t *testing.T) {
		dir := filepath.Join(f.base, "demo-root")
		r := f.run(nil, "demo", "-dir", dir)
		if r.exit != 0 {
			t.Fatalf("exit %d\n%s%s", r.exit, r.stdout, r.stderr)
		}
		check(t, dir, r.stdout)
	})
	t.Run("ordinary user", func(t *testing.T) {
		dir := filepath.Join(f.u1.Home, "demo")
		out := f.asUser(f.u1, f.bin, "demo", "-dir", dir)
		check(t, dir, out)
	})
}
