// Command mailcheck verifies what a load run left in the mailboxes against
// what the loader (bench/lmtpload) was told.
//
//	mailcheck -ack FILE [-ack FILE ...] [-maildir DIR ...] [-mbox FILE ...] [MAILBOX ...]
//
// Each ack file has one line per recipient: "<bench-id> <recipient> <code>
// <enhanced>", or "<bench-id> <recipient> DROPPED -" when the connection
// broke before the reply. A MAILBOX operand is a Maildir if it is a
// directory, an mbox file otherwise; one that does not exist is empty.
//
// Every message found is parsed (lda's trace headers on top, LF line ends
// in the store; mbox From_ lines removed and mboxrd quoting undone by one
// level) and its body hashed with CRLF line ends, to compare with its
// X-Bench-Sum header. The delivery is identified by X-Bench-Id and the
// Delivered-To header lda added.
//
// It fails (exit 1) if a message acknowledged 2xx is missing, if any
// message is truncated or corrupt, if one is present despite a 5xx, if a
// 2xx message is there more often than the replies explain (unless
// -allow-dup), if a Maildir's tmp/ holds anything (unless -allow-tmp), or
// if a reply is outside -codes. Copies of messages answered 4xx or
// DROPPED are allowed (a retry may duplicate, never lose) and counted.
// Exit 2 is a usage or I/O error.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var ackFiles, maildirs, mboxes list
	flag.Var(&ackFiles, "ack", "ack file written by lmtpload -ack (repeatable)")
	flag.Var(&maildirs, "maildir", "a Maildir to read (repeatable)")
	flag.Var(&mboxes, "mbox", "an mbox file to read (repeatable)")
	allowDup := flag.Bool("allow-dup", false, "report duplicates of 2xx messages without failing")
	allowTmp := flag.Bool("allow-tmp", false, "report files left in tmp/ without failing")
	codes := flag.String("codes", "", "allowed replies, comma-separated: 250, 4xx, \"452 4.3.1\" (default: any)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: mailcheck -ack FILE ... [-maildir DIR ...] [-mbox FILE ...] [MAILBOX ...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if len(ackFiles) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	for _, a := range flag.Args() {
		if fi, err := os.Stat(a); err == nil && fi.IsDir() {
			maildirs = append(maildirs, a)
		} else {
			mboxes = append(mboxes, a)
		}
	}
	rep := &Report{AllowDup: *allowDup, AllowTmp: *allowTmp}
	if *codes != "" {
		m, err := CodeMatcher(*codes)
		if err != nil {
			fatal(err)
		}
		rep.AllowedCode = m
	}
	var acks []Ack
	for _, p := range ackFiles {
		f, err := os.Open(p)
		if err != nil {
			fatal(err)
		}
		a, err := ParseAcks(f, p)
		f.Close()
		if err != nil {
			fatal(err)
		}
		acks = append(acks, a...)
	}
	var msgs []Message
	var tmp []string
	for _, d := range maildirs {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			continue
		}
		m, t, err := ReadMaildir(d)
		if err != nil {
			fatal(err)
		}
		msgs, tmp = append(msgs, m...), append(tmp, t...)
	}
	for _, p := range mboxes {
		if _, err := os.Stat(p); os.IsNotExist(err) {
			continue
		}
		m, err := ReadMbox(p)
		if err != nil {
			fatal(err)
		}
		msgs = append(msgs, m...)
	}
	Check(acks, msgs, tmp, rep)
	fmt.Printf("mailcheck: %d ack file(s), %d maildir(s), %d mbox(es)\n", len(ackFiles), len(maildirs), len(mboxes))
	rep.Print(os.Stdout)
	if v := rep.Violations(); len(v) > 0 {
		fmt.Printf("FAIL: %s\n", strings.Join(v, "; "))
		os.Exit(1)
	}
	fmt.Println("OK")
}

// CodeMatcher parses a list such as "250,4xx,552 5.2.2": a code with 'x'
// for any digit, optionally followed by the exact enhanced code.
func CodeMatcher(spec string) (func(code, enhanced string) bool, error) {
	type pat struct{ code, enh string }
	var pats []pat
	for _, item := range strings.Split(spec, ",") {
		f := strings.Fields(item)
		if len(f) == 0 || len(f) > 2 || len(f[0]) != 3 {
			return nil, fmt.Errorf("bad -codes entry %q", item)
		}
		p := pat{code: strings.ToLower(f[0])}
		if len(f) == 2 {
			p.enh = f[1]
		}
		pats = append(pats, p)
	}
	return func(code, enhanced string) bool {
		for _, p := range pats {
			if len(code) != 3 {
				return false
			}
			ok := true
			for i := 0; i < 3; i++ {
				if p.code[i] != 'x' && p.code[i] != code[i] {
					ok = false
				}
			}
			if ok && (p.enh == "" || p.enh == enhanced) {
				return true
			}
		}
		return false
	}, nil
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "mailcheck: %v\n", err)
	os.Exit(2)
}
