package sieve

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	message "github.com/emersion/go-message"
)

func init() {
	if message.CharsetReader == nil {
		message.CharsetReader = charsetReader
	}
}

// cp1252 maps Windows-1252 bytes 0x80-0x9f; 0 means undefined.
var cp1252 = [32]rune{
	0x20ac, 0, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021,
	0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017d, 0,
	0, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
	0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0, 0x017e, 0x0178,
}

// latin9 maps the ISO-8859-15 bytes that differ from ISO-8859-1.
var latin9 = map[byte]rune{
	0xa4: 0x20ac, 0xa6: 0x0160, 0xa8: 0x0161, 0xb4: 0x017d,
	0xb8: 0x017e, 0xbc: 0x0152, 0xbd: 0x0153, 0xbe: 0x0178,
}

// charsetReader converts the charsets RFC 5228 section 2.7.2 requires to
// UTF-8: US-ASCII, UTF-8, ISO-8859-1, and the US-ASCII subset of the other
// ISO-8859 and Windows code pages (their other bytes become U+FFFD);
// ISO-8859-15 and Windows-1252 are converted completely. Other charsets are
// an error, so encoded words in them stay undecoded.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	cs := strings.ToLower(strings.TrimSpace(charset))
	var m func(byte) rune
	switch cs {
	case "utf-8", "utf8", "us-ascii", "ascii", "ansi_x3.4-1968":
		return input, nil
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "l1", "cp819":
		m = func(b byte) rune { return rune(b) }
	case "iso-8859-15", "iso8859-15", "iso_8859-15", "latin9", "latin-9":
		m = func(b byte) rune {
			if r, ok := latin9[b]; ok {
				return r
			}
			return rune(b)
		}
	case "windows-1252", "cp1252", "x-cp1252":
		m = func(b byte) rune {
			if b >= 0x80 && b < 0xa0 {
				if r := cp1252[b-0x80]; r != 0 {
					return r
				}
				return utf8.RuneError
			}
			return rune(b)
		}
	default:
		if strings.HasPrefix(cs, "iso-8859-") || strings.HasPrefix(cs, "iso8859-") ||
			strings.HasPrefix(cs, "windows-125") || strings.HasPrefix(cs, "cp125") {
			m = func(b byte) rune {
				if b < 0x80 {
					return rune(b)
				}
				return utf8.RuneError
			}
		} else {
			return nil, fmt.Errorf("unsupported charset %q", charset)
		}
	}
	return &byteMapReader{r: bufio.NewReader(input), m: m}, nil
}

// byteMapReader converts a single-byte charset to UTF-8.
type byteMapReader struct {
	r   *bufio.Reader
	m   func(byte) rune
	buf []byte // converted bytes not yet returned
}

func (b *byteMapReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(b.buf) > 0 {
			k := copy(p[n:], b.buf)
			b.buf = b.buf[k:]
			n += k
			continue
		}
		if n > 0 && b.r.Buffered() == 0 {
			break // return what we have rather than block
		}
		c, err := b.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		b.buf = utf8.AppendRune(b.buf[:0], b.m(c))
	}
	return n, nil
}
