package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lda/bench/lmtpload/lmtpbench"
)

func TestMboxEntryQuotesAndCounts(t *testing.T) {
	var mbox []byte
	for n := range 10 {
		mbox = append(mbox, mboxEntry(lmtpbench.NewMessage("mb", n, 2048, []string{"a@bench.test"}).Data)...)
	}
	if bytes.Contains(mbox, []byte("\r")) {
		t.Fatal("CR left in the mbox")
	}
	// Exactly one unquoted From_ line per message, each at the start of
	// the file or after an empty line.
	lines := strings.Split(string(mbox), "\n")
	from := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "From ") {
			from++
			if i > 0 && lines[i-1] != "" {
				t.Fatalf("From_ line %d not after an empty line", i)
			}
		}
	}
	if from != 10 {
		t.Fatalf("%d From_ lines for 10 messages", from)
	}
	if !strings.Contains(string(mbox), "\n>From the bench") || !strings.Contains(string(mbox), "\n>>From an already") || !strings.Contains(string(mbox), "\n>>>From twice") {
		t.Fatal("mboxrd quoting missing")
	}
}

func TestMaildirAndMboxRuns(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mbox, link bool
		tmpfile    int
	}{
		{name: "rename"}, {name: "link", link: true}, {name: "tmpfile", tmpfile: 1},
		{name: "tmpfile-unsafe", tmpfile: 2}, {name: "mbox", mbox: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := &config{dir: dir, users: []string{"u1", "u2", "u3"}, conns: 3, messages: 20, size: 1024, rcpts: 2,
				mbox: tc.mbox, link: tc.link, tmpfile: tc.tmpfile, prefix: "t", pid: os.Getpid()}
			if err := cfg.prepare(); err != nil {
				t.Fatal(err)
			}
			res, err := run(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != 40 || res.MessagesDone != 20 || res.P50ms <= 0 || res.CPUms <= 0 {
				t.Fatalf("%+v", res)
			}
			total := 0
			for _, u := range cfg.users {
				if tc.mbox {
					b, err := os.ReadFile(filepath.Join(dir, u+".mbox"))
					if err != nil {
						t.Fatal(err)
					}
					total += bytes.Count(append([]byte("\n"), b...), []byte("\nFrom "))
					continue
				}
				ents, err := os.ReadDir(filepath.Join(dir, u, "Maildir", "new"))
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range ents {
					if fi, err := e.Info(); err != nil || fi.Size() != 1024 {
						t.Fatalf("new/%s: %v, %v; want 1024 bytes", e.Name(), fi, err)
					}
				}
				total += len(ents)
				if tmp, _ := os.ReadDir(filepath.Join(dir, u, "Maildir", "tmp")); len(tmp) != 0 {
					t.Fatalf("tmp/ not empty")
				}
			}
			if total != 40 {
				t.Fatalf("%d messages stored, want 40", total)
			}
			if want := map[int]string{1: "maildir-tmpfile", 2: "maildir-tmpfile-unsafe"}[tc.tmpfile]; want != "" && res.Mode != want {
				t.Fatalf("mode %q, want %q", res.Mode, want)
			}
		})
	}
}
