package sieve

import (
	"context"
	"strings"
	"testing"
)

// allExt requires every supported extension.
const allExt = `require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "ereject", "copy", "encoded-character", "environment", "comparator-i;ascii-numeric"];` + "\n"

const testMessage = "Return-Path: <sender@example.org>\r\n" +
	"Received: from a by b; Mon, 1 Jan 2024 00:00:01 +0000\r\n" +
	"Received: from c by a; Mon, 1 Jan 2024 00:00:00 +0000\r\n" +
	"From: Alice <alice@example.net>\r\n" +
	"To: user+golang@example.com\r\n" +
	"Subject: Meeting\r\n tomorrow\r\n" +
	"X-Spam-Flag: NO\r\n" +
	"\r\n" +
	"Hello, see you tomorrow.\r\n"

var testEnv = Envelope{From: "sender@example.org", To: "user+lists@example.com", User: "user", Detail: "lists"}

func mustLoad(t testing.TB, name, src string) *Script {
	t.Helper()
	s, err := Load(strings.NewReader(src), name, Limits{})
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	return s
}

func mustParse(t testing.TB, raw string) *Message {
	t.Helper()
	m, err := ParseMessage(strings.NewReader(raw), int64(len(raw)), Limits{})
	if err != nil {
		t.Fatalf("ParseMessage: %v", err)
	}
	return m
}

// actionsString formats actions for comparison in tests.
func actionsString(acts []Action) string {
	s := make([]string, len(acts))
	for i, a := range acts {
		s[i] = a.String()
	}
	return strings.Join(s, "; ")
}

func runOne(t testing.TB, src string, env Envelope, raw string, lim Limits) (Outcome, error) {
	t.Helper()
	s, err := Load(strings.NewReader(src), "test", lim)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	m, err := ParseMessage(strings.NewReader(raw), int64(len(raw)), lim)
	if err != nil {
		t.Fatalf("ParseMessage: %v", err)
	}
	return Run(context.Background(), []*Script{s}, env, m, lim)
}
