package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"lda/internal/job"
	"lda/internal/status"
	"lda/internal/userdb"
)

// The Postfix policy delegation service (SMTPD_POLICY_README): Postfix's
// smtpd, or Exim through an ACL, sends name=value lines ending in an empty
// line and reads back one "action=..." line and an empty line. For the RCPT
// stage lda answers, for the recipient and as the recipient:
//
//	unknown user                        -> action=REJECT 5.1.1 ...
//	Sieve reject decided by the envelope -> action=REJECT 5.7.1 <reason>
//	anything else                       -> action=DUNNO
//
// The service never accepts on its own (no OK): it only refuses what lda
// would refuse anyway, earlier.

const (
	maxPolicyLine  = 4096
	maxPolicyAttrs = 128
)

// servePolicy answers policy requests on one connection until EOF.
func (l *Listener) servePolicy(c net.Conn, sid string) {
	r := bufio.NewReaderSize(c, maxPolicyLine)
	for {
		c.SetDeadline(time.Now().Add(l.cfg.Limits.IdleTimeout))
		attrs, err := readPolicyRequest(r)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				l.log.Warn("policy request", "session", sid, "error", err.Error())
				fmt.Fprintf(c, "action=DEFER_IF_PERMIT 4.3.0 malformed policy request\n\n")
			}
			return
		}
		action := l.policyAction(attrs, sid)
		if _, err := fmt.Fprintf(c, "action=%s\n\n", action); err != nil {
			return
		}
	}
}

// readPolicyRequest reads one request: name=value lines up to an empty
// line, bounded in line length and count.
func readPolicyRequest(r *bufio.Reader) (map[string]string, error) {
	attrs := map[string]string{}
	for n := 0; ; n++ {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, errors.New("attribute line too long")
		}
		if err != nil {
			if err == io.EOF && n == 0 && len(line) == 0 {
				return nil, io.EOF
			}
			return nil, fmt.Errorf("truncated request: %w", err)
		}
		s := strings.TrimRight(string(line), "\r\n")
		if s == "" {
			if n == 0 {
				continue // stray empty line
			}
			return attrs, nil
		}
		if n >= maxPolicyAttrs {
			return nil, errors.New("too many attributes")
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("malformed attribute line")
		}
		attrs[k] = v
	}
}

func (l *Listener) policyAction(a map[string]string, sid string) string {
	if a["request"] != "smtpd_access_policy" {
		return "DUNNO"
	}
	if st := strings.ToUpper(a["protocol_state"]); st != "RCPT" {
		return "DUNNO"
	}
	rcpt, sender := a["recipient"], a["sender"]
	if rcpt == "" || strings.ContainsAny(rcpt+sender, "\r\n\x00") || len(rcpt) > 512 || len(sender) > 512 {
		return "DUNNO"
	}
	name := l.recipientUser(rcpt)
	u, err := userdb.Lookup(l.cfg.UserDB, name)
	if errors.Is(err, userdb.ErrNotFound) {
		l.log.Info("policy", "session", sid, "recipient", rcpt, "action", "REJECT 5.1.1")
		return "REJECT 5.1.1 no such user"
	}
	if err != nil || u.UID == 0 || u.UID < l.sys.MinUID || !l.cfg.RcptSieve {
		return "DUNNO"
	}
	req := &job.Request{Op: job.ModeEnvelope, User: u.Name, Kind: job.KindDefault, Sender: sender, Recipient: rcpt}
	if req.Validate() != nil {
		return "DUNNO"
	}
	rep := l.deliver(u, req, nil)
	if rep.Decided && rep.Status.Permanent() {
		text := status.Sanitize(rep.Status.Text)
		l.log.Info("policy", "session", sid, "recipient", rcpt, "user", u.Name, "action", "REJECT 5.7.1", "reason", text)
		return "REJECT 5.7.1 " + text
	}
	l.log.Info("policy", "session", sid, "recipient", rcpt, "user", u.Name, "action", "DUNNO")
	return "DUNNO"
}

// recipientUser maps an address to the user database key, as Rcpt does.
func (l *Listener) recipientUser(addr string) string {
	local, domain := addr, ""
	if i := strings.LastIndexByte(local, '@'); i >= 0 {
		local, domain = local[:i], local[i:]
	}
	if l.cfg.Delimiter != "" {
		local, _, _ = strings.Cut(local, l.cfg.Delimiter)
	}
	if strings.HasPrefix(l.cfg.UserDB, "yaml:") {
		return strings.ToLower(local + domain)
	}
	return strings.ToLower(local)
}
