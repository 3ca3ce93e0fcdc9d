package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lda/bench/lmtpload/lmtpbench"
)

// fakeLMTP is a minimal LMTP server: RCPTs to a local part containing
// "refuse" get 550 5.1.1, those containing "temp" get 451 4.3.0 after
// DATA, all others 250. It checks every message's X-Bench-Sum and, with
// breakAt > 0, closes a connection without replying after the breakAt-th
// message on it.
type fakeLMTP struct {
	t       *testing.T
	ln      net.Listener
	breakAt int
	// chunking offers CHUNKING and takes BDAT; set before the first
	// connection.
	chunking bool
	mu       sync.Mutex
	bad      []string
	cmds     []string // every command line, for inspection
	conns    atomic.Int32
}

func startFake(t *testing.T, breakAt int) (*fakeLMTP, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "lmtp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLMTP{t: t, ln: ln, breakAt: breakAt}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			go f.serve(c)
		}
	}()
	return f, sock
}

func (f *fakeLMTP) fail(format string) {
	f.mu.Lock()
	f.bad = append(f.bad, format)
	f.mu.Unlock()
}

func (f *fakeLMTP) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	say := func(s string) { w.WriteString(s + "\r\n") }
	say("220 fake LMTP")
	w.Flush()
	var rcpts []string
	messages := 0
	for {
		if r.Buffered() == 0 {
			w.Flush()
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\r\n")
		f.mu.Lock()
		f.cmds = append(f.cmds, line)
		f.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "LHLO":
			say("250-fake")
			if f.chunking {
				say("250-CHUNKING")
			}
			say("250 PIPELINING")
		case "MAIL":
			rcpts = nil
			say("250 2.1.0 ok")
		case "RCPT":
			if strings.Contains(arg, "refuse") {
				say("550 5.1.1 no such user")
			} else {
				rcpts = append(rcpts, arg)
				say("250 2.1.5 ok")
			}
		case "DATA":
			if len(rcpts) == 0 {
				say("503 5.5.1 no valid recipients")
				continue
			}
			say("354 go ahead")
			w.Flush()
			var wire []byte
			for {
				l, err := r.ReadBytes('\n')
				if err != nil {
					return
				}
				wire = append(wire, l...)
				if string(l) == ".\r\n" {
					break
				}
			}
			data, ok := lmtpbench.DotUnstuff(wire)
			if !ok || !sumOK(data) {
				f.fail("checksum mismatch")
			}
			messages++
			if f.breakAt > 0 && messages == f.breakAt {
				return // no reply: the client must count the recipients as dropped
			}
			replyEach(say, rcpts)
			rcpts = nil
		case "BDAT":
			size, last, _ := strings.Cut(arg, " ")
			n, err := strconv.Atoi(size)
			if !f.chunking || err != nil || n < 0 || last != "LAST" {
				f.fail("unexpected BDAT " + arg)
				return
			}
			data := make([]byte, n)
			if _, err := io.ReadFull(r, data); err != nil {
				return
			}
			if len(rcpts) == 0 {
				say("503 5.5.1 no valid recipients")
				continue
			}
			if !sumOK(data) {
				f.fail("checksum mismatch")
			}
			replyEach(say, rcpts)
			rcpts = nil
		case "RSET":
			rcpts = nil
			say("250 2.0.0 ok")
		case "QUIT":
			say("221 2.0.0 bye")
			w.Flush()
			return
		default:
			say("500 5.5.1 command unrecognized")
		}
	}
}

// sumOK checks a message (CRLF line ends, not dot-stuffed) against its
// X-Bench-Sum header.
func sumOK(data []byte) bool {
	head, body, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	sum := sha256.Sum256(body)
	return bytes.Contains(head, []byte("X-Bench-Sum: "+hex.EncodeToString(sum[:])))
}

// replyEach sends the final reply of each accepted recipient: 451 for a
// local part containing "temp", else 250.
func replyEach(say func(string), rcpts []string) {
	for _, rc := range rcpts {
		if strings.Contains(rc, "temp") {
			say("451 4.3.0 temporary local error")
		} else {
			say("250 2.0.0 delivered")
		}
	}
}

func testConfig(t *testing.T, sock string) (*config, string) {
	t.Helper()
	ackPath := filepath.Join(t.TempDir(), "ack")
	af, err := os.Create(ackPath)
	if err != nil {
		t.Fatal(err)
	}
	return &config{
		socket: sock, conns: 2, messages: 10, size: 700, rcpts: 3,
		users: []string{"a", "refuse", "temp"}, dest: destFlag{},
		lhlo: "test", prefix: "t", timeout: 5 * time.Second,
		ack: &ackWriter{w: bufio.NewWriter(af), f: af},
	}, ackPath
}

func TestRunCountsEveryReply(t *testing.T) {
	for _, mode := range []struct{ pipelining, chunking bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		pipelining := mode.pipelining
		t.Run(fmt.Sprintf("pipelining=%v,chunking=%v", mode.pipelining, mode.chunking), func(t *testing.T) {
			f, sock := startFake(t, 0)
			f.chunking = mode.chunking
			cfg, ackPath := testConfig(t, sock)
			cfg.pipelining, cfg.chunking = mode.pipelining, mode.chunking
			cfg.dest["a"] = "maildir:/home/a/My Mail"
			res := run(cfg)
			if err := cfg.ack.close(); err != nil {
				t.Fatal(err)
			}
			if res.OK != 10 || res.Tempfail != 10 || res.Permfail != 10 || res.Dropped != 0 || res.MessagesDone != 10 {
				t.Fatalf("pipelining=%v: %+v", pipelining, res)
			}
			if res.DeliveriesPerSec <= 0 || res.P50ms <= 0 || res.P99ms < res.P50ms {
				t.Fatalf("rates: %+v", res)
			}
			// The client's own CPU over the run: more than nothing, and no
			// more than all the CPUs could have given it in that time
			// (with 20 ms to spare: other threads' times are brought up
			// to date at scheduler ticks, and this run is a few ms long).
			if max := res.WallSeconds*1000*float64(runtime.NumCPU()) + 20; res.CPUms <= 0 || res.CPUms > max {
				t.Fatalf("cpu %.3f ms over %.3f s on %d CPUs", res.CPUms, res.WallSeconds, runtime.NumCPU())
			}
			f.mu.Lock()
			bad, cmds := f.bad, f.cmds
			f.mu.Unlock()
			if len(bad) > 0 {
				t.Fatalf("server saw: %v", bad)
			}
			ack, _ := os.ReadFile(ackPath)
			lines := strings.Split(strings.TrimSpace(string(ack)), "\n")
			if len(lines) != 30 {
				t.Fatalf("%d ack lines:\n%s", len(lines), ack)
			}
			for _, want := range []string{"t-0 a@bench.test 250 2.0.0", "t-0 refuse@bench.test 550 5.1.1", "t-0 temp@bench.test 451 4.3.0"} {
				if !strings.Contains("\n"+string(ack), "\n"+want+"\n") {
					t.Errorf("no ack line %q", want)
				}
			}
			found, data, bdat := false, 0, 0
			for _, c := range cmds {
				found = found || c == "RCPT TO:<a@bench.test> XLDA-DEST=maildir:/home/a/My+20Mail"
				if c == "DATA" {
					data++
				}
				if strings.HasPrefix(c, "BDAT ") {
					bdat++
				}
			}
			if !found {
				t.Errorf("no RCPT with XLDA-DEST among %q", cmds)
			}
			if want := map[bool][2]int{false: {10, 0}, true: {0, 10}}[mode.chunking]; data != want[0] || bdat != want[1] {
				t.Errorf("%d DATA and %d BDAT commands, want %v", data, bdat, want)
			}
		})
	}
}

func TestRunSurvivesBrokenConnections(t *testing.T) {
	f, sock := startFake(t, 3)
	cfg, ackPath := testConfig(t, sock)
	cfg.users = []string{"a", "b"}
	cfg.rcpts = 2
	cfg.messages = 20
	res := run(cfg)
	cfg.ack.close()
	// Every third message on a connection is dropped with both recipients.
	if res.Dropped == 0 || res.OK+res.Dropped != 40 || res.Dropped%2 != 0 || res.MessagesDone != res.OK/2 {
		t.Fatalf("%+v", res)
	}
	if f.conns.Load() < 3 {
		t.Fatalf("only %d connections: no reconnect", f.conns.Load())
	}
	ack, _ := os.ReadFile(ackPath)
	if n := strings.Count(string(ack), " DROPPED -\n"); n != res.Dropped {
		t.Fatalf("%d DROPPED ack lines for %d dropped", n, res.Dropped)
	}
}

func TestRunWithoutServerDropsEverything(t *testing.T) {
	cfg, _ := testConfig(t, filepath.Join(t.TempDir(), "none.sock"))
	cfg.timeout = 200 * time.Millisecond
	res := run(cfg)
	cfg.ack.close()
	if res.Dropped != 30 || res.OK != 0 || res.MessagesDone != 0 {
		t.Fatalf("%+v", res)
	}
}

// TestRunChunkingNoRecipient: every recipient refused; a pipelined BDAT
// then gets one refusal, which must be read, and the transaction reset.
func TestRunChunkingNoRecipient(t *testing.T) {
	for _, pipelining := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			f, sock := startFake(t, 0)
			f.chunking = true
			cfg, _ := testConfig(t, sock)
			cfg.pipelining, cfg.chunking = pipelining, true
			cfg.users, cfg.rcpts = []string{"refuse"}, 1
			res := run(cfg)
			cfg.ack.close()
			if res.Permfail != 10 || res.OK != 0 || res.Dropped != 0 || res.MessagesDone != 10 {
				t.Fatalf("%+v", res)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			var bdat, rset int
			for _, c := range f.cmds {
				if strings.HasPrefix(c, "BDAT ") {
					bdat++
				}
				if c == "RSET" {
					rset++
				}
			}
			if want := map[bool]int{false: 0, true: 10}[pipelining]; bdat != want || rset != 10 || len(f.bad) > 0 {
				t.Fatalf("%d BDAT (want %d), %d RSET (want 10), server saw %v", bdat, want, rset, f.bad)
			}
		})
	}
}

// TestRunChunkingRefusedWithoutCHUNKING: -chunking against a server that
// does not offer it sends nothing and counts every recipient as dropped.
func TestRunChunkingRefusedWithoutCHUNKING(t *testing.T) {
	f, sock := startFake(t, 0)
	cfg, _ := testConfig(t, sock)
	cfg.chunking, cfg.timeout = true, 300*time.Millisecond
	res := run(cfg)
	cfg.ack.close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.cmds {
		if strings.HasPrefix(c, "MAIL") {
			t.Fatalf("a MAIL was sent to a server without CHUNKING: %q", f.cmds)
		}
	}
	if res.Dropped != 30 || res.OK != 0 {
		t.Fatalf("%+v", res)
	}
}
