package mbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Message is one message read from an mbox.
type Message struct {
	From string // the From_ line without its newline
	Body []byte // the body, unquoted, without the separating empty line
}

// Reader splits an mbox into messages and unquotes their bodies. It is
// strict, to catch writer bugs in tests and round trips: the file must
// start with a From_ line, every From_ line but the first must follow an
// empty line, and the file must end with a line feed and an empty line.
// Any line that starts with "From " is a message boundary.
type Reader struct {
	br      *bufio.Reader
	q       Quoting
	started bool
	next    []byte // the From_ line of the next message, nil at the end
	off     int64  // bytes consumed
	err     error
}

// NewReader returns a Reader of r with quoting q.
func NewReader(r io.Reader, q Quoting) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, bufSize), q: q}
}

// ErrFormat is wrapped by the Reader's errors about malformed input.
var ErrFormat = errors.New("mbox: malformed mbox")

func (r *Reader) fail(format string, args ...any) error {
	r.err = fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...)
	return r.err
}

func (r *Reader) readLine() ([]byte, error) {
	line, err := r.br.ReadBytes('\n')
	r.off += int64(len(line))
	return line, err
}

// Next returns the next message, or io.EOF after the last one.
func (r *Reader) Next() (*Message, error) {
	if r.err != nil {
		return nil, r.err
	}
	if !r.started {
		r.started = true
		line, err := r.readLine()
		if err == io.EOF && len(line) == 0 {
			r.err = io.EOF
			return nil, io.EOF
		}
		if err != nil && err != io.EOF {
			r.err = err
			return nil, err
		}
		if !isFromLine(line) {
			return nil, r.fail("does not start with a From_ line")
		}
		r.next = line
	}
	if r.next == nil {
		r.err = io.EOF
		return nil, io.EOF
	}
	from, ok := bytes.CutSuffix(r.next, []byte("\n"))
	if !ok {
		return nil, r.fail("truncated From_ line at offset %d", r.off-int64(len(r.next)))
	}
	msg := &Message{From: string(from)}
	var body []byte
	lastBlank := false
	for {
		line, err := r.readLine()
		if err != nil && err != io.EOF {
			r.err = err
			return nil, err
		}
		if len(line) > 0 {
			if isFromLine(line) {
				if !lastBlank {
					return nil, r.fail("From_ line at offset %d does not follow an empty line", r.off-int64(len(line)))
				}
				r.next = line
				msg.Body = body[:len(body)-1]
				return msg, nil
			}
			if line[len(line)-1] != '\n' {
				return nil, r.fail("no line feed at end of file")
			}
			body = append(body, unquote(line, r.q)...)
			lastBlank = len(line) == 1
		}
		if err == io.EOF {
			if !lastBlank {
				return nil, r.fail("last message does not end with an empty line")
			}
			r.next = nil
			msg.Body = body[:len(body)-1]
			return msg, nil
		}
	}
}
