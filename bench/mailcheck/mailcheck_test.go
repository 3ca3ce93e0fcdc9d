package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sent builds a message as the loader sends it (CRLF, after dot-unstuffing)
// with its X-Bench-Sum over body, which is given with LF line ends.
func sent(id, body string) string {
	crlf := strings.ReplaceAll(body, "\n", "\r\n")
	sum := sha256.Sum256([]byte(crlf))
	return "From: load@bench.test\r\nSubject: " + id + "\r\nX-Bench-Id: " + id +
		"\r\nX-Bench-Sum: " + hex.EncodeToString(sum[:]) + "\r\n\r\n" + crlf
}

// stored is the message as lda stores it for rcpt: trace headers on top,
// LF line ends.
func stored(rcpt, msg string) string {
	return "Return-Path: <load@bench.test>\nDelivered-To: " + rcpt +
		"\nReceived: from bench (uid 0) by lda.test (lda) with LMTP id x for <" + rcpt + ">; now\n" +
		strings.ReplaceAll(msg, "\r\n", "\n")
}

// mboxrd quotes a stored message and appends it as lda's mbox writer does.
func mboxrd(msg string) string {
	lines := strings.SplitAfter(msg, "\n")
	var b strings.Builder
	b.WriteString("From load@bench.test Sat Dec  5 21:00:00 2026\n")
	for _, l := range lines {
		t := strings.TrimLeft(l, ">")
		if strings.HasPrefix(t, "From ") {
			b.WriteByte('>')
		}
		b.WriteString(l)
	}
	return b.String() + "\n"
}

func TestToCRLF(t *testing.T) {
	for in, want := range map[string]string{
		"":           "",
		"a\nb\n":     "a\r\nb\r\n",
		"a\r\nb\n":   "a\r\nb\r\n",
		"\n\n":       "\r\n\r\n",
		"a\rb":       "a\rb",
		"x\r\n\r\ny": "x\r\n\r\ny",
	} {
		t.Run(fmt.Sprintf("%q", in), func(t *testing.T) {
			if got := string(ToCRLF([]byte(in))); got != want {
				t.Errorf("ToCRLF(%q) = %q, want %q", in, got, want)
			}
		})
	}
}

func TestParseMessage(t *testing.T) {
	for _, tc := range []struct {
		name, body string
	}{
		{"plain", "hello\nworld\n"},
		{"body starts with an empty line", "\nafter a blank line\n"},
		{"trailing empty lines", "x\n\n\n"},
		{"empty body", ""},
		{"dot lines", ".\n..x\n.\n"},
		{"header-like body", "Subject: not a header\n\nX-Bench-Sum: 00\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := ParseMessage([]byte(stored("u1@bench.test", sent("r-1", tc.body))))
			if !m.Intact() || m.ID != "r-1" || m.Rcpt != "u1@bench.test" {
				t.Fatalf("%+v", m)
			}
			// The same message as sent on the wire (CRLF) parses the same.
			if m2 := ParseMessage([]byte(sent("r-1", tc.body))); !m2.Intact() {
				t.Fatalf("CRLF form: %+v", m2)
			}
		})
	}
	full := stored("u1@bench.test", sent("r-2", "line one\nline two\n"))
	for _, cut := range []int{1, 2, 5} {
		t.Run(fmt.Sprintf("cut by %d bytes", cut), func(t *testing.T) {
			if m := ParseMessage([]byte(full[:len(full)-cut])); m.Intact() {
				t.Errorf("message cut by %d bytes passes as intact", cut)
			}
		})
	}
	if m := ParseMessage([]byte(full + "\n")); m.Intact() {
		t.Error("a message with an extra line passes as intact")
	}
	if m := ParseMessage([]byte("Return-Path: <>\nDelivered-To: x\nX-Bench-Id: r-3\n")); m.Bad == "" || m.Intact() {
		t.Errorf("header without end passes: %+v", m)
	}
	// The top-most Delivered-To is lda's, whatever the message carries.
	m := ParseMessage([]byte("Delivered-To: Top@Bench.test\n" + stored("other@x", sent("r-4", "b\n"))))
	if m.Rcpt != "top@bench.test" {
		t.Errorf("Rcpt = %q", m.Rcpt)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMboxQuotingAndTruncation(t *testing.T) {
	dir := t.TempDir()
	tricky := "From the start of a line\n>From already quoted\n>>From twice\nFrom\n From indented\n"
	m1 := stored("u1@bench.test", sent("q-1", tricky))
	m2 := stored("u1@bench.test", sent("q-2", "second\n"))
	box := mboxrd(m1) + mboxrd(m2)
	if !strings.Contains(box, "\n>From the start") || !strings.Contains(box, "\n>>From already") || !strings.Contains(box, "\n>>>From twice") {
		t.Fatalf("test mbox not quoted as mboxrd:\n%s", box)
	}
	p := filepath.Join(dir, "good")
	writeFile(t, p, box)
	msgs, err := ReadMbox(p)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%d messages, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if !m.Intact() {
			t.Fatalf("%s not intact: %+v", m.Where, m)
		}
	}

	// Unquoting two levels (or none) would break the sum.
	if m := ParseMessage([]byte(strings.ReplaceAll(m1, ">From already", "From already"))); m.Intact() {
		t.Fatal("over-unquoted body passes")
	}

	// A partial append at the end of the file: no final empty line.
	m3 := mboxrd(stored("u1@bench.test", sent("q-3", "third message body\nsecond line\n")))
	p = filepath.Join(dir, "partial")
	writeFile(t, p, box+m3[:len(m3)-15])
	msgs, _ = ReadMbox(p)
	if len(msgs) != 3 || !msgs[0].Intact() || !msgs[1].Intact() || msgs[2].Intact() || msgs[2].Bad == "" {
		t.Fatalf("partial append not flagged: %+v", msgs)
	}

	// A message truncated in the middle of the file, separator intact.
	cut := mboxrd(stored("u1@bench.test", sent("q-4", "long line that gets cut\nmore\n")))
	cut = cut[:len(cut)-8] + "\n\n"
	p = filepath.Join(dir, "middle")
	writeFile(t, p, mboxrd(m2)+cut+mboxrd(m1))
	msgs, _ = ReadMbox(p)
	if len(msgs) != 3 || msgs[1].Intact() || msgs[1].ID != "q-4" || !msgs[0].Intact() || !msgs[2].Intact() {
		t.Fatalf("truncated middle message not flagged: %+v", msgs)
	}

	// The final newline the mbox adds is the separator, not the body's.
	p = filepath.Join(dir, "noseparator")
	writeFile(t, p, strings.TrimSuffix(mboxrd(m2), "\n"))
	msgs, _ = ReadMbox(p)
	if len(msgs) != 1 || msgs[0].Bad == "" {
		t.Fatalf("mbox without its final empty line passes: %+v", msgs)
	}
}

func TestMaildir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	writeFile(t, filepath.Join(dir, "new", "1.a"), stored("u2@bench.test", sent("d-1", "one\n")))
	writeFile(t, filepath.Join(dir, "cur", "2.b:2,S"), stored("u2@bench.test", sent("d-2", "two\n")))
	full := stored("u2@bench.test", sent("d-3", "three, which is cut\n"))
	writeFile(t, filepath.Join(dir, "new", "3.c"), full[:len(full)-4])
	writeFile(t, filepath.Join(dir, "tmp", "4.d"), "partial")
	msgs, tmp, err := ReadMaildir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || len(tmp) != 1 {
		t.Fatalf("%d messages, tmp %v", len(msgs), tmp)
	}
	intact := 0
	for _, m := range msgs {
		if m.Intact() {
			intact++
		} else if m.ID != "d-3" {
			t.Errorf("%s not intact", m.Where)
		}
	}
	if intact != 2 {
		t.Fatalf("%d intact, want 2", intact)
	}
	acks := []Ack{
		{"d-1", "u2@bench.test", "250", "2.0.0"},
		{"d-2", "u2@bench.test", "250", "2.0.0"},
		{"d-3", "u2@bench.test", "250", "2.0.0"},
	}
	rep := &Report{}
	Check(acks, msgs, tmp, rep)
	if rep.Corrupt != 1 || rep.Missing != 1 || rep.TmpFiles != 1 || len(rep.Violations()) != 3 {
		t.Fatalf("report %+v, violations %v", rep, rep.Violations())
	}
}

func TestCheck(t *testing.T) {
	msg := func(id, rcpt string) Message {
		return ParseMessage([]byte(stored(rcpt, sent(id, "body of "+id+"\n"))))
	}
	a := func(id, rcpt, code, enh string) Ack { return Ack{id, rcpt, code, enh} }
	for _, tc := range []struct {
		name  string
		acks  []Ack
		msgs  []Message
		check func(r *Report) bool
		fail  bool
	}{
		{"all delivered", []Ack{a("x-1", "u1@b", "250", "2.0.0"), a("x-1", "u2@b", "250", "2.0.0")},
			[]Message{msg("x-1", "u1@b"), msg("x-1", "u2@b")},
			func(r *Report) bool { return r.Delivered == 2 }, false},
		{"missing", []Ack{a("x-1", "u1@b", "250", "2.0.0"), a("x-1", "u2@b", "250", "2.0.0")},
			[]Message{msg("x-1", "u1@b")},
			func(r *Report) bool { return r.Missing == 1 }, true},
		{"delivered to the wrong recipient", []Ack{a("x-1", "u1@b", "250", "2.0.0")},
			[]Message{msg("x-1", "u2@b")},
			func(r *Report) bool { return r.Missing == 1 && r.Unknown == 1 }, true},
		{"duplicate of a 2xx", []Ack{a("x-1", "u1@b", "250", "2.0.0")},
			[]Message{msg("x-1", "u1@b"), msg("x-1", "u1@b")},
			func(r *Report) bool { return r.DupAcked == 1 }, true},
		{"same recipient twice, one 4xx", []Ack{a("x-1", "u1@b", "250", "2.0.0"), a("x-1", "u1@b", "451", "4.3.0")},
			[]Message{msg("x-1", "u1@b"), msg("x-1", "u1@b")},
			func(r *Report) bool { return r.ExtraTemp == 1 }, false},
		{"present after 4xx", []Ack{a("x-1", "u1@b", "451", "4.4.7")},
			[]Message{msg("x-1", "u1@b")},
			func(r *Report) bool { return r.ExtraTemp == 1 }, false},
		{"present after DROPPED", []Ack{a("x-1", "u1@b", "DROPPED", "-")},
			[]Message{msg("x-1", "u1@b")},
			func(r *Report) bool { return r.ExtraTemp == 1 }, false},
		{"absent after 4xx and 5xx", []Ack{a("x-1", "u1@b", "452", "4.3.1"), a("x-2", "u1@b", "552", "5.2.2")},
			nil, func(r *Report) bool { return r.Codes["452 4.3.1"] == 1 && r.Codes["552 5.2.2"] == 1 }, false},
		{"present despite 5xx", []Ack{a("x-1", "u1@b", "552", "5.2.2")},
			[]Message{msg("x-1", "u1@b")},
			func(r *Report) bool { return r.Despite5xx == 1 }, true},
		{"never acked", nil, []Message{msg("x-9", "u1@b")},
			func(r *Report) bool { return r.Unknown == 1 }, true},
		{"foreign message", nil, []Message{ParseMessage([]byte("Subject: hi\n\nno bench headers\n"))},
			func(r *Report) bool { return r.NoBenchID == 1 }, true},
		{"no Delivered-To, one recipient", []Ack{a("x-1", "u1@b", "250", "2.0.0")},
			[]Message{ParseMessage([]byte(sent("x-1", "body of x-1\n")))},
			func(r *Report) bool { return r.Delivered == 1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{}
			Check(tc.acks, tc.msgs, nil, r)
			if !tc.check(r) || (len(r.Violations()) > 0) != tc.fail {
				t.Fatalf("report %+v, violations %v", r, r.Violations())
			}
		})
	}
}

func TestParseAcksAndCodes(t *testing.T) {
	acks, err := ParseAcks(strings.NewReader("p-1 U1@Bench.test 250 2.0.0\np-2 u2@bench.test DROPPED -\n\np-3 u3@bench.test 452 4.3.1\n"), "acks")
	if err != nil || len(acks) != 3 || acks[0].Rcpt != "u1@bench.test" || acks[1].Class() != 0 || acks[2].Class() != 4 {
		t.Fatalf("%+v %v", acks, err)
	}
	for _, bad := range []string{"p-1 u 250\n", "p-1 u 2x0 2.0.0\n", "p-1 u OK 2.0.0\n"} {
		t.Run(fmt.Sprintf("bad ack %q", bad), func(t *testing.T) {
			if _, err := ParseAcks(strings.NewReader(bad), "acks"); err == nil {
				t.Errorf("ParseAcks(%q) accepted", bad)
			}
		})
	}
	m, err := CodeMatcher("250, 4xx,552 5.2.2")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		code, enh string
		ok        bool
	}{{"250", "2.0.0", true}, {"451", "4.4.7", true}, {"552", "5.2.2", true}, {"552", "5.3.4", false}, {"550", "5.1.1", false}} {
		t.Run("code "+tc.code+" "+tc.enh, func(t *testing.T) {
			if m(tc.code, tc.enh) != tc.ok {
				t.Errorf("%s %s: %v", tc.code, tc.enh, !tc.ok)
			}
		})
	}
	r := &Report{AllowedCode: m}
	Check([]Ack{{"x", "u", "554", "5.6.0"}}, nil, nil, r)
	if r.BadCodes != 1 || len(r.Violations()) != 1 {
		t.Fatalf("%+v", r)
	}
}
