package lmtp

import (
	"math"
	"strconv"
	"strings"

	"lda/internal/status"
	"lda/internal/xtext"
	"lda/policy"
)

// MailParams are the parameters of MAIL FROM. Every field is empty or zero
// when its parameter was absent.
type MailParams struct {
	Size     int64  // SIZE= (RFC 1870), the client's estimate
	Body     string // BODY= (RFC 6152), "7BIT" or "8BITMIME"
	SMTPUTF8 bool   // SMTPUTF8 (RFC 6531)
	Ret      string // RET= (RFC 3461), "FULL" or "HDRS"
	EnvID    string // ENVID= (RFC 3461), xtext-decoded
}

// Recipient is one RCPT TO command.
type Recipient struct {
	Addr   string // the RCPT TO address without <> (source route dropped)
	Notify string // NOTIFY= (RFC 3461), upper-cased: "NEVER" or a comma list of SUCCESS, FAILURE, DELAY
	ORcpt  string // ORCPT= (RFC 3461) as "addr-type;address", the address xtext-decoded

	// lda extension (advertised as "XLDA 1"), all xtext-decoded; empty when absent:
	User   string // XLDA-USER=   deliver as this user (otherwise resolved from Addr by the backend)
	Dest   string // XLDA-DEST=   "mbox:/abs/path", "maildir:/abs/path", "maildir:/abs/path#Folder" or "program:NAME"
	Filter string // XLDA-FILTER= "deliver" or "only"
}

// Limits of parameter values.
const (
	maxEnvID   = 100 // RFC 3461 section 4.4
	maxORcpt   = 500 // RFC 3461 section 4.2
	maxProgram = 64
)

func badValue(key string) *status.Status {
	if st, ok := badValueReplies[key]; ok {
		return st
	}
	return replyBadParam
}

var badValueReplies = func() map[string]*status.Status {
	m := map[string]*status.Status{}
	for _, k := range []string{"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "NOTIFY", "ORCPT", "XLDA-USER", "XLDA-DEST", "XLDA-FILTER"} {
		m[k] = status.New(501, "5.5.4", "invalid "+k+" parameter")
	}
	return m
}()

// parseMailParams interprets the parameters of MAIL, in the order given:
// the first unknown parameter (555) or bad value (501) decides the reply.
func parseMailParams(params []Param) (MailParams, *status.Status) {
	var mp MailParams
	for _, p := range params {
		ok := true
		switch p.Key {
		case "SIZE":
			mp.Size, ok = parseSize(p.Value)
		case "BODY":
			mp.Body = strings.ToUpper(p.Value)
			ok = mp.Body == "7BIT" || mp.Body == "8BITMIME"
		case "SMTPUTF8":
			mp.SMTPUTF8, ok = true, p.Value == ""
		case "RET":
			mp.Ret = strings.ToUpper(p.Value)
			ok = mp.Ret == "FULL" || mp.Ret == "HDRS"
		case "ENVID":
			mp.EnvID, ok = decodeText(p.Value, maxEnvID)
		default:
			return MailParams{}, replyUnknownParam
		}
		if !ok {
			return MailParams{}, badValue(p.Key)
		}
	}
	return mp, nil
}

// parseSize accepts 1 to 20 decimal digits (RFC 1870); one past int64
// is math.MaxInt64.
func parseSize(v string) (int64, bool) {
	if v == "" || len(v) > 20 { // RFC 1870: size-value = 1*20DIGIT
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		// Well formed and past int64: past any limit too.
		return math.MaxInt64, true
	}
	return n, true
}

// parseRcptParams interprets the parameters of RCPT like parseMailParams.
// The XLDA parameters are unknown unless ext is set.
func parseRcptParams(addr string, params []Param, ext bool) (Recipient, *status.Status) {
	r := Recipient{Addr: addr}
	for _, p := range params {
		ok := true
		switch {
		case p.Key == "NOTIFY":
			r.Notify, ok = parseNotify(p.Value)
		case p.Key == "ORCPT":
			r.ORcpt, ok = parseORcpt(p.Value)
		case p.Key == "XLDA-USER" && ext:
			r.User, ok = decodeText(p.Value, policy.MaxUserNameLen)
			ok = ok && policy.ValidUserName(r.User) == nil
		case p.Key == "XLDA-DEST" && ext:
			r.Dest, ok = decodeText(p.Value, len("maildir:")+policy.MaxPathLen+1+policy.MaxFolderLen)
			ok = ok && ValidDest(r.Dest)
		case p.Key == "XLDA-FILTER" && ext:
			r.Filter, ok = decodeText(p.Value, len("deliver"))
			r.Filter = strings.ToLower(r.Filter)
			ok = ok && (r.Filter == "deliver" || r.Filter == "only")
		default:
			return Recipient{}, replyUnknownParam
		}
		if !ok {
			return Recipient{}, badValue(p.Key)
		}
	}
	return r, nil
}

// decodeText decodes xtext and accepts the result only when it is
// non-empty, at most max bytes, valid UTF-8 and free of control characters
// (so CR, LF and NUL never come out).
func decodeText(v string, max int) (string, bool) {
	s, err := xtext.Decode(v)
	if err != nil || s == "" || len(s) > max || !validText(s) {
		return "", false
	}
	return s, true
}

// parseNotify accepts "NEVER" alone or a list of distinct SUCCESS, FAILURE
// and DELAY, case-insensitively; it returns the upper-cased value.
func parseNotify(v string) (string, bool) {
	v = strings.ToUpper(v)
	if v == "NEVER" {
		return v, true
	}
	seen := map[string]bool{}
	for _, w := range strings.Split(v, ",") {
		if (w != "SUCCESS" && w != "FAILURE" && w != "DELAY") || seen[w] {
			return "", false
		}
		seen[w] = true
	}
	return v, true
}

// parseORcpt accepts addr-type ";" xtext, with addr-type an atom of
// letters, digits and "-" (RFC 3461 section 4.2).
func parseORcpt(v string) (string, bool) {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || !validKeyword(typ) {
		return "", false
	}
	dec, ok := decodeText(addr, maxORcpt)
	if !ok || len(typ)+1+len(dec) > maxORcpt {
		return "", false
	}
	return typ + ";" + dec, true
}

// ValidDest checks the decoded value of XLDA-DEST:
//
//	dest    = "mbox:" path / "maildir:" path [ "#" folder ] / "program:" name
//	path    = absolute and clean (policy.ValidPath): no "..", "//", "/./",
//	          trailing "/", control characters; not "/"; for maildir, no "#"
//	folder  = a Maildir++ folder name (policy.ValidFolder), e.g. "Lists.go"
//	name    = 1*64 of [A-Za-z0-9._-], not beginning with "." or "-"
//
// Kinds are lower-case. It is a lexical check only: whether the user may
// deliver there is the policy's decision.
func ValidDest(d string) bool {
	_, err := policy.ParseDestination(d)
	return err == nil
}
