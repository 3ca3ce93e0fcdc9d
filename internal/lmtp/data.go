package lmtp

import (
	"bufio"
	"bytes"
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
	out := sink{w: w, max: max}
	accept := bareLF == BareLFAccept
	lineStart := true // the next byte starts a wire line
	pendingCR := false
	for {
		chunk, err := r.ReadSlice('\n')
		full := err == nil // chunk ends with '\n'
		if err != nil && err != bufio.ErrBufferFull {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return out.n, err
		}
		if lineStart {
			if full && len(chunk) == 3 && chunk[0] == '.' && chunk[1] == '\r' {
				return out.n, out.first
			}
			if chunk[0] == '.' {
				chunk = chunk[1:]
			}
		}
		if pendingCR {
			// A CR ended the previous fragment.
			pendingCR = false
			if chunk[0] == '\n' { // CRLF split between two reads
				out.write(lf)
				lineStart = true
				continue
			}
			out.write(cr)
		}
		if !full {
			if chunk[len(chunk)-1] == '\r' {
				pendingCR = true
				chunk = chunk[:len(chunk)-1]
			}
			out.write(chunk)
			lineStart = false
			continue
		}
		if len(chunk) >= 2 && chunk[len(chunk)-2] == '\r' {
			// CRLF becomes LF. The buffer's bytes are consumed, so
			// rewriting them in place is safe and saves a write.
			chunk[len(chunk)-2] = '\n'
			out.write(chunk[:len(chunk)-1])
			lineStart = true
			continue
		}
		// A bare LF.
		if !accept {
			out.fail(ErrBareLF)
		}
		out.write(chunk)
		lineStart = false
	}
}

// sink writes a message body to the spool for ReadData and Chunks: it
// counts the bytes, stops at the size limit and keeps the first error,
// after which nothing more is written.
type sink struct {
	w     io.Writer
	max   int64 // above zero: the limit on n
	n     int64 // bytes written
	first error // ErrTooBig, ErrBareLF or ErrWrite
}

func (s *sink) fail(err error) {
	if s.first == nil {
		s.first = err
	}
}

func (s *sink) write(p []byte) {
	if s.first != nil || len(p) == 0 {
		return
	}
	if s.max > 0 && s.n+int64(len(p)) > s.max {
		s.first = ErrTooBig
		return
	}
	k, err := s.w.Write(p)
	s.n += int64(k)
	if err == nil && k < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		s.first = fmt.Errorf("%w: %w", ErrWrite, err)
	}
}

// Chunks converts the body of a BDAT transaction (RFC 3030), which comes
// in chunks of a stated size, to the spool form that ReadData writes: CRLF
// line endings become LF, and the same bare-LF policy applies. A chunk is
// not dot-stuffed and carries no end marker, so nothing in it is ever
// taken for the end of the message: its length alone frames it. A CRLF
// split between two chunks is still one line end, and a CR that ends the
// last chunk is data.
type Chunks struct {
	out       sink
	accept    bool
	pendingCR bool // the last chunk ended with a CR, held back
}

// NewChunks starts a body written to w, limited to max bytes as spooled
// (none if max <= 0), under the bareLF policy (BareLFReject or
// BareLFAccept).
func NewChunks(w io.Writer, max int64, bareLF string) *Chunks {
	return &Chunks{out: sink{w: w, max: max}, accept: bareLF == BareLFAccept}
}

// Read reads exactly size bytes of a chunk from r and writes them on. It
// returns only read errors (io.ErrUnexpectedEOF when the input ends
// early), after which the stream is at an unknown position; the errors of
// the body itself are kept for Err and End. Memory use is bounded by r's
// buffer.
func (c *Chunks) Read(r *bufio.Reader, size int64) error {
	for size > 0 {
		if r.Buffered() == 0 {
			if _, err := r.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		k := int(min(int64(r.Buffered()), size))
		p, _ := r.Peek(k)
		c.convert(p)
		r.Discard(k)
		size -= int64(k)
	}
	return nil
}

// convert writes one piece of a chunk. p lies in the reader's buffer and
// is discarded after, so it may be rewritten in place.
func (c *Chunks) convert(p []byte) {
	if len(p) == 0 {
		return
	}
	if c.pendingCR {
		c.pendingCR = false
		if p[0] == '\n' { // CRLF split between two pieces
			c.out.write(lf)
			p = p[1:]
		} else {
			c.out.write(cr)
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if p[len(p)-1] == '\r' {
				c.pendingCR = true
				p = p[:len(p)-1]
			}
			c.out.write(p)
			return
		}
		if i > 0 && p[i-1] == '\r' {
			p[i-1] = '\n' // CRLF becomes LF
			c.out.write(p[:i])
		} else {
			if !c.accept {
				c.out.fail(ErrBareLF)
			}
			c.out.write(p[:i+1])
		}
		p = p[i+1:]
	}
}

// Err is the first error of the body so far: ErrTooBig, ErrBareLF or one
// wrapping ErrWrite.
func (c *Chunks) Err() error { return c.out.first }

// End ends the body after its last chunk and returns the bytes written
// and Err.
func (c *Chunks) End() (n int64, err error) {
	if c.pendingCR {
		c.pendingCR = false
		c.out.write(cr)
	}
	return c.out.n, c.out.first
}

var (
	cr = []byte{'\r'}
	lf = []byte{'\n'}
)
