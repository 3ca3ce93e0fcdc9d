package sieve

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"sync"

	"github.com/emersion/go-message/mail"
	"github.com/foxcpp/go-sieve/interp"
)

// Message is a parsed message as Sieve tests see it. Its header is read by
// ParseMessage; the body is read lazily, at most once, when a body test
// needs it. A Message may be shared by several runs, also concurrently.
type Message struct {
	size    int64
	fields  []field
	index   map[string][]int // lower-case name -> indexes into fields
	hasBody bool             // a blank line ends the header
	bodyOff int64
	ra      io.ReaderAt
	maxBody int64

	once    sync.Once
	body    []byte
	bodyErr error
}

type field struct {
	name    string // lower case
	raw     string // unfolded, surrounding white space removed, RFC 2047 words not decoded
	decoded string // raw with RFC 2047 encoded words decoded to UTF-8
}

// ioError marks a failure to read the message: a temporary failure.
type ioError struct{ err error }

func (e *ioError) Error() string { return "reading the message: " + e.err.Error() }
func (e *ioError) Unwrap() error { return e.err }

var wordDecoder = &mime.WordDecoder{CharsetReader: charsetReader}

// decodeWords decodes RFC 2047 encoded words; on error it returns s.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return s
	}
	d, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

// ParseMessage reads the header of the message of size bytes in r: at most
// lim.MaxHeaderBytes of it are parsed (fields beyond are ignored, but the
// end of the header is still found). Header fields are unfolded, their
// surrounding white space removed and RFC 2047 encoded words decoded. Lines
// that are not header fields (such as an mbox "From " line) are skipped.
// Read errors are returned; a malformed message is not an error.
func ParseMessage(r io.ReaderAt, size int64, lim Limits) (*Message, error) {
	lim = lim.WithDefaults()
	if size < 0 {
		return nil, errors.New("sieve: negative message size")
	}
	m := &Message{
		size:    size,
		index:   map[string][]int{},
		ra:      r,
		maxBody: lim.MaxBodyBytes,
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 16<<10)
	var (
		off     int64
		budget  = lim.MaxHeaderBytes
		cur     *strings.Builder
		curName string
		storing = true
	)
	flush := func() {
		if cur != nil {
			raw := strings.Trim(cur.String(), " \t")
			m.index[curName] = append(m.index[curName], len(m.fields))
			m.fields = append(m.fields, field{name: curName, raw: raw, decoded: decodeWords(raw)})
		}
		cur = nil
	}
	for {
		keep := budget
		if !storing || keep < 2 {
			keep = 2
		}
		line, n, err := readLine(br, keep)
		off += n
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("sieve: %w", &ioError{err})
		}
		if n == 0 {
			break // end of message, no body
		}
		if len(line) == 0 && err == nil && n <= 2 {
			// "\n" or "\r\n": the end of the header.
			if storing {
				flush()
			}
			m.hasBody = true
			m.bodyOff = off
			return m, nil
		}
		if storing && n > budget {
			// This line crosses the limit: ignore it and every later field;
			// a field it continues is incomplete and ignored too.
			if line[0] != ' ' && line[0] != '\t' {
				flush()
			}
			storing = false
			cur = nil
		}
		if storing {
			budget -= n
			if line[0] == ' ' || line[0] == '\t' {
				if cur != nil {
					cur.Write(line) // unfolding removes only the line break
				}
			} else {
				flush()
				if name, value, ok := splitField(line); ok {
					cur = &strings.Builder{}
					curName = name
					cur.Write(value)
				}
			}
		}
		if err == io.EOF {
			break
		}
	}
	if storing {
		flush()
	}
	return m, nil
}

// readLine reads one line and returns it without its line ending, keeping
// at most keep+1 bytes of it (the rest is consumed and dropped), and the
// number of bytes consumed. At the end of input it returns io.EOF, with
// the last unterminated line if any.
func readLine(br *bufio.Reader, keep int64) ([]byte, int64, error) {
	var line []byte
	var n int64
	for {
		chunk, err := br.ReadSlice('\n')
		n += int64(len(chunk))
		if int64(len(line)) <= keep {
			room := keep + 1 - int64(len(line))
			c := chunk
			if int64(len(c)) > room {
				c = c[:room]
			}
			line = append(line, c...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && err != io.EOF {
			return nil, n, err
		}
		if err == nil {
			line = bytes.TrimSuffix(line, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\r"))
			return line, n, nil
		}
		return line, n, io.EOF
	}
}

// splitField splits "Name: value". The name is printable US-ASCII without
// ":"; white space between the name and the colon (obsolete syntax) is
// allowed.
func splitField(line []byte) (name string, value []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", nil, false
	}
	nb := bytes.TrimRight(line[:i], " \t")
	if len(nb) == 0 {
		return "", nil, false
	}
	for _, c := range nb {
		if c < 33 || c > 126 {
			return "", nil, false
		}
	}
	return strings.ToLower(string(nb)), line[i+1:], true
}

// Size returns the message size given to ParseMessage.
func (m *Message) Size() int64 { return m.size }

// Header returns the decoded values of the named field, in order.
func (m *Message) Header(name string) []string {
	idx := m.index[strings.ToLower(name)]
	if len(idx) == 0 {
		return nil
	}
	vals := make([]string, len(idx))
	addr := addressHeaders[strings.ToLower(name)]
	for i, j := range idx {
		if addr {
			vals[i] = addressForm(m.fields[j])
		} else {
			vals[i] = m.fields[j].decoded
		}
	}
	return vals
}

// addressHeaders are the fields go-sieve's address test accepts.
var addressHeaders = map[string]bool{
	"from": true, "to": true, "cc": true, "bcc": true, "sender": true,
	"resent-from": true, "resent-to": true, "reply-to": true,
	"resent-reply-to": true, "resent-sender": true, "resent-cc": true,
	"resent-bcc": true, "for-approval": true, "for-handling": true,
	"for-comment": true, "apparently-to": true, "errors-to": true,
	"delivered-to": true, "return-receipt-to": true, "x-admin": true,
	"read-receipt-to": true, "x-confirm-reading-to": true,
	"return-receipt-requested": true, "registered-mail-reply-requested-by": true,
	"mail-followup-to": true, "mail-reply-to": true, "abuse-reports-to": true,
	"x-complaints-to": true, "x-report-abuse-to": true, "x-beenthere": true,
	"x-original-from": true, "x-original-to": true,
}

// addressForm returns the value of an address field such that the address
// test's parser finds the same addresses as in the raw field: the decoded
// value when decoding did not change the addresses (the usual case), else
// the addresses re-written with quoted display names. So
// "=?utf-8?q?Doe=2C_John?= <j@x>" yields `"Doe, John" <j@x>`.
func addressForm(f field) string {
	if f.decoded == f.raw {
		return f.raw
	}
	rawList, err := mail.ParseAddressList(f.raw)
	if err != nil {
		return f.decoded
	}
	decList, err := mail.ParseAddressList(f.decoded)
	if err == nil && len(decList) == len(rawList) {
		same := true
		for i := range decList {
			if decList[i].Address != rawList[i].Address {
				same = false
				break
			}
		}
		if same {
			return f.decoded
		}
	}
	var b strings.Builder
	for i, a := range rawList {
		if i > 0 {
			b.WriteString(", ")
		}
		if a.Name != "" {
			b.WriteByte('"')
			for _, r := range a.Name {
				if r == '"' || r == '\\' {
					b.WriteByte('\\')
				}
				b.WriteRune(r)
			}
			b.WriteString(`" <` + a.Address + ">")
		} else {
			b.WriteString(a.Address)
		}
	}
	return b.String()
}

// loadBody reads the first maxBody bytes of the body, once.
func (m *Message) loadBody() ([]byte, error) {
	m.once.Do(func() {
		if !m.hasBody {
			return
		}
		n := m.size - m.bodyOff
		if n > m.maxBody {
			n = m.maxBody
		}
		if n <= 0 {
			return
		}
		buf := make([]byte, n)
		k, err := m.ra.ReadAt(buf, m.bodyOff)
		if err != nil && err != io.EOF {
			m.bodyErr = &ioError{err}
			return
		}
		m.body = buf[:k]
	})
	return m.body, m.bodyErr
}

// mimeHeader is the top-level header that matters for MIME parsing.
func (m *Message) mimeHeader() string {
	var b strings.Builder
	for _, name := range []string{"content-type", "content-transfer-encoding"} {
		if idx := m.index[name]; len(idx) > 0 {
			v := strings.Map(func(r rune) rune {
				if r == '\r' || r == '\n' {
					return ' '
				}
				return r
			}, m.fields[idx[0]].raw)
			b.WriteString(name + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// runMessage is the interp.Message (and interp.BodyMessage) of one run of
// Run: it stops the script when the run's deadline has passed.
type runMessage struct {
	m     *Message
	ctx   context.Context
	reads *reads
}

var (
	_ interp.Message     = runMessage{}
	_ interp.BodyMessage = runMessage{}
)

func (r runMessage) HeaderGet(key string) ([]string, error) {
	r.reads.message()
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	return r.m.Header(key), nil
}

func (r runMessage) MessageSize() int {
	r.reads.message()
	const maxInt = int(^uint(0) >> 1)
	if r.m.size > int64(maxInt) {
		return maxInt
	}
	return int(r.m.size)
}

func (r runMessage) BodyRaw(ctx context.Context) (io.Reader, error) {
	r.reads.message()
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	body, err := r.m.loadBody()
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(body), nil
}

func (r runMessage) BodyParts(ctx context.Context, contentTypes []string) ([]interp.BodyPart, error) {
	r.reads.message()
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	body, err := r.m.loadBody()
	if err != nil {
		return nil, err
	}
	if !r.m.hasBody {
		return nil, nil
	}
	msg := io.MultiReader(strings.NewReader(r.m.mimeHeader()), bytes.NewReader(body))
	return interp.ParseBodyParts(ctx, msg, contentTypes, int(r.m.maxBody))
}
