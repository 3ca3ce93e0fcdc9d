package lmtp

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"lda/internal/testutil"
)

// TestSpoolAttack hands the spool's descriptor, as a backend gets it, to
// a process of another uid (setpriv, uid and gid 65534), which tries
// what a compromised worker could: write through the descriptor, and
// reopen it read-write through /proc/self/fd and write. Neither may
// change the message, whether it is the sealed memfd or the disk spool
// (a 0600 file, reopened read-only). The control case, a memfd without
// seals reopened read-only (how every small message was handed over
// before the eighteenth round), must be changed by the same attack: it
// shows the attack works and the test can fail.
func TestSpoolAttack(t *testing.T) {
	testutil.RequireRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv (util-linux)")
	}
	body := []byte("Subject: the message\n\nas the sender wrote it\n")
	spooled := func(limit int64) func(t *testing.T) *os.File {
		return func(t *testing.T) *os.File {
			dir := t.TempDir()
			sp, err := newSpill(limit, func() (*os.File, error) {
				fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
				if err != nil {
					return nil, err
				}
				return os.NewFile(uintptr(fd), "spool"), nil
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sp.Close() })
			if _, err := sp.Write(body); err != nil {
				t.Fatal(err)
			}
			f, err := sp.file()
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	unsealedReopened := func(t *testing.T) *os.File {
		fd, err := unix.MemfdCreate("lda-spool", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		rw := os.NewFile(uintptr(fd), "spool")
		t.Cleanup(func() { rw.Close() })
		if _, err := rw.Write(body); err != nil {
			t.Fatal(err)
		}
		ro, err := os.Open("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ro.Close() })
		return ro
	}
	for _, tc := range []struct {
		name        string
		file        func(t *testing.T) *os.File
		wantChanged bool
	}{
		{"sealed memfd", spooled(1 << 20), false},
		{"disk spool", spooled(0), false},
		{"control: unsealed memfd reopened read-only", unsealedReopened, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.file(t)
			// fd 3 in the attacker. The first printf writes through the
			// descriptor given; the second reopens it read-write (1<>,
			// no truncation) and writes at offset 0.
			cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/sh", "-c",
				`printf '!' >&3 2>/dev/null; printf 'X' 1<>/proc/self/fd/3 2>/dev/null; exit 0`)
			cmd.ExtraFiles = []*os.File{f}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("attacker: %v: %s", err, out)
			}
			got := make([]byte, len(body)+16)
			n, err := f.ReadAt(got, 0)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			changed := !bytes.Equal(got[:n], body)
			if changed != tc.wantChanged {
				t.Fatalf("message changed by another uid: %v, want %v (now %q)", changed, tc.wantChanged, got[:n])
			}
		})
	}
}
