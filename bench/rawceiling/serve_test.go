package main

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// referenceMboxEntry is the first, allocating version of mboxEntry: the
// one-pass version must write the same bytes (the From_ line aside).
func referenceMboxEntry(data []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")) {
			b.WriteByte('>')
		}
		b.Write(line)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

func TestAppendMboxEntryMatchesReference(t *testing.T) {
	for name, in := range map[string]string{
		"empty":              "",
		"crlf":               "A: b\r\n\r\nbody\r\n",
		"from lines":         "A: b\r\n\r\nFrom x\r\n>From y\r\n>>From z\r\nFromage\r\n",
		"no final newline":   "A: b\r\n\r\nlast line",
		"lone cr":            "A: b\r\n\r\na\rb\r\nc\r",
		"lf only":            "A: b\n\nFrom x\n",
		"empty lines":        "\r\n\r\n\n\r\n",
		"cr before crlf":     "x\r\r\n",
		"from without space": "From\r\n>From\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			got := appendMboxEntry([]byte("kept"), []byte(in))
			if !bytes.HasPrefix(got, []byte("keptFrom ")) {
				t.Fatalf("%q: no From_ line after what was there", got)
			}
			_, body, ok := bytes.Cut(got, []byte("\n"))
			if want := referenceMboxEntry([]byte(in)); !ok || !bytes.Equal(body, want) {
				t.Fatalf("got %q, want %q", body, want)
			}
		})
	}
}

// TestServe drives the real binary's -serve over LMTP, as lmtpload does:
// both recipients' processes store the message, dot-unstuffed; an unknown
// recipient is refused; the mbox entry is quoted.
func TestServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	exe := filepath.Join(t.TempDir(), "rawceiling")
	if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, kind := range []string{"maildir", "mbox"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			sock := filepath.Join(dir, "s.sock")
			args := []string{"-serve", sock, "-dir", filepath.Join(dir, "base"), "-users", "u1,u2"}
			if kind == "mbox" {
				args = append(args, "-mbox")
			}
			cmd := exec.Command(exe, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			var c net.Conn
			for deadline := time.Now().Add(10 * time.Second); ; {
				var err error
				if c, err = net.Dial("unix", sock); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no socket: %v; %s", err, stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			r := bufio.NewReader(c)
			reply := func() string {
				var all []string
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						t.Fatalf("reading a reply: %v (so far %q); %s", err, all, stderr.String())
					}
					all = append(all, strings.TrimRight(l, "\r\n"))
					if len(l) < 4 || l[3] != '-' {
						return strings.Join(all, "|")
					}
				}
			}
			// Pipelined, as lmtpload sends them.
			want := []string{"220 ", "250-rawceiling|250-PIPELINING", "250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "354 "}
			c.Write([]byte("LHLO t\r\nMAIL FROM:<s@bench.test>\r\nRCPT TO:<u1@bench.test>\r\nRCPT TO:<nobody@bench.test>\r\nRCPT TO:<u2@bench.test>\r\nDATA\r\n"))
			for _, w := range want {
				if got := reply(); !strings.HasPrefix(got, w) {
					t.Fatalf("got %q, want %q...", got, w)
				}
			}
			c.Write([]byte("Subject: t\r\n\r\n..dot\r\nFrom me\r\n.\r\n"))
			for range 2 {
				if got := reply(); !strings.HasPrefix(got, "250 2.0.0") {
					t.Fatalf("got %q after the message, want 250 2.0.0", got)
				}
			}
			c.Write([]byte("QUIT\r\n"))
			if got := reply(); !strings.HasPrefix(got, "221 ") {
				t.Fatalf("got %q to QUIT", got)
			}
			for _, u := range []string{"u1", "u2"} {
				if kind == "mbox" {
					b, err := os.ReadFile(filepath.Join(dir, "base", u+".mbox"))
					if err != nil {
						t.Fatal(err)
					}
					if _, body, _ := bytes.Cut(b, []byte("\n")); string(body) != "Subject: t\n\n.dot\n>From me\n\n" {
						t.Fatalf("%s's mbox: %q", u, b)
					}
					continue
				}
				md := filepath.Join(dir, "base", u, "Maildir")
				ents, err := os.ReadDir(filepath.Join(md, "new"))
				if err != nil || len(ents) != 1 {
					t.Fatalf("%s's new/: %v, %v", u, ents, err)
				}
				if b, _ := os.ReadFile(filepath.Join(md, "new", ents[0].Name())); string(b) != "Subject: t\r\n\r\n.dot\r\nFrom me\r\n" {
					t.Fatalf("%s's message: %q", u, b)
				}
				if tmp, _ := os.ReadDir(filepath.Join(md, "tmp")); len(tmp) != 0 {
					t.Fatalf("%s's tmp/ not empty", u)
				}
			}
		})
	}
}
