// Package lmtpbench holds the pure parts shared by the benchmark tools
// lmtpload and rawceiling: the deterministic test messages and their
// checksums, dot-stuffing, xtext, recipient selection, latency
// percentiles and the common report format.
package lmtpbench

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"strings"
)

// Domain is the domain of every benchmark address.
const Domain = "bench.test"

// Sender is the envelope and header sender of every benchmark message.
const Sender = "bench@" + Domain

// Recipients returns the users message k (0-based) goes to: rcpts
// consecutive users of the list, round-robin over the whole run, so that
// message k with rcpts r takes users[(k*r+j) % len(users)] for j < r.
// With fewer users than rcpts a user appears more than once.
func Recipients(users []string, k, rcpts int) []string {
	out := make([]string, rcpts)
	for j := range out {
		out[j] = users[(k*rcpts+j)%len(users)]
	}
	return out
}

// ID is the bench id of message n of run prefix.
func ID(prefix string, n int) string {
	return fmt.Sprintf("%s-%d", prefix, n)
}

// Message is one generated test message.
type Message struct {
	ID   string // bench id, PREFIX-N
	Data []byte // the message as delivered: headers, blank line, body; CRLF line ends, not dot-stuffed
	Body []byte // the body part of Data
	Sum  string // sha256 hex of Body, as in X-Bench-Sum
}

// sumPlaceholder has the length of a sha256 hex digest.
var sumPlaceholder = strings.Repeat("0", sha256.Size*2)

// NewMessage generates message n of run prefix, addressed to rcpts (the
// full addresses), of about size bytes in all (never less than the
// headers and one body line). The body is printable ASCII, a function of
// the id alone, and holds lines that begin with "From ", ">From " and "."
// (including a line that is a single dot and one after an empty line),
// so that mbox quoting and dot-stuffing are exercised.
func NewMessage(prefix string, n int, size int, rcpts []string) Message {
	id := ID(prefix, n)
	hlen := len(header(id, n, rcpts, sumPlaceholder))
	body := Body(id, size-hlen)
	s := sha256.Sum256(body)
	sum := hex.EncodeToString(s[:])
	data := make([]byte, 0, hlen+len(body))
	data = append(data, header(id, n, rcpts, sum)...)
	data = append(data, body...)
	return Message{ID: id, Data: data, Body: data[hlen:], Sum: sum}
}

// header is the header of message n (bench id id) to rcpts whose body has
// sum, with the empty line that ends it. No line of it begins with a dot.
func header(id string, n int, rcpts []string, sum string) string {
	var to strings.Builder
	for i, r := range rcpts {
		if i > 0 {
			to.WriteString(", ")
		}
		to.WriteString("<" + r + ">")
	}
	return "From: <" + Sender + ">\r\n" +
		"To: " + to.String() + "\r\n" +
		fmt.Sprintf("Subject: lmtpload %d\r\n", n) +
		"Message-ID: <" + id + "@" + Domain + ">\r\n" +
		"X-Bench-Id: " + id + "\r\n" +
		"X-Bench-Sum: " + sum + "\r\n" +
		"\r\n"
}

// Bodies is a few distinct bodies of one size, generated, checksummed and
// dot-stuffed once, for the messages of a run to take in turn (Message).
//
// Why: making a 100 KiB message took the client about 200 us of CPU
// (generating the body and its sha256) and dot-stuffing it more, on a
// goroutine that ran while the servers worked on the message before; on
// a two-CPU machine that took a third of a CPU from the servers being
// measured, alike for each but not in proportion to what each costs.
// With a pool a message costs its header and one copy.
type Bodies struct {
	prefix string
	hlen   int // the header length the bodies were sized for
	bodies []pooledBody
}

type pooledBody struct {
	data    []byte // CRLF line ends
	sum     string
	stuffed []byte // data dot-stuffed, with the final ".\r\n"
}

// NewBodies makes n distinct bodies (at least one) for messages of about
// size bytes to rcpts recipients (the header's length varies with the
// message number and the addresses: a message is size bytes give or take
// a few), each the body of a bench id of its own (PREFIX-body-J), so no
// two runs or pools share one.
func NewBodies(prefix string, size int, rcpts []string, n int) *Bodies {
	p := &Bodies{prefix: prefix, hlen: len(header(ID(prefix, 0), 0, rcpts, sumPlaceholder))}
	for j := range max(n, 1) {
		body := Body(ID(prefix+"-body", j), size-p.hlen)
		s := sha256.Sum256(body)
		p.bodies = append(p.bodies, pooledBody{data: body, sum: hex.EncodeToString(s[:]), stuffed: DotStuff(body)})
	}
	return p
}

// Message is message n of the run to rcpts, with body n modulo the pool's
// size; wire is Data dot-stuffed, as sent after DATA's 354.
func (p *Bodies) Message(n int, rcpts []string) (m Message, wire []byte) {
	b := p.bodies[n%len(p.bodies)]
	id := ID(p.prefix, n)
	h := header(id, n, rcpts, b.sum)
	data := make([]byte, 0, len(h)+len(b.data))
	data = append(data, h...)
	data = append(data, b.data...)
	// The header has no line that begins with a dot: stuffed, it is
	// itself, and the stuffed body ends the message.
	wire = make([]byte, 0, len(h)+len(b.stuffed))
	wire = append(wire, h...)
	wire = append(wire, b.stuffed...)
	return Message{ID: id, Data: data, Body: data[len(h):], Sum: b.sum}, wire
}

// special lines: every second body line is the next of these, in turn
// (one of them is two lines: an empty line and a From line).
var special = []string{
	"From the bench: this line begins with From and a space",
	".",
	"..two dots",
	"\r\nFrom after an empty line, which every mbox writer must quote",
	">From an already quoted line",
	".a line that begins with a dot",
	">>From twice quoted",
}

const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_!?()"

// Body returns a deterministic body for id of at least one line and
// otherwise at most max(want, line) bytes, with CRLF line ends; its
// length is exactly want when want is large enough (at least 64).
//
// It is written straight into one buffer, eight characters to each draw
// of the generator: the client's own time per message takes CPU from the
// servers it measures, on the same machine (see bench/README.md).
func Body(id string, want int) []byte {
	h := fnv.New64a()
	h.Write([]byte(id))
	x := h.Sum64() | 1
	next := func() uint64 { // xorshift64*
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		return x * 2685821657736338717
	}
	b := make([]byte, 0, max(want, 0)+len(id)+len("Bench message .\r\n"))
	b = append(b, "Bench message "...)
	b = append(b, id...)
	b = append(b, ".\r\n"...)
	for line := 0; len(b) < want; line++ {
		rest, start := want-len(b), len(b)
		if line%2 == 1 {
			b = append(b, special[(line/2)%len(special)]...)
		} else {
			n := 20 + int(next()%57) // 20..76 characters
			for i := 0; i < n; i += 8 {
				r := next()
				for j := i; j < n && j < i+8; j++ {
					b = append(b, alphabet[(r&0xff)*uint64(len(alphabet))>>8])
					r >>= 8
				}
			}
			// no trailing space, no leading "From " or "." by chance
			b[start], b[len(b)-1] = 'x', 'x'
		}
		if n := len(b) - start + 2; n != rest && n > rest-3 {
			// the last line fills exactly what is left (at least "z\r\n")
			b = b[:start]
			if rest < 3 {
				break
			}
			for range rest - 2 {
				b = append(b, 'z')
			}
		}
		b = append(b, '\r', '\n')
	}
	return b
}

// DotStuff returns data (CRLF line ends) as sent after DATA: every line
// that begins with a dot gets a second one, a missing final CRLF is
// added, and the terminating ".\r\n" is appended.
func DotStuff(data []byte) []byte {
	out := make([]byte, 0, len(data)+len(data)/64+8)
	for len(data) > 0 {
		if data[0] == '.' {
			out = append(out, '.')
		}
		i := bytes.IndexByte(data, '\n')
		if i < 0 { // a last line without its line end
			out = append(out, data...)
			out = append(out, '\r', '\n')
			break
		}
		out = append(out, data[:i+1]...)
		data = data[i+1:]
	}
	return append(out, '.', '\r', '\n')
}

// DotUnstuff reverses DotStuff: it reads lines up to the terminating
// ".\r\n" and removes one leading dot from every other line beginning
// with a dot. ok is false if there is no terminator.
func DotUnstuff(wire []byte) (data []byte, ok bool) {
	for len(wire) > 0 {
		i := bytes.Index(wire, []byte("\r\n"))
		if i < 0 {
			return data, false
		}
		line := wire[:i+2]
		wire = wire[i+2:]
		if string(line) == ".\r\n" {
			return data, true
		}
		if line[0] == '.' {
			line = line[1:]
		}
		data = append(data, line...)
	}
	return data, false
}
