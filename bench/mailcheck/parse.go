package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Message is one message found in a mailbox.
type Message struct {
	Where    string // mailbox path and position, for reports
	ID       string // X-Bench-Id, "" if absent
	Sum      string // X-Bench-Sum, lower-case hex, "" if absent
	Rcpt     string // the first (top-most) Delivered-To, lower-cased
	Computed string // sha256 hex of the body, CRLF line ends
	Bad      string // why the message is structurally broken, "" if it is not
}

// Intact reports whether the body's sum is the one the sender announced.
func (m *Message) Intact() bool {
	return m.Bad == "" && m.Sum != "" && m.Sum == m.Computed
}

// ToCRLF normalises line ends: every LF that is not already preceded by a
// CR becomes CR LF. A lone CR is left as it is.
func ToCRLF(b []byte) []byte {
	n := bytes.Count(b, []byte{'\n'})
	out := make([]byte, 0, len(b)+n)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// ParseMessage reads the bench headers of one stored message (as a mailbox
// holds it: lda's trace headers on top, LF or CRLF line ends) and hashes
// its body. The body is everything after the first empty line, with line
// ends made CRLF: exactly what the loader hashed before dot-stuffing, since
// LMTP's final CRLF before "." belongs to the message (RFC 5321 4.1.1.4).
func ParseMessage(raw []byte) Message {
	var m Message
	b := ToCRLF(raw)
	var hdr, body []byte
	switch {
	case bytes.HasPrefix(b, []byte("\r\n")):
		hdr, body = nil, b[2:]
	default:
		i := bytes.Index(b, []byte("\r\n\r\n"))
		if i < 0 {
			m.Bad = "no end of header"
			hdr, body = b, nil
		} else {
			hdr, body = b[:i+2], b[i+4:]
		}
	}
	sum := sha256.Sum256(body)
	m.Computed = hex.EncodeToString(sum[:])
	for _, f := range headerFields(hdr) {
		name, value, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "x-bench-id":
			if m.ID == "" {
				m.ID = value
			}
		case "x-bench-sum":
			if m.Sum == "" {
				m.Sum = strings.ToLower(value)
			}
		case "delivered-to":
			if m.Rcpt == "" {
				m.Rcpt = strings.ToLower(value)
			}
		}
	}
	return m
}

// headerFields splits a CRLF header block into unfolded fields.
func headerFields(hdr []byte) []string {
	var fields []string
	for _, line := range strings.Split(string(hdr), "\r\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] += " " + strings.TrimSpace(line)
			continue
		}
		fields = append(fields, line)
	}
	return fields
}

// unquoteMboxrd removes one '>' from a line of the form ">>*From ".
func unquoteMboxrd(line []byte) []byte {
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	if i > 0 && bytes.HasPrefix(line[i:], []byte("From ")) {
		return line[1:]
	}
	return line
}

// SplitMbox reads an mboxrd file and calls fn with each message as it was
// delivered: From_ line removed, quoting undone by one level, and the empty
// separator line the mbox adds after each message removed. A message that
// does not end with LF followed by that empty line (a partial append, a
// missing separator) is passed with a non-empty reason. Text before the
// first From_ line is reported the same way.
func SplitMbox(r io.Reader, fn func(msg []byte, bad string)) error {
	br := bufio.NewReaderSize(r, 1<<16)
	var cur []byte
	started := false
	flush := func(last bool) {
		if !started {
			if len(cur) > 0 {
				fn(cur, "data before the first From_ line")
			}
			return
		}
		bad := ""
		switch {
		case bytes.HasSuffix(cur, []byte("\n\n")):
			cur = cur[:len(cur)-1]
		case last:
			bad = "mbox ends inside a message (no final empty line)"
		default:
			bad = "message not followed by an empty line"
		}
		fn(cur, bad)
	}
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if bytes.HasPrefix(line, []byte("From ")) {
				flush(false)
				cur, started = nil, true
			} else {
				cur = append(cur, unquoteMboxrd(line)...)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if started || len(cur) > 0 {
		flush(true)
	}
	return nil
}

// ReadMbox parses every message of the mbox at path.
func ReadMbox(path string) ([]Message, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var msgs []Message
	n := 0
	err = SplitMbox(f, func(raw []byte, bad string) {
		n++
		m := ParseMessage(raw)
		if bad != "" {
			m.Bad = bad
		}
		m.Where = fmt.Sprintf("%s#%d", path, n)
		msgs = append(msgs, m)
	})
	return msgs, err
}

// ReadMaildir parses every message in dir's new/ and cur/, and lists what
// was left in tmp/.
func ReadMaildir(dir string) (msgs []Message, tmp []string, err error) {
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return nil, nil, err
		}
		for _, e := range ents {
			p := filepath.Join(dir, sub, e.Name())
			if !e.Type().IsRegular() {
				msgs = append(msgs, Message{Where: p, Bad: "not a regular file"})
				continue
			}
			raw, err := os.ReadFile(p)
			if err != nil {
				return nil, nil, err
			}
			m := ParseMessage(raw)
			m.Where = p
			msgs = append(msgs, m)
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, err
	}
	for _, e := range ents {
		tmp = append(tmp, filepath.Join(dir, "tmp", e.Name()))
	}
	sort.Strings(tmp)
	return msgs, tmp, nil
}

// Ack is one recipient's outcome as the loader saw it.
type Ack struct {
	ID, Rcpt string
	Code     string // "250", "452", ... or "DROPPED"
	Enhanced string // "2.0.0", ... or "-"
}

// Class is 2, 4 or 5 for a reply code, 0 for DROPPED or anything else.
func (a Ack) Class() int {
	c := a.Code
	if len(c) == 3 && c[0] >= '2' && c[0] <= '5' && c[1] >= '0' && c[1] <= '9' && c[2] >= '0' && c[2] <= '9' {
		return int(c[0] - '0')
	}
	return 0
}

// ParseAcks reads an ack file: one "<bench-id> <recipient> <code>
// <enhanced>" line per recipient.
func ParseAcks(r io.Reader, name string) ([]Ack, error) {
	var acks []Ack
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, fmt.Errorf("%s:%d: want 4 fields, got %q", name, n, line)
		}
		a := Ack{ID: f[0], Rcpt: strings.ToLower(f[1]), Code: f[2], Enhanced: f[3]}
		if a.Code != "DROPPED" && a.Class() == 0 {
			return nil, fmt.Errorf("%s:%d: bad reply code %q", name, n, a.Code)
		}
		acks = append(acks, a)
	}
	return acks, sc.Err()
}
