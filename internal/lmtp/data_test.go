package lmtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
)

// dotStuff is the client side of DATA: body with LF line ends (a missing
// final LF is added) to CRLF wire form, dot-stuffed, with the end marker.
func dotStuff(body []byte) []byte {
	var w bytes.Buffer
	if len(body) > 0 && body[len(body)-1] != '\n' {
		body = append(body[:len(body):len(body)], '\n')
	}
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		line := body[:i]
		body = body[i+1:]
		if len(line) > 0 && line[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(line)
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
	return w.Bytes()
}

func normalise(body []byte) []byte {
	if len(body) > 0 && body[len(body)-1] != '\n' {
		return append(body[:len(body):len(body)], '\n')
	}
	return body
}

func TestReadData(t *testing.T) {
	for _, tc := range []struct {
		name   string
		wire   string
		policy string
		max    int64
		want   string
		err    error
		rest   string // left in the reader
	}{
		{"empty message", ".\r\n", "", 0, "", nil, ""},
		{"one empty line", "\r\n.\r\n", "", 0, "\n", nil, ""},
		{"lines", "a\r\nb\r\n.\r\n", "", 0, "a\nb\n", nil, ""},
		{"rest stays", "a\r\n.\r\nNOOP\r\n", "", 0, "a\n", nil, "NOOP\r\n"},
		{"unstuff two dots", "..\r\n.\r\n", "", 0, ".\n", nil, ""},
		{"unstuff dot text", "..x\r\n.x\r\n\r\n.\r\n", "", 0, ".x\nx\n\n", nil, ""},
		{"dot space is data", ". \r\n.\r\n", "", 0, " \n", nil, ""},
		{"dot CR CRLF is data", ".\r\r\n.\r\n", "", 0, "\r\n", nil, ""},
		{"dot at end of line is data", "a.\r\n.\r\n", "", 0, "a.\n", nil, ""},
		{"bare CR is data", "a\rb\r\n\r\r\n.\r\n", "", 0, "a\rb\n\r\n", nil, ""},
		{"CR.CR does not end", "a\r.\rb\r\n.\r\n", "", 0, "a\r.\rb\n", nil, ""},
		{"LF.LF reject", "a\n.\nMAIL FROM:<x@y>\r\n.\r\n", "reject", 0, "", ErrBareLF, ""},
		{"LF.LF default policy", "a\n.\nb\r\n.\r\n", "", 0, "", ErrBareLF, ""},
		{"LF.LF accept", "a\n.\nb\r\n.\r\n", "accept", 0, "a\n.\nb\n", nil, ""},
		{"LF.CRLF reject", "a\n.\r\nb\r\n.\r\n", "reject", 0, "", ErrBareLF, ""},
		{"LF.CRLF accept", "a\n.\r\nb\r\n.\r\n", "accept", 0, "a\n.\nb\n", nil, ""},
		{"CRLF.LF accept", "a\r\n.\nb\r\n.\r\n", "accept", 0, "a\n\nb\n", nil, ""},
		{"CRLF.LF reject", "a\r\n.\nb\r\n.\r\n", "reject", 0, "a\n", ErrBareLF, ""},
		{"bare LF first byte", "\n.\r\n.\r\n", "accept", 0, "\n.\n", nil, ""},
		{"reject reads to the end", "a\nb\r\n.\r\nNOOP\r\n", "reject", 0, "", ErrBareLF, "NOOP\r\n"},
		{"exactly max", "ab\r\n.\r\n", "", 3, "ab\n", nil, ""},
		{"over max", "ab\r\ncd\r\n.\r\nQUIT\r\n", "", 3, "ab\n", ErrTooBig, "QUIT\r\n"},
		{"over max first line", "abcd\r\n.\r\n", "", 3, "", ErrTooBig, ""},
		{"too big then bare LF", "abcd\r\nx\ny\r\n.\r\n", "", 3, "", ErrTooBig, ""},
		{"bare LF then too big", "x\ny\r\nabcd\r\n.\r\n", "", 3, "", ErrBareLF, ""},
		{"eof", "a\r\nb", "", 0, "a\n", io.ErrUnexpectedEOF, ""},
		{"eof after CR", "a\r", "", 0, "", io.ErrUnexpectedEOF, ""},
		{"eof no marker", "a\r\n.\n", "accept", 0, "a\n\n", io.ErrUnexpectedEOF, ""},
		{"nothing", "", "", 0, "", io.ErrUnexpectedEOF, ""},
	} {
		for _, size := range []int{16, 17, 19, 4096} {
			t.Run(tc.name+"/buf"+itoa(size), func(t *testing.T) {
				r := bufio.NewReaderSize(strings.NewReader(tc.wire), size)
				var out bytes.Buffer
				n, err := ReadData(r, &out, tc.max, tc.policy)
				if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
					t.Fatalf("ReadData(%q) error %v, want %v", tc.wire, err, tc.err)
				}
				if tc.err == nil || tc.err == io.ErrUnexpectedEOF {
					if out.String() != tc.want {
						t.Fatalf("ReadData(%q) = %q, want %q", tc.wire, out.String(), tc.want)
					}
				}
				if n != int64(out.Len()) || n > int64(len(tc.wire)) {
					t.Fatalf("n = %d, wrote %d, input %d", n, out.Len(), len(tc.wire))
				}
				if tc.err != nil && tc.err != io.ErrUnexpectedEOF && out.String() != tc.want {
					t.Fatalf("after %v wrote %q, want %q", tc.err, out.String(), tc.want)
				}
				rest, _ := io.ReadAll(r)
				if tc.err != io.ErrUnexpectedEOF && string(rest) != tc.rest {
					t.Fatalf("left %q in the reader, want %q", rest, tc.rest)
				}
			})
		}
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// TestReadDataBoundaries moves every interesting byte across every read
// buffer boundary: lines of every length around the buffer size, CRLF and
// CR split between reads, dots at line starts.
func TestReadDataBoundaries(t *testing.T) {
	var body bytes.Buffer
	for l := 0; l < 80; l++ {
		line := bytes.Repeat([]byte{'x'}, l)
		if l%3 == 0 && l > 0 {
			line[0] = '.'
		}
		if l%5 == 1 {
			line[l-1] = '\r'
		}
		body.Write(line)
		body.WriteByte('\n')
	}
	wire := dotStuff(body.Bytes())
	for size := 16; size <= 90; size++ {
		for _, policy := range []string{"reject", "accept"} {
			r := bufio.NewReaderSize(bytes.NewReader(wire), size)
			var out bytes.Buffer
			n, err := ReadData(r, &out, 0, policy)
			if err != nil || !bytes.Equal(out.Bytes(), body.Bytes()) || n != int64(body.Len()) {
				t.Fatalf("buffer %d, %s: err %v, n %d, equal %v", size, policy, err, n, bytes.Equal(out.Bytes(), body.Bytes()))
			}
		}
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.after {
		n := w.after
		w.after = 0
		return n, syscall.ENOSPC
	}
	w.after -= len(p)
	return len(p), nil
}

func TestReadDataWriteError(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("aaaa\r\nbbbb\r\n.\r\nQUIT\r\n"))
	n, err := ReadData(r, &failWriter{after: 7}, 0, "")
	if !errors.Is(err, ErrWrite) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v, want ErrWrite wrapping ENOSPC", err)
	}
	if n != 7 {
		t.Fatalf("n = %d, want 7", n)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "QUIT\r\n" {
		t.Fatalf("left %q, want the next command", rest)
	}
}

func TestDotStuffHelper(t *testing.T) {
	if got := string(dotStuff([]byte(".a\nb"))); got != "..a\r\nb\r\n.\r\n" {
		t.Fatalf("dotStuff = %q", got)
	}
}
