package daemon

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"lda/policy"
)

func TestReadPolicyRequest(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
		n        int
	}{
		{"normal", "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a@b\n\n", true, 3},
		{"crlf", "request=smtpd_access_policy\r\nrecipient=a@b\r\n\r\n", true, 2},
		{"value with =", "sender=a=b@c\n\n", true, 1},
		{"no equals", "garbage\n\n", false, 0},
		{"empty name", "=x\n\n", false, 0},
		{"truncated", "request=smtpd_access_policy\n", false, 0},
		{"line too long", "x=" + strings.Repeat("a", maxPolicyLine) + "\n\n", false, 0},
		{"too many", strings.Repeat("a=b\n", maxPolicyAttrs+1) + "\n", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attrs, err := readPolicyRequest(bufio.NewReaderSize(strings.NewReader(tc.in), maxPolicyLine))
			if (err == nil) != tc.ok || (tc.ok && len(attrs) != tc.n) {
				t.Fatalf("got %v, %v", attrs, err)
			}
		})
	}
	if _, err := readPolicyRequest(bufio.NewReader(strings.NewReader(""))); err != io.EOF {
		t.Fatalf("empty input: %v, want EOF", err)
	}
}

func TestPolicyAction(t *testing.T) {
	l := &Listener{
		cfg: &Config{UserDB: "passwd", Delimiter: "+", RcptSieve: true, Limits: Limits{IdleTimeout: time.Second}},
		sys: policy.Default(),
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	rcpt := func(addr string) map[string]string {
		return map[string]string{"request": "smtpd_access_policy", "protocol_state": "RCPT", "recipient": addr, "sender": "s@x"}
	}
	for _, tc := range []struct {
		name  string
		attrs map[string]string
		want  string
	}{
		{"unknown user", rcpt("no-such-user-pp+tag@example.org"), "REJECT 5.1.1 no such user"},
		{"root is left to the MTA", rcpt("root@example.org"), "DUNNO"},
		{"not RCPT", map[string]string{"request": "smtpd_access_policy", "protocol_state": "DATA", "recipient": "no-such-user-pp@x"}, "DUNNO"},
		{"other request", map[string]string{"request": "junk", "protocol_state": "RCPT", "recipient": "no-such-user-pp@x"}, "DUNNO"},
		{"no recipient", map[string]string{"request": "smtpd_access_policy", "protocol_state": "RCPT"}, "DUNNO"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := l.policyAction(tc.attrs, "t"); got != tc.want {
				t.Fatalf("policyAction = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("wire", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		go l.servePolicy(b, "w")
		a.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(a, "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=no-such-user-pp@x\nsender=s@x\n\n")
		r := bufio.NewReader(a)
		line, _ := r.ReadString('\n')
		blank, _ := r.ReadString('\n')
		if line != "action=REJECT 5.1.1 no such user\n" || blank != "\n" {
			t.Fatalf("reply %q %q", line, blank)
		}
	})
}
