package status

import (
	"errors"
	"fmt"
	"strings"
)

// Status is the one outcome type of a delivery. It carries the LMTP reply
// code (RFC 5321), the enhanced status code (RFC 3463), a generic text that
// is safe to send to the peer, and the wrapped cause, which is only ever
// logged. Recover it from an error chain with errors.As, never with a type
// assertion.
type Status struct {
	Code     int    // 250, 450, 451, 452, 550, 552, 554, ...
	Enhanced string // "2.0.0", "4.3.1", ...
	Text     string // generic wire text: no paths, no errno text, one line
	Cause    error  // internal detail for the log; never sent to the peer
}

// New returns a Status without a cause. It panics on a malformed code pair,
// because every call site passes constants.
func New(code int, enhanced, text string) *Status {
	s := &Status{Code: code, Enhanced: enhanced, Text: text}
	if err := s.Validate(); err != nil {
		panic(err)
	}
	return s
}

// Wrap returns a copy of s whose cause is err.
func (s *Status) Wrap(err error) *Status {
	c := *s
	c.Cause = err
	return &c
}

// Wrapf is Wrap with a formatted cause.
func (s *Status) Wrapf(format string, args ...any) *Status {
	return s.Wrap(fmt.Errorf(format, args...))
}

func (s *Status) Error() string {
	if s.Cause != nil {
		return fmt.Sprintf("%d %s %s: %v", s.Code, s.Enhanced, s.Text, s.Cause)
	}
	return fmt.Sprintf("%d %s %s", s.Code, s.Enhanced, s.Text)
}

func (s *Status) Unwrap() error { return s.Cause }

// OK reports a 2xx status.
func (s *Status) OK() bool { return s.Code >= 200 && s.Code < 300 }

// Temporary reports a 4xx status.
func (s *Status) Temporary() bool { return s.Code >= 400 && s.Code < 500 }

// Permanent reports a 5xx status.
func (s *Status) Permanent() bool { return s.Code >= 500 && s.Code < 600 }

// Reply is the single wire line for this status, e.g. "550 5.7.1 text".
// The text is sanitised so that no CR, LF or other control character can
// reach the peer.
func (s *Status) Reply() string {
	return fmt.Sprintf("%d %s %s", s.Code, s.Enhanced, Sanitize(s.Text))
}

// Validate checks that the reply code and the enhanced code agree (RFC 3463:
// the class digit equals the first digit of the reply code).
func (s *Status) Validate() error {
	if s.Code < 200 || s.Code > 599 {
		return fmt.Errorf("status: reply code %d out of range", s.Code)
	}
	if !validEnhanced(s.Enhanced) {
		return fmt.Errorf("status: malformed enhanced code %q", s.Enhanced)
	}
	if class := s.Enhanced[0]; int(class-'0') != s.Code/100 || class == '3' || class == '1' {
		return fmt.Errorf("status: class of %q does not match %d", s.Enhanced, s.Code)
	}
	return nil
}

// validEnhanced reports whether e is "class.subject.detail" (RFC 3463):
// one digit, then two parts of one to three digits. It is on every reply
// a worker sends, so it reads e in place instead of splitting it.
func validEnhanced(e string) bool {
	part, digits := 0, 0
	for i := 0; i < len(e); i++ {
		switch c := e[i]; {
		case c >= '0' && c <= '9':
			digits++
			if digits > 3 || (part == 0 && digits > 1) {
				return false
			}
		case c == '.' && digits > 0 && part < 2:
			part, digits = part+1, 0
		default:
			return false
		}
	}
	return part == 2 && digits > 0
}

// Sanitize reduces text to one printable line of at most 200 bytes, so that
// it can be placed in a reply or a header.
func Sanitize(text string) string {
	// Most text is printable ASCII already (every status text of lda's
	// own, paths, rules): then it is its own first 200 bytes, trimmed,
	// and nothing is copied.
	clean := text
	if len(clean) > 200 {
		clean = clean[:200]
	}
	for i := 0; i < len(clean); i++ {
		if clean[i] < 0x20 || clean[i] >= 0x7f {
			return sanitize(text)
		}
	}
	return strings.TrimSpace(clean)
}

// UnicodeLineBreak reports the characters beyond CR and LF at which
// Unicode-aware readers end a line: U+0085 (NEL), U+2028 and U+2029
// (Python's str.splitlines breaks at all three). A value lda writes into
// a reply, a header line or a From_ line must not hold one, or such a
// reader sees the rest of it as a line of its own. Every check of such a
// value (the LMTP parser's, the job's header values, mbox's sender,
// Sieve's redirect address, Sanitize) asks this one.
func UnicodeLineBreak(r rune) bool {
	return r == '\u0085' || r == '\u2028' || r == '\u2029'
}

func sanitize(text string) string {
	var b strings.Builder
	for _, r := range text {
		if b.Len() >= 200 {
			break
		}
		switch {
		case r == '\t' || r == '\r' || r == '\n':
			b.WriteByte(' ')
		case UnicodeLineBreak(r):
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0xfffd:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(b.String())
}

// From recovers the Status from err. A nil error is success; an error that
// carries no Status is an unknown failure and becomes 451 4.3.0, never a
// permanent failure.
func From(err error) *Status {
	if err == nil {
		return Delivered
	}
	var s *Status
	if errors.As(err, &s) {
		return s
	}
	if st, ok := fromErrno(err); ok {
		return st.Wrap(err)
	}
	return Unknown.Wrap(err)
}
