package lmtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Bare LF policies (Config.BareLF, ReadData).
const (
	BareLFReject = "reject"
	BareLFAccept = "accept"
)

// Errors of ReadData after which the whole body has been read, so the
// session is still in step with the client.
var (
	ErrTooBig = errors.New("lmtp: message exceeds the size limit")
	ErrBareLF = errors.New("lmtp: bare LF in message")
	ErrWrite  = errors.New("lmtp: writing the message failed")
)

// ReadData reads a DATA body from r up to and including the end marker
// CRLF "." CRLF, and writes the message to w dot-unstuffed and with CRLF
// line endings converted to LF. It returns the number of bytes written.
//
// Wire lines are delimited by CRLF only. The end marker is a line that is
// exactly "." and follows a CRLF (or starts the body); a line that starts
// with "." and has anything else on it loses that first "." (RFC 5321
// section 4.5.2), so "..x" becomes ".x" and ".\n", ". " or ".\r" are data.
// A bare CR is always data. A bare LF (one not preceded by CR) never ends
// a wire line, so it can neither start the end marker nor a dot-stuffed
// line ("\n.\r\n", "\r\n.\n", "\n.\n" and "\r.\r" never end DATA: SMTP
// smuggling, CVE-2023-51764/5/6). With bareLF BareLFAccept it is copied to
// w, where it reads as a line end; with any other value (BareLFReject is
// the default) the message is refused with ErrBareLF.
//
// A max above zero limits the bytes written to w; beyond it ReadData stops
// writing and returns ErrTooBig. ErrBareLF, ErrTooBig and an error wrapping
// ErrWrite (w failed) are reported only after the end marker has been
// read; the first one met wins and nothing is written after it. Any other
// error is a read error (io.ErrUnexpectedEOF when the input ends early)
// and leaves the stream at an unknown position.
//
// The output is never longer than the input. Memory use is bounded by r's
// buffer.
func ReadData(r *bufio.Reader, w io.Writer, max int64, bareLF string) (n int64, err error) {
	var first error
	accept := bareLF == BareLFAccept
	write := func(p []byte) {
		if first != nil || len(p) == 0 {
			return
		}
		if max > 0 && n+int64(len(p)) > max {
			first = ErrTooBig
			return
		}
		k, err := w.Write(p)
		n += int64(k)
		if err == nil && k < len(p) {
			err = io.ErrShortWrite
		}
		if err != nil {
			first = fmt.Errorf("%w: %w", ErrWrite, err)
		}
	}
	lineStart := true // the next byte starts a wire line
	pendingCR := false
	for {
		chunk, err := r.ReadSlice('\n')
		full := err == nil // chunk ends with '\n'
		if err != nil && err != bufio.ErrBufferFull {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if lineStart {
			if full && len(chunk) == 3 && chunk[0] == '.' && chunk[1] == '\r' {
				return n, first
			}
			if chunk[0] == '.' {
				chunk = chunk[1:]
			}
		}
		if pendingCR {
			// A CR ended the previous fragment.
			pendingCR = false
			if chunk[0] == '\n' { // CRLF split between two reads
				write(lf)
				lineStart = true
				continue
			}
			write(cr)
		}
		if !full {
			if chunk[len(chunk)-1] == '\r' {
				pendingCR = true
				chunk = chunk[:len(chunk)-1]
			}
			write(chunk)
			lineStart = false
			continue
		}
		if len(chunk) >= 2 && chunk[len(chunk)-2] == '\r' {
			// CRLF becomes LF. The buffer's bytes are consumed, so
			// rewriting them in place is safe and saves a write.
			chunk[len(chunk)-2] = '\n'
			write(chunk[:len(chunk)-1])
			lineStart = true
			continue
		}
		// A bare LF.
		if !accept && first == nil {
			first = ErrBareLF
		}
		write(chunk)
		lineStart = false
	}
}

var (
	cr = []byte{'\r'}
	lf = []byte{'\n'}
)
