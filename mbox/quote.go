package mbox

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"lda/internal/status"
)

// Quoting selects how body lines that look like a From_ line are quoted.
type Quoting int

const (
	// MboxRD quotes every line matching "^>*From " with one more '>';
	// reversible.
	MboxRD Quoting = iota
	// MboxO quotes only lines matching "^From "; not reversible.
	MboxO
)

func (q Quoting) String() string {
	switch q {
	case MboxRD:
		return "mboxrd"
	case MboxO:
		return "mboxo"
	}
	return fmt.Sprintf("Quoting(%d)", int(q))
}

// ParseQuoting parses "mboxrd" or "mboxo".
func ParseQuoting(s string) (Quoting, error) {
	switch s {
	case "mboxrd":
		return MboxRD, nil
	case "mboxo":
		return MboxO, nil
	}
	return 0, fmt.Errorf("mbox: unknown quoting %q (want mboxrd or mboxo)", s)
}

// ctimeLayout is the layout of asctime(3) without its newline.
const ctimeLayout = "Mon Jan _2 15:04:05 2006"

// maxSender bounds the sender written into a From_ line.
const maxSender = 998

// FromLine returns the From_ line "From <sender> <ctime>\n" for the given
// envelope sender and time, in t's location. The null sender "" becomes
// MAILER-DAEMON. It does not validate the sender; Append does (see
// checkSender).
func FromLine(sender string, t time.Time) string {
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	return "From " + sender + " " + t.Format(ctimeLayout) + "\n"
}

// checkSender refuses a sender that could break or forge the From_ line:
// not UTF-8, or holding a control character or a character at which
// some readers end a line (status.UnicodeLineBreak).
func checkSender(s string) error {
	if len(s) > maxSender {
		return status.Usage.Wrapf("mbox: envelope sender longer than %d bytes", maxSender)
	}
	if !utf8.ValidString(s) {
		return status.Usage.Wrapf("mbox: envelope sender is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || status.UnicodeLineBreak(r) {
			return status.Usage.Wrapf("mbox: envelope sender contains control character or line break %U", r)
		}
	}
	return nil
}

// gts is a run of '>' used to write a long quote prefix without storing it.
var gts = bytes.Repeat([]byte{'>'}, 256)

const fromPrefix = "From "

// fromBytes is fromPrefix for emit, which would otherwise copy it to the
// heap for every line that starts with "From" ("From:" headers).
var fromBytes = []byte(fromPrefix)

// quoteWriter quotes a message body for an mbox. Write may be called with
// arbitrary splits of the input; the output depends only on the
// concatenation. Close flushes a pending line start, adds the final line
// feed if the body lacks one, and writes the separating empty line.
//
// At a line start the writer holds back what could still become a quoted
// line: a count of '>' (mboxrd only) and how many bytes of "From " have
// matched. It never holds more than that, so memory is bounded whatever
// the line length.
type quoteWriter struct {
	w       io.Writer
	q       Quoting
	bol     bool  // at the beginning of a line
	gt      int64 // '>' seen at this line start (held back)
	matched int   // bytes of "From " matched after the '>' (held back)
	last    byte  // last body byte passed on (0 before any)
	n       int64 // body bytes consumed
	err     error
}

func newQuoteWriter(w io.Writer, q Quoting) *quoteWriter {
	return &quoteWriter{w: w, q: q, bol: true}
}

func (qw *quoteWriter) emit(p []byte) {
	if qw.err != nil || len(p) == 0 {
		return
	}
	_, qw.err = qw.w.Write(p)
}

func (qw *quoteWriter) emitGT(n int64) {
	for n > 0 && qw.err == nil {
		k := min(n, int64(len(gts)))
		qw.emit(gts[:k])
		n -= k
	}
}

// flushPending writes the held-back line start unchanged.
func (qw *quoteWriter) flushPending() {
	qw.emitGT(qw.gt)
	qw.emit(fromBytes[:qw.matched])
	qw.gt, qw.matched = 0, 0
}

func (qw *quoteWriter) Write(p []byte) (int, error) {
	if qw.err != nil {
		return 0, qw.err
	}
	total := len(p)
	if total > 0 {
		qw.last = p[len(p)-1]
		qw.n += int64(total)
	}
	for len(p) > 0 && qw.err == nil {
		if !qw.bol {
			// Copy the rest of the line, through its '\n', in one piece.
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				qw.emit(p)
				p = nil
				break
			}
			qw.emit(p[:i+1])
			p = p[i+1:]
			qw.bol = true
			continue
		}
		c := p[0]
		switch {
		case qw.matched == 0 && c == '>' && qw.q == MboxRD:
			// mboxrd: any number of '>' may precede "From ". (mboxo
			// quotes only a bare "From ", so there a '>' falls
			// through to the default case and starts an ordinary
			// line.)
			qw.gt++
			p = p[1:]
		case c == fromPrefix[qw.matched]:
			qw.matched++
			p = p[1:]
			if qw.matched == len(fromPrefix) {
				qw.emitGT(qw.gt + 1)
				qw.emit(fromBytes)
				qw.gt, qw.matched = 0, 0
				qw.bol = false
			}
		default:
			// Not a From_ line: release what was held back; the
			// current byte is handled as ordinary line content
			// (it may be the '\n' of a short line).
			qw.flushPending()
			qw.bol = false
		}
	}
	if qw.err != nil {
		return 0, qw.err
	}
	return total, nil
}

// Close ends the body: pending bytes, a final '\n' if missing, and the
// separating empty line.
func (qw *quoteWriter) Close() error {
	if qw.err != nil {
		return qw.err
	}
	qw.flushPending()
	if qw.n > 0 && qw.last != '\n' {
		qw.emit([]byte{'\n'})
	}
	qw.emit([]byte{'\n'})
	return qw.err
}

// isFromLine reports whether line starts with "From ".
func isFromLine(line []byte) bool {
	return bytes.HasPrefix(line, []byte(fromPrefix))
}

// unquote removes one level of quoting from a body line.
func unquote(line []byte, q Quoting) []byte {
	if len(line) == 0 || line[0] != '>' {
		return line
	}
	switch q {
	case MboxRD:
		rest := bytes.TrimLeft(line, ">")
		if isFromLine(rest) {
			return line[1:]
		}
	case MboxO:
		if isFromLine(line[1:]) {
			return line[1:]
		}
	}
	return line
}

// validFromLine checks a From_ line as produced by FromLine.
func validFromLine(s string) bool {
	return strings.HasPrefix(s, fromPrefix) && strings.HasSuffix(s, "\n") &&
		strings.IndexByte(s, '\n') == len(s)-1 && len(s) > len(fromPrefix)+1
}
