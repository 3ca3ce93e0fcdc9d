package lmtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// memBackend records the spooled message, whether it was a memfd, and
// what a write, a truncation and a growth through it did.
type memBackend struct {
	fakeBackend
	mu      sync.Mutex
	body    []byte
	memfd   bool
	changed []string // what changed the message or did not fail
	frozen  string   // why the descriptor is frozen, or "" if it is not
}

// frozenBy says what keeps anyone from changing the message through f, or
// "" if nothing does: the seals of a memfd, or, for any other file, a
// read-only descriptor of a file that only its owner may write (then a
// worker, running as another user, cannot reopen it for writing through
// /proc, as it could a memfd: those are 0777).
func frozenBy(f *os.File) string {
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err == nil && seals&frozenSeals == frozenSeals {
		return "sealed"
	}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	var st unix.Stat_t
	if err != nil || fl&unix.O_ACCMODE != unix.O_RDONLY || unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&0o077 != 0 {
		return ""
	}
	return "read-only, mode 0600"
}

func (b *memBackend) Data(msg *os.File, size int64, rcpts []Recipient) []Reply {
	link, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", msg.Fd()))
	frozen := frozenBy(msg)
	body, _ := io.ReadAll(io.NewSectionReader(msg, 0, size+1))
	replies := b.fakeBackend.Data(msg, size, rcpts)
	var changed []string
	if _, err := msg.WriteAt([]byte("!"), 0); err == nil {
		changed = append(changed, "write")
	}
	if err := msg.Truncate(0); err == nil {
		changed = append(changed, "truncate")
	}
	if err := msg.Truncate(size + 10); err == nil {
		changed = append(changed, "grow")
	}
	if after, _ := io.ReadAll(io.NewSectionReader(msg, 0, size+11)); string(after) != string(body) {
		changed = append(changed, "content")
	}
	b.mu.Lock()
	b.body, b.memfd, b.changed, b.frozen = body, strings.HasPrefix(link, "/memfd:"), changed, frozen
	b.mu.Unlock()
	return replies
}

// countingSpooler counts the disk spools made.
type countingSpooler struct {
	spooler
	n int
}

func (s *countingSpooler) spool() (*os.File, error) {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return s.spooler.spool()
}

// TestSpoolMemory: a message up to SpoolMemory bytes is spooled in a
// memfd and never reaches the disk spool; a larger one moves to the disk
// spool once, intact; a disk spool that fails at that point gets its
// status; without SpoolMemory, or without memfd, the disk spool is used.
// Whichever it is, the backend gets it frozen: a write, a truncation or a
// growth through its descriptor fails. A memfd is sealed; one that
// cannot be sealed moves to the disk spool, which is reopened read-only
// (if that fails, every recipient gets 451 4.3.0), never reopened itself.
func TestSpoolMemory(t *testing.T) {
	for _, tc := range []struct {
		name     string
		limit    int64
		body     int
		disk     string // spooler mode
		noMemfd  bool
		noSeal   bool
		noReopen bool
		wantDisk int
		wantMem  bool
		reply    string
	}{
		{"small, in memory", 4096, 100, "", false, false, false, 0, true, "250"},
		{"exactly the limit, in memory", 4096, 4096, "", false, false, false, 0, true, "250"},
		{"in memory, sealing refused", 4096, 100, "", false, true, false, 1, false, "250"},
		{"in memory, sealing and reopening refused", 4096, 100, "", false, true, true, 1, false, "451 4.3.0"},
		{"in memory, sealing refused, disk refuses", 4096, 100, "fail", false, true, false, 1, false, "451 4.3.0"},
		{"on disk, reopening refused", 0, 100, "", false, false, true, 1, false, "451 4.3.0"},
		{"large, moved to disk", 4096, 200000, "", false, false, false, 1, false, "250"},
		{"large, disk full", 4096, 200000, "full", false, false, false, 1, false, "452 4.3.1"},
		{"large, disk refuses", 4096, 200000, "fail", false, false, false, 1, false, "451 4.3.0"},
		{"no memory spool", 0, 100, "", false, false, false, 1, false, "250"},
		{"no memfd", 4096, 100, "", true, false, false, 1, false, "250"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.noMemfd {
				old := memfdCreate
				memfdCreate = func(string, int) (int, error) { return -1, errors.New("memfd: test") }
				defer func() { memfdCreate = old }()
			}
			if tc.noReopen {
				old := reopen
				reopen = func(uintptr) (int, error) { return -1, unix.EMFILE }
				defer func() { reopen = old }()
			}
			if tc.noSeal {
				old := addSeals
				addSeals = func(uintptr) error { return errors.New("seal: test") }
				defer func() { addSeals = old }()
			}
			client, server := net.Pipe()
			defer client.Close()
			cfg := testConfig()
			cfg.SpoolMemory = tc.limit
			sp := &countingSpooler{spooler: spooler{dir: t.TempDir(), mode: tc.disk}}
			b := &memBackend{}
			done := make(chan error, 1)
			go func() { done <- NewSession(server, cfg, b, sp.spool).Serve() }()
			// Lines of 100 bytes (99 and LF once spooled), as many as make the size.
			var body strings.Builder
			for body.Len() < tc.body {
				n := min(99, tc.body-body.Len()-1)
				if n < 0 {
					break
				}
				body.WriteString(strings.Repeat("x", n) + "\n")
			}
			want := body.String()
			wire := strings.ReplaceAll(want, "\n", "\r\n")
			r := bufio.NewReader(client)
			client.SetDeadline(time.Now().Add(20 * time.Second))
			go io.WriteString(client, "LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"+wire+".\r\nQUIT\r\n")
			var final string
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					break
				}
				if strings.HasPrefix(line, "250 2.") || strings.HasPrefix(line, "45") || strings.HasPrefix(line, "55") {
					final = line
				}
			}
			<-done
			if !strings.HasPrefix(final, tc.reply) {
				t.Fatalf("final reply %q, want %s", final, tc.reply)
			}
			if sp.n != tc.wantDisk {
				t.Fatalf("disk spool made %d times, want %d", sp.n, tc.wantDisk)
			}
			if tc.reply != "250" {
				return
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if string(b.body) != want {
				t.Fatalf("spooled %d bytes, want %d, or different", len(b.body), len(want))
			}
			if b.memfd != tc.wantMem {
				t.Fatalf("memfd = %v, want %v", b.memfd, tc.wantMem)
			}
			if len(b.changed) > 0 {
				t.Fatalf("the backend's descriptor let through: %q", b.changed)
			}
			// A memfd is sealed: reopened read-only, its mode (0777) would
			// let another user reopen it for writing.
			if want := map[bool]string{true: "sealed", false: "read-only, mode 0600"}[tc.wantMem]; b.frozen != want {
				t.Fatalf("the backend's descriptor is frozen by %q, want %q", b.frozen, want)
			}
		})
	}
}

// TestReopenReadOnly: the sealed memfd is told from anything else,
// and ReopenReadOnly gives a read-only description of its own, so that a
// status flag one reader sets (O_DIRECT, which makes unaligned reads
// fail where the file system honours it) never reaches another reader.
func TestReopenReadOnly(t *testing.T) {
	body := []byte(strings.Repeat("x", 1000))
	disk, err := os.CreateTemp(t.TempDir(), "spool")
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	if _, err := disk.Write(body); err != nil {
		t.Fatal(err)
	}
	sp, err := newSpill(1<<20, func() (*os.File, error) { return nil, errors.New("no disk spool") })
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	sp.Write(body)
	sealed, err := sp.file()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    *os.File
		want bool
	}{{"sealed memfd", sealed, true}, {"disk spool", disk, false}} {
		if got := frozenBy(tc.f) == "sealed"; got != tc.want {
			t.Errorf("%s sealed: %v, want %v", tc.name, got, tc.want)
		}
	}

	shared, err := ReopenReadOnly(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	own, err := ReopenReadOnly(shared)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	for _, f := range []*os.File{shared, own} {
		if fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_ACCMODE != unix.O_RDONLY {
			t.Fatalf("reopened descriptor's flags %#x (%v), want read-only", fl, err)
		}
	}
	// A hostile reader sets a flag on the description it was given.
	fl, _ := unix.FcntlInt(shared.Fd(), unix.F_GETFL, 0)
	if _, err := unix.FcntlInt(shared.Fd(), unix.F_SETFL, fl|unix.O_NONBLOCK|unix.O_DIRECT); err != nil {
		if _, err := unix.FcntlInt(shared.Fd(), unix.F_SETFL, fl|unix.O_NONBLOCK); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := unix.FcntlInt(own.Fd(), unix.F_GETFL, 0); got&(unix.O_NONBLOCK|unix.O_DIRECT) != 0 {
		t.Fatalf("a flag set on one reader's description reached another's: %#x", got)
	}
	buf := make([]byte, 7)
	if n, err := own.ReadAt(buf, 3); n != len(buf) || err != nil {
		t.Fatalf("the other reader's read: %d bytes, %v", n, err)
	}
}
