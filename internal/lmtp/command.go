package lmtp

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"lda/internal/status"
)

// Limits of the command syntax.
const (
	MaxAddressLen = 512 // bytes between "<" and ">"
	MaxParams     = 16  // ESMTP parameters on one MAIL or RCPT command
	maxVerbLen    = 10
	maxKeywordLen = 64
	maxDomainLen  = 255
	maxLabelLen   = 63
)

// Replies of the protocol engine. Their texts never contain client input.
var (
	replyUseLHLO       = status.New(500, "5.5.1", "use LHLO")
	replyUnrecognized  = status.New(500, "5.5.1", "command unrecognized")
	replyEmpty         = status.New(500, "5.5.2", "empty command")
	replySyntax        = status.New(500, "5.5.2", "syntax error")
	replyLineTooLong   = status.New(500, "5.5.2", "line too long")
	replyBareLFCommand = status.New(500, "5.5.2", "bare LF in command")
	replyBadAddress    = status.New(501, "5.1.3", "bad address syntax")
	replyBadArgs       = status.New(501, "5.5.4", "syntax error in arguments")
	replyNoArgs        = status.New(501, "5.5.4", "no arguments allowed")
	replyBadParam      = status.New(501, "5.5.4", "bad parameter syntax")
	replyDupParam      = status.New(501, "5.5.4", "duplicate parameter")
	replyTooManyParams = status.New(501, "5.5.4", "too many parameters")
	replyUnknownParam  = status.New(555, "5.5.4", "unsupported parameter")
	replyBadBDAT       = status.New(501, "5.5.4", "syntax: BDAT size [LAST]")
)

// maxChunkDigits bounds the size of a BDAT chunk to 18 digits, which
// always fit an int64.
const maxChunkDigits = 18

// Command is one parsed command line.
type Command struct {
	Verb   string  // upper-cased
	Arg    string  // MAIL/RCPT: the address without "<>" and source route; otherwise the rest of the line
	Params []Param // MAIL/RCPT only, in the order given
	Chunk  int64   // BDAT only: the chunk's size in octets
	Last   bool    // BDAT only: the LAST keyword was given
}

// Param is one ESMTP parameter of MAIL or RCPT.
type Param struct {
	Key   string // upper-cased esmtp-keyword
	Value string // raw esmtp-value; "" when the parameter had no "=value"
}

// ParseCommand parses one command line (its CRLF or LF terminator, if
// present, is ignored). On failure the error is a *status.Status ready to
// be sent, and the returned Command still carries the Verb when it was
// recognised, so that a caller can check the command sequence first.
//
// Every command it accepts is free of control characters (CR, LF, NUL, TAB
// and the rest of C0, DEL and C1) and of invalid UTF-8, in its verb,
// argument, address and parameters alike.
func ParseCommand(line []byte) (Command, error) {
	s := string(line)
	if strings.HasSuffix(s, "\n") {
		s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	}
	s = strings.TrimRight(s, " ")
	if s == "" {
		return Command{}, replyEmpty
	}
	verb, rest, _ := strings.Cut(s, " ")
	if verb == "" {
		return Command{}, replySyntax
	}
	if len(verb) > maxVerbLen || !isAlpha(verb) {
		return Command{}, replyUnrecognized
	}
	cmd := Command{Verb: strings.ToUpper(verb)}
	rest = strings.TrimLeft(rest, " ")
	switch cmd.Verb {
	case "LHLO":
		if !validHelloDomain(rest) {
			return cmd, replyBadArgs
		}
		cmd.Arg = rest
	case "HELO", "EHLO":
		// Refused by the session whatever the argument says.
	case "MAIL", "RCPT":
		prefix := "FROM:"
		if cmd.Verb == "RCPT" {
			prefix = "TO:"
		}
		if len(rest) < len(prefix) || !equalFoldASCII(rest[:len(prefix)], prefix) {
			return cmd, replyBadArgs
		}
		addr, tail, err := parsePath(strings.TrimLeft(rest[len(prefix):], " "), cmd.Verb == "MAIL")
		if err != nil {
			return cmd, err
		}
		params, err := parseParams(tail)
		if err != nil {
			return cmd, err
		}
		cmd.Arg, cmd.Params = addr, params
	case "BDAT":
		// RFC 3030: "BDAT" SP chunk-size [SP "LAST"], chunk-size 1*DIGIT.
		size, last, _ := strings.Cut(rest, " ")
		if size == "" || len(size) > maxChunkDigits || !isDigits(size) ||
			(last != "" && !equalFoldASCII(last, "LAST")) {
			return cmd, replyBadBDAT
		}
		cmd.Chunk, _ = strconv.ParseInt(size, 10, 64)
		cmd.Last = last != ""
	case "DATA", "RSET", "QUIT":
		if rest != "" {
			return cmd, replyNoArgs
		}
	case "NOOP", "HELP", "VRFY":
		if !validText(rest) || (cmd.Verb == "VRFY" && rest == "") {
			return cmd, replyBadArgs
		}
		cmd.Arg = rest
	default:
		return Command{}, replyUnrecognized
	}
	return cmd, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// validText accepts valid UTF-8 without control characters.
func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if isControl(r) {
			return false
		}
	}
	return true
}

// hasLineBreak reports the characters at which a reader that splits
// lines the Unicode way (as Python's str.splitlines does) breaks a line:
// U+0085, U+2028 and U+2029 (status.UnicodeLineBreak). Addresses and the
// LHLO domain end up in header lines (Return-Path, Delivered-To,
// Received).
func hasLineBreak(s string) bool {
	return strings.ContainsFunc(s, status.UnicodeLineBreak)
}

// isControl reports C0 and C1 control characters and DEL.
func isControl(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)
}

// validHelloDomain accepts the LHLO argument: one word of printable text,
// at most 255 bytes. It is never echoed, so no finer check is needed.
func validHelloDomain(s string) bool {
	return s != "" && len(s) <= maxDomainLen && !strings.Contains(s, " ") && validText(s) && !hasLineBreak(s)
}

// parsePath parses an RFC 5321 Reverse-path (MAIL) or Forward-path (RCPT)
// at the start of s and returns the address without "<>" and the rest of
// s after ">". A source route ("@a,@b:") is checked and dropped.
func parsePath(s string, mail bool) (addr, rest string, err error) {
	if s == "" || s[0] != '<' {
		return "", "", replyBadAddress
	}
	end := -1
	inQuote := false
scan:
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return "", "", replyBadAddress
		case inQuote && c == '\\':
			i++ // the quoted pair is checked by parseLocalPart
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == '<':
			return "", "", replyBadAddress
		case c == '>':
			end = i
			break scan
		}
	}
	if end < 0 {
		return "", "", replyBadAddress
	}
	addr, rest = s[1:end], s[end+1:]
	if rest != "" && rest[0] != ' ' {
		return "", "", replyBadAddress
	}
	if len(addr) > MaxAddressLen || !utf8.ValidString(addr) || hasLineBreak(addr) {
		return "", "", replyBadAddress
	}
	if addr == "" {
		if mail {
			return "", rest, nil
		}
		return "", "", replyBadAddress
	}
	if addr[0] == '@' {
		route, mbox, ok := strings.Cut(addr, ":")
		if !ok || !validRoute(route) {
			return "", "", replyBadAddress
		}
		addr = mbox
	}
	if !mail && equalFoldASCII(addr, "postmaster") {
		return addr, rest, nil
	}
	if !validMailbox(addr) {
		return "", "", replyBadAddress
	}
	return addr, rest, nil
}

// validRoute checks an A-d-l: "@dom" *("," "@dom").
func validRoute(route string) bool {
	for _, at := range strings.Split(route, ",") {
		if len(at) < 2 || at[0] != '@' || !validDomain(at[1:]) {
			return false
		}
	}
	return true
}

// validMailbox checks Local-part "@" (Domain / address-literal), with the
// RFC 6531 extension: UTF-8 is allowed where the session permits it.
func validMailbox(s string) bool {
	local, domain, ok := splitMailbox(s)
	return ok && validLocalPart(local) && (validDomain(domain) || validAddressLiteral(domain))
}

// splitMailbox splits at the "@" that follows the local part, which may be
// a quoted string containing "@".
func splitMailbox(s string) (local, domain string, ok bool) {
	i := 0
	if strings.HasPrefix(s, `"`) {
		for i = 1; i < len(s); i++ {
			if s[i] == '\\' {
				i++
				continue
			}
			if s[i] == '"' {
				break
			}
		}
		if i >= len(s) {
			return "", "", false
		}
		i++
		if i >= len(s) || s[i] != '@' {
			return "", "", false
		}
	} else {
		i = strings.IndexByte(s, '@')
		if i < 0 {
			return "", "", false
		}
	}
	return s[:i], s[i+1:], true
}

// atext of RFC 5322 plus UTF8-non-ascii of RFC 6531.
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// validLocalPart accepts a Dot-string (atoms of atext joined by single
// dots) or a Quoted-string, whose content must be non-empty; in both forms
// the content may not begin with "-". UTF-8 must be valid and free of C1
// controls.
func validLocalPart(s string) bool {
	if s == "" || !validText(s) {
		return false
	}
	if s[0] != '"' {
		if s[0] == '-' {
			return false
		}
		for _, atom := range strings.Split(s, ".") {
			if atom == "" {
				return false
			}
			for i := 0; i < len(atom); i++ {
				if !isAtext(atom[i]) {
					return false
				}
			}
		}
		return true
	}
	if len(s) < 3 || s[len(s)-1] != '"' { // `""` is the quoted empty local part
		return false
	}
	content := s[1 : len(s)-1]
	if content[0] == '-' || (content[0] == '\\' && len(content) > 1 && content[1] == '-') {
		return false
	}
	for i := 0; i < len(content); i++ {
		c := content[i]
		switch {
		case c == '\\':
			if i+1 >= len(content) || content[i+1] < 0x20 || content[i+1] > 0x7e {
				return false
			}
			i++
		case c == '"' || c < 0x20 || c == 0x7f:
			return false
		}
	}
	return true
}

// validDomain accepts dot-separated labels of letters, digits and inner
// hyphens (or UTF-8 U-labels), at most 63 bytes each and 255 in all.
func validDomain(s string) bool {
	if s == "" || len(s) > maxDomainLen || !validText(s) {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > maxLabelLen || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

// validAddressLiteral accepts "[" 1*dcontent "]" (RFC 5321 section 4.1.3,
// General-address-literal; IPv4 and IPv6 literals are instances of it).
func validAddressLiteral(s string) bool {
	if len(s) < 3 || len(s) > maxDomainLen || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '[' || c == ']' || c == '\\' {
			return false
		}
	}
	return true
}

// parseParams parses " KEY[=VALUE]" words. Keywords are upper-cased and
// must be unique; values must be esmtp-value (printable ASCII other than
// "=", or UTF-8 without controls, RFC 6531).
func parseParams(s string) ([]Param, error) {
	var params []Param
	for _, word := range strings.Split(s, " ") {
		if word == "" {
			continue
		}
		if len(params) == MaxParams {
			return nil, replyTooManyParams
		}
		key, value, hasValue := strings.Cut(word, "=")
		if !validKeyword(key) || (hasValue && !validValue(value)) {
			return nil, replyBadParam
		}
		key = strings.ToUpper(key)
		for _, p := range params {
			if p.Key == key {
				return nil, replyDupParam
			}
		}
		params = append(params, Param{Key: key, Value: value})
	}
	return params, nil
}

func validKeyword(k string) bool {
	if k == "" || len(k) > maxKeywordLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-') {
			return false
		}
	}
	return true
}

func validValue(v string) bool {
	if v == "" || !validText(v) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] == ' ' || v[i] == '=' {
			return false
		}
	}
	return true
}
