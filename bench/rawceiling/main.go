// Command rawceiling measures the raw file-system ceiling for mail
// delivery at the durability lda promises, with nothing else in the way:
// no protocol, no process, no policy, no locking.
//
// Maildir (the default), per delivery: create a unique file in tmp/
// (O_EXCL, 0600), write the message, fsync the file, rename it (or, with
// -link, link and unlink it) into new/, fsync new/.
//
// -tmpfile measures the alternative lda does not use: an unnamed
// O_TMPFILE file in tmp/, written and fsync'ed, linked into new/ through
// /proc/self/fd, fsync'ed again (the link count went from 0 to 1, and
// fsync of new/ alone writes only the directory on a file system without
// a journal), then new/ fsync'ed. -tmpfile-unsafe leaves out the second
// fsync of the file: it is there to show what that fsync costs, and is
// not durable everywhere.
//
// mbox (-mbox), per delivery: open the mbox with O_APPEND (creating it),
// write the From_ line and the message (mboxrd-quoted, LF line ends) in
// one write, fsync, close.
//
//	rawceiling -dir BASE -users u1,u2 [-mbox | -link | -tmpfile | -tmpfile-unsafe] [-c N] [-n N]
//	           [-size BYTES] [-rcpts N] [-id PREFIX] [-json]
//	rawceiling -serve SOCKET -dir BASE -users u1,u2 [-mbox | -link]
//
// -serve puts the same file operations behind the least a delivery agent
// of lda's shape has to do around them, and nothing more: it answers LMTP
// on SOCKET (driven by lmtpload like any other agent), spools each
// message, dot-unstuffed, into a memfd, seals it against changes and hands
// that descriptor over a split SOCK_SEQPACKET channel (lda's own package
// seqpacket) to a warm process of the recipient's own ("rawceiling
// -worker"), which writes the message exactly as above and answers; then
// the front replies. The processes get lda's timer slacks (1 ms for the
// front, 10 ms for the others). There is no policy, no user database, no
// log, no recovery record, no header, no lock, no check of any kind and
// no change of user: every process runs as the caller. What it measures
// is the floor of that shape on this machine: the rate an implementation
// of it in Go, which does more per delivery, is not expected to beat with
// these file operations.
//
// User u's Maildir is BASE/u/Maildir, its mbox BASE/u.mbox. With -rcpts
// N each message is written N times, into the mailboxes of N users
// chosen round-robin exactly as lmtpload chooses its recipients. The
// report has lmtpload's format.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"lda/bench/lmtpload/lmtpbench"
)

type config struct {
	dir      string
	users    []string
	conns    int
	messages int
	size     int
	rcpts    int
	mbox     bool
	link     bool
	tmpfile  int // 0: no; 1: -tmpfile; 2: -tmpfile-unsafe
	prefix   string

	newDirs map[string]*os.File // Maildir mode: each user's new/, kept open
	seq     atomic.Int64
	pid     int
}

func main() {
	var cfg config
	var users string
	var asJSON bool
	flag.StringVar(&cfg.dir, "dir", "", "base directory of the mailboxes (required)")
	flag.StringVar(&users, "users", "", "comma-separated users, taken round-robin (required)")
	flag.IntVar(&cfg.conns, "c", 1, "concurrent writers (goroutines)")
	flag.IntVar(&cfg.messages, "n", 2000, "total messages")
	flag.IntVar(&cfg.size, "size", 1024, "message size in bytes")
	flag.IntVar(&cfg.rcpts, "rcpts", 1, "mailboxes each message is written to")
	flag.BoolVar(&cfg.mbox, "mbox", false, "append to mbox files instead of Maildir delivery")
	flag.BoolVar(&cfg.link, "link", false, "Maildir: link+unlink instead of rename")
	tmpfile := flag.Bool("tmpfile", false, "Maildir: O_TMPFILE, fsync, link into new/, fsync the file again, fsync new/")
	unsafe := flag.Bool("tmpfile-unsafe", false, "Maildir: as -tmpfile without the second fsync of the file (not durable everywhere)")
	flag.StringVar(&cfg.prefix, "id", "", "run id (default from the time)")
	flag.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	socket := flag.String("serve", "", "answer LMTP on this Unix socket instead, handing each delivery to a process of the recipient's own (see the package comment)")
	asWorker := flag.Bool("worker", false, "internal: the delivery process of -serve, for the one user of -users")
	flag.Parse()
	if flag.NArg() > 0 {
		usage("unexpected arguments: %q", flag.Args())
	}
	if cfg.dir == "" || !filepath.IsAbs(cfg.dir) {
		usage("-dir is required and must be absolute")
	}
	for _, u := range strings.Split(users, ",") {
		if u = strings.TrimSpace(u); u != "" {
			if strings.ContainsAny(u, "/") || u == "." || u == ".." {
				usage("bad user name %q", u)
			}
			cfg.users = append(cfg.users, u)
		}
	}
	if len(cfg.users) == 0 {
		usage("-users is required")
	}
	if cfg.conns < 1 || cfg.messages < 0 || cfg.rcpts < 1 || cfg.size < 0 {
		usage("-c and -rcpts must be at least 1, -n and -size not negative")
	}
	switch {
	case *tmpfile && *unsafe:
		usage("-tmpfile and -tmpfile-unsafe exclude each other")
	case (*tmpfile || *unsafe) && (cfg.mbox || cfg.link):
		usage("-tmpfile and -tmpfile-unsafe are Maildir modes without -link")
	case *tmpfile:
		cfg.tmpfile = 1
	case *unsafe:
		cfg.tmpfile = 2
	}
	if cfg.prefix == "" {
		cfg.prefix = "rawceiling" + time.Now().UTC().Format("20060102T150405")
	}
	cfg.pid = os.Getpid()
	switch {
	case *asWorker:
		if len(cfg.users) != 1 {
			usage("-worker takes one user")
		}
		if err := worker(&cfg); err != nil {
			fmt.Fprintln(os.Stderr, "rawceiling -worker:", err)
			os.Exit(1)
		}
		return
	case *socket != "":
		if cfg.tmpfile > 0 {
			usage("-serve takes -mbox or -link, not -tmpfile")
		}
		err := withSlack()
		if err == nil {
			err = cfg.prepare()
		}
		if err == nil {
			err = serve(&cfg, *socket)
		}
		fmt.Fprintln(os.Stderr, "rawceiling -serve:", err)
		os.Exit(1)
	}
	if err := cfg.prepare(); err != nil {
		fmt.Fprintln(os.Stderr, "rawceiling:", err)
		os.Exit(1)
	}
	res, err := run(&cfg)
	for _, d := range cfg.newDirs {
		d.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rawceiling:", err)
		os.Exit(1)
	}
	if err := res.Write(os.Stdout, asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "rawceiling:", err)
		os.Exit(1)
	}
}

func usage(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "rawceiling: "+format+"\n", args...)
	flag.Usage()
	os.Exit(2)
}

// prepare creates the mailbox directories, outside the timing.
func (cfg *config) prepare() error {
	if cfg.mbox {
		return os.MkdirAll(cfg.dir, 0o755)
	}
	cfg.newDirs = map[string]*os.File{}
	for _, u := range cfg.users {
		md := filepath.Join(cfg.dir, u, "Maildir")
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
				return err
			}
		}
		d, err := os.Open(filepath.Join(md, "new"))
		if err != nil {
			return err
		}
		cfg.newDirs[u] = d
	}
	return nil
}

// message is one message of the run, ready to be written.
type message struct {
	users []string
	data  []byte // as written: for mbox, with its From_ line and quoting
}

// message generates message k of the run.
func (cfg *config) message(k int) message {
	users := lmtpbench.Recipients(cfg.users, k, cfg.rcpts)
	addrs := make([]string, len(users))
	for j, u := range users {
		addrs[j] = u + "@" + lmtpbench.Domain
	}
	data := lmtpbench.NewMessage(cfg.prefix, k, cfg.size, addrs).Data
	if cfg.mbox {
		data = mboxEntry(data)
	}
	return message{users, data}
}

func run(cfg *config) (*lmtpbench.Result, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	type tally struct {
		ok  int
		lat []time.Duration
		err error
	}
	tallies := make([]tally, cfg.conns)
	cpu0 := lmtpbench.ProcessCPU()
	start := time.Now()
	for i := range cfg.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := &tallies[i]
			feed := lmtpbench.NewFeed(&next, cfg.messages, cfg.message)
			defer feed.Stop()
			for {
				_, m, ok := feed.Next()
				if !ok {
					return
				}
				t0 := time.Now()
				for _, u := range m.users {
					var err error
					if cfg.mbox {
						err = cfg.appendMbox(u, m.data)
					} else {
						err = cfg.deliverMaildir(u, m.data)
					}
					if err != nil {
						t.err = err
						return
					}
					t.ok++
				}
				t.lat = append(t.lat, time.Since(t0))
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	mode := "maildir-rename"
	if cfg.link {
		mode = "maildir-link"
	}
	if cfg.tmpfile > 0 {
		mode = [...]string{"", "maildir-tmpfile", "maildir-tmpfile-unsafe"}[cfg.tmpfile]
	}
	if cfg.mbox {
		mode = "mbox"
	}
	res := &lmtpbench.Result{
		Tool: "rawceiling", ID: cfg.prefix, Mode: mode,
		Conns: cfg.conns, Messages: cfg.messages, Size: cfg.size, Rcpts: cfg.rcpts,
	}
	var lat []time.Duration
	for _, t := range tallies {
		if t.err != nil {
			return nil, t.err
		}
		res.OK += t.ok
		lat = append(lat, t.lat...)
	}
	res.MessagesDone = len(lat)
	res.Finish(wall, lat)
	res.SetCPU(cpu0)
	return res, nil
}

// deliverMaildir writes data into u's Maildir at full durability.
func (cfg *config) deliverMaildir(u string, data []byte) error {
	now := time.Now()
	name := fmt.Sprintf("%d.M%dP%dQ%d.rawceiling", now.Unix(), now.Nanosecond()/1000, cfg.pid, cfg.seq.Add(1))
	md := filepath.Join(cfg.dir, u, "Maildir")
	if cfg.tmpfile > 0 {
		return cfg.deliverTmpfile(u, md, name, data)
	}
	tmp := filepath.Join(md, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	dst := filepath.Join(md, "new", name)
	if cfg.link {
		if err := os.Link(tmp, dst); err != nil {
			return err
		}
		if err := os.Remove(tmp); err != nil {
			return err
		}
	} else if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return cfg.newDirs[u].Sync()
}

// deliverTmpfile is deliverMaildir with an unnamed O_TMPFILE file instead
// of a name in tmp/ (see -tmpfile in the package comment).
func (cfg *config) deliverTmpfile(u, md, name string, data []byte) error {
	f, err := os.OpenFile(filepath.Join(md, "tmp"), os.O_WRONLY|unix.O_TMPFILE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	// Linking a descriptor by name needs no privilege; AT_EMPTY_PATH would.
	proc := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, filepath.Join(md, "new", name), unix.AT_SYMLINK_FOLLOW); err != nil {
		return err
	}
	if cfg.tmpfile == 1 {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return cfg.newDirs[u].Sync()
}

// appendMbox appends entry to u's mbox at full durability.
func (cfg *config) appendMbox(u string, entry []byte) error {
	f, err := os.OpenFile(filepath.Join(cfg.dir, u+".mbox"), os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(entry); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mboxEntry turns a CRLF message into an mbox entry: From_ line, LF line
// ends, mboxrd quoting (">" before every line matching ^>*From ), and an
// empty line at the end.
func mboxEntry(data []byte) []byte { return appendMboxEntry(nil, data) }

// appendMboxEntry appends data's mbox entry to dst in one pass (the
// delivery processes of -serve reuse one buffer).
func appendMboxEntry(dst, data []byte) []byte {
	dst = append(dst, "From "+lmtpbench.Sender+" "...)
	dst = time.Now().UTC().AppendFormat(dst, "Mon Jan _2 15:04:05 2006")
	dst = append(dst, '\n')
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		if bytes.HasPrefix(bytes.TrimLeft(line, ">"), []byte("From ")) {
			dst = append(dst, '>')
		}
		if n := len(line); n >= 2 && line[n-2] == '\r' && line[n-1] == '\n' {
			dst = append(append(dst, line[:n-2]...), '\n')
		} else {
			dst = append(dst, line...)
		}
	}
	return append(dst, '\n')
}
