package main

// -serve: the raw ceiling behind the least a delivery agent of lda's shape
// must do around it (the "floor" of that shape). See the package comment.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"lda/internal/seqpacket"
	"lda/internal/spawn"
)

// slackEnv marks the front once it runs with the listener's timer slack.
const slackEnv = "RAWCEILING_SLACK_SET"

// parallel is lda's default limit on the deliveries of one message that
// run at once (lda.yaml parallel).
const parallel = 4

// withSlack re-executes the front once with lda's listener slack, the way
// lda's parent starts its listener (package spawn): every thread of the
// new image inherits it, and the floor's processes wake as lda's do.
func withSlack() error {
	if os.Getenv(slackEnv) != "" {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return spawn.StartWithSlack(spawn.DefaultListenerSlack, func() error {
		return syscall.Exec(exe, os.Args, append(os.Environ(), slackEnv+"=1"))
	})
}

// serve answers LMTP on socket until killed: per message a spool in a
// memfd, reopened read-only, handed by descriptor to a process of the
// recipient's own, which writes it as rawceiling does and answers.
func serve(cfg *config, socket string) error {
	known := map[string]bool{}
	for _, u := range cfg.users {
		known[u] = true
	}
	// One process per user before the first connection, as a warm lda
	// has its workers; more start when a user's deliveries overlap.
	p := &pool{cfg: cfg, idle: map[string][]*seqpacket.Conn{}}
	for _, u := range cfg.users {
		c, err := p.start(u)
		if err != nil {
			return err
		}
		p.idle[u] = append(p.idle[u], c)
	}
	os.Remove(socket)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	if err := os.Chmod(socket, 0o666); err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go session(c, known, p)
	}
}

// session is one LMTP connection: LHLO, MAIL, RCPT, DATA, RSET, NOOP and
// QUIT, with pipelining (replies are flushed when no command is buffered).
func session(c net.Conn, known map[string]bool, p *pool) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 4<<10)
	w.WriteString("220 rawceiling LMTP\r\n")
	var rcpts []string
	for {
		if r.Buffered() == 0 && w.Flush() != nil {
			return
		}
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		// The verb, upper-cased without an allocation per command.
		var verb [4]byte
		copy(verb[:], line)
		for i, c := range verb {
			if 'a' <= c && c <= 'z' {
				verb[i] = c - 'a' + 'A'
			}
		}
		switch string(verb[:]) {
		case "LHLO":
			w.WriteString("250-rawceiling\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n")
		case "MAIL":
			rcpts = rcpts[:0]
			w.WriteString("250 2.1.0 ok\r\n")
		case "RCPT":
			at, lt := bytes.IndexByte(line, '@'), bytes.IndexByte(line, '<')
			if lt < 0 || at < lt || !known[string(line[lt+1:at])] {
				w.WriteString("550 5.1.1 no such user\r\n")
				continue
			}
			rcpts = append(rcpts, string(line[lt+1:at]))
			w.WriteString("250 2.1.5 ok\r\n")
		case "DATA":
			if len(rcpts) == 0 {
				w.WriteString("503 5.5.1 no valid recipients\r\n")
				continue
			}
			w.WriteString("354 go ahead\r\n")
			if w.Flush() != nil {
				return
			}
			spool, err := readBody(r)
			if err != nil {
				return
			}
			errs := p.deliverAll(rcpts, spool)
			for _, err := range errs {
				if err != nil {
					fmt.Fprintln(os.Stderr, "rawceiling:", err)
					w.WriteString("451 4.3.0 not delivered\r\n")
				} else {
					w.WriteString("250 2.0.0 delivered\r\n")
				}
			}
			spool.Close()
			rcpts = rcpts[:0]
		case "RSET", "NOOP":
			rcpts = rcpts[:0]
			w.WriteString("250 2.0.0 ok\r\n")
		case "QUIT":
			w.WriteString("221 2.0.0 bye\r\n")
			w.Flush()
			return
		default:
			w.WriteString("500 5.5.2 unknown command\r\n")
		}
	}
}

// readBody spools a DATA body, dot-unstuffed, into a memfd and returns it
// sealed against writing, shrinking and growing (a delivery process must
// not be able to change what the next recipient's reads), as lda's
// listener hands over a message that fits in memory.
func readBody(r *bufio.Reader) (*os.File, error) {
	fd, err := unix.MemfdCreate("rawceiling-spool", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "spool")
	bw := bufio.NewWriterSize(f, 64<<10)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			f.Close()
			return nil, err
		}
		if string(line) == ".\r\n" {
			break
		}
		if len(line) > 0 && line[0] == '.' {
			line = line[1:]
		}
		if _, err := bw.Write(line); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	seals := unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// deliverAll delivers to every recipient, at most parallel at a time (a
// single one without a goroutine to start and wake, as lda does), and
// returns the outcomes in their order.
func (p *pool) deliverAll(rcpts []string, spool *os.File) []error {
	errs := make([]error, len(rcpts))
	if len(rcpts) == 1 {
		errs[0] = p.deliver(rcpts[0], spool)
		return errs
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, parallel)
	for i, u := range rcpts {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			errs[i] = p.deliver(u, spool)
		}()
	}
	wg.Wait()
	return errs
}

// pool keeps each user's idle delivery processes; a delivery takes one or
// starts one, and gives it back.
type pool struct {
	cfg  *config
	mu   sync.Mutex
	idle map[string][]*seqpacket.Conn
}

func (p *pool) deliver(u string, spool *os.File) error {
	p.mu.Lock()
	var c *seqpacket.Conn
	if n := len(p.idle[u]); n > 0 {
		c, p.idle[u] = p.idle[u][n-1], p.idle[u][:n-1]
	}
	p.mu.Unlock()
	if c == nil {
		var err error
		if c, err = p.start(u); err != nil {
			return err
		}
	}
	if err := c.Send([]byte(u), spool); err != nil {
		c.Close()
		return err
	}
	res, f, err := c.Recv()
	if f != nil {
		f.Close()
	}
	if err != nil {
		c.Close()
		return err
	}
	p.mu.Lock()
	p.idle[u] = append(p.idle[u], c)
	p.mu.Unlock()
	if string(res) != "ok" {
		return errors.New(string(res))
	}
	return nil
}

// start runs "rawceiling -worker u" with the same mailbox flags, its end
// of a split record channel on descriptor 3.
func (p *pool) start(u string) (*seqpacket.Conn, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-dir", p.cfg.dir, "-users", u, "-worker"}
	switch {
	case p.cfg.mbox:
		args = append(args, "-mbox")
	case p.cfg.link:
		args = append(args, "-link")
	}
	mine, theirs, err := seqpacket.Pair()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = os.Stderr
	cmd.Env = []string{}
	err = spawn.StartWithSlack(spawn.DefaultTimerSlack, cmd.Start)
	theirs.Close()
	if err != nil {
		mine.Close()
		return nil, err
	}
	go cmd.Wait()
	return seqpacket.Parent(mine)
}

// worker serves one user's deliveries on descriptor 3 until the front
// closes it: each record names the user, its descriptor is the message.
func worker(cfg *config) error {
	c, err := seqpacket.New(os.NewFile(3, "front"))
	if err != nil {
		return err
	}
	if err := c.AcceptReply(); err != nil {
		return err
	}
	if err := cfg.prepare(); err != nil {
		return err
	}
	buf := make([]byte, 0, 128<<10)
	var entry []byte
	for {
		rec, f, err := c.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		answer := "ok"
		if buf, err = readAll(f, buf[:0]); err == nil {
			if string(rec) != cfg.users[0] {
				err = fmt.Errorf("a delivery for %q given to the process of %q", rec, cfg.users[0])
			} else if cfg.mbox {
				entry = appendMboxEntry(entry[:0], buf)
				err = cfg.appendMbox(cfg.users[0], entry)
			} else {
				err = cfg.deliverMaildir(cfg.users[0], buf)
			}
		}
		if f != nil {
			f.Close()
		}
		if err != nil {
			answer = err.Error()
		}
		if err := c.Send([]byte(answer), nil); err != nil {
			return err
		}
	}
}

// readAll reads the whole of f (nil: an error) with pread, into buf.
func readAll(f *os.File, buf []byte) ([]byte, error) {
	if f == nil {
		return nil, errors.New("a record without a message")
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := f.ReadAt(buf[len(buf):cap(buf)], int64(len(buf)))
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
