// Package xtext encodes and decodes RFC 3461 section 4 xtext, the encoding
// lda uses for every value that crosses a process boundary or the wire.
//
// Security: Decode is strict. A "+" must be followed by exactly two
// upper-case hexadecimal digits, and characters outside "!".."~" or equal
// to "=" are refused. Callers decide separately which decoded bytes they
// accept (CR, LF and NUL are refused by most of them).
package xtext

import (
	"errors"
	"slices"
	"strings"
)

const hexdigits = "0123456789ABCDEF"

// Encode returns the xtext form of s. Every byte outside "!".."~", and
// "+" and "=", is written as "+HH".
func Encode(s string) string {
	i := 0
	for i < len(s) && plain(s[i]) {
		i++
	}
	if i == len(s) {
		return s // the common case: nothing to escape, nothing to copy
	}
	return string(Append(make([]byte, 0, encodedLen(s)), s))
}

// Append appends the xtext form of s to dst, as Encode would return it,
// so that a record is built in one buffer without a string per value.
func Append(dst []byte, s string) []byte {
	n := encodedLen(s)
	if n == len(s) {
		return append(dst, s...) // nothing to escape: one copy
	}
	dst = slices.Grow(dst, n)
	for len(s) > 0 {
		i := 0
		for i < len(s) && plain(s[i]) {
			i++
		}
		dst = append(dst, s[:i]...)
		if i == len(s) {
			break
		}
		c := s[i]
		dst = append(dst, '+', hexdigits[c>>4], hexdigits[c&15])
		s = s[i+1:]
	}
	return dst
}

// encodedLen is the length of the xtext form of s.
func encodedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			n += 2
		}
	}
	return n
}

// plain reports whether c stands for itself in xtext.
func plain(c byte) bool { return c >= '!' && c <= '~' && c != '+' && c != '=' }

// ErrSyntax is returned for malformed xtext.
var ErrSyntax = errors.New("xtext: malformed value")

// Decode returns the value encoded by s.
func Decode(s string) (string, error) {
	if strings.IndexByte(s, '+') < 0 {
		for i := 0; i < len(s); i++ {
			if s[i] < '!' || s[i] > '~' || s[i] == '=' {
				return "", ErrSyntax
			}
		}
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", ErrSyntax
			}
			h, l := unhex(s[i+1]), unhex(s[i+2])
			if h < 0 || l < 0 {
				return "", ErrSyntax
			}
			b.WriteByte(byte(h<<4 | l))
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", ErrSyntax
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
