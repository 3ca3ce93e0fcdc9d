package lmtp

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

// benchSizes are the message sizes of BenchmarkReadData and BenchmarkChunks.
var benchSizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"100KiB", 100 << 10}}

// benchBody is a mail-like body of at least n bytes: 72-byte lines ended
// by eol, every tenth beginning with a dot.
func benchBody(n int, eol string) []byte {
	var body bytes.Buffer
	for i := 0; body.Len() < n; i++ {
		if i%10 == 0 {
			body.WriteByte('.')
		}
		body.WriteString(strings.Repeat("m", 71))
		body.WriteString(eol)
	}
	return body.Bytes()
}

// benchRead runs read over wire, from a fresh reader each time, for
// every size.
func benchRead(b *testing.B, eol string, form func([]byte) []byte, read func(br *bufio.Reader, n int64) error) {
	for _, size := range benchSizes {
		wire := form(benchBody(size.n, eol))
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			rd := bytes.NewReader(wire)
			br := bufio.NewReaderSize(rd, readBufferSize)
			for b.Loop() {
				rd.Reset(wire)
				br.Reset(rd)
				if err := read(br, int64(len(wire))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadData(b *testing.B) {
	benchRead(b, "\n", dotStuff, func(br *bufio.Reader, _ int64) error {
		_, err := ReadData(br, io.Discard, 0, BareLFReject)
		return err
	})
}

// BenchmarkChunks reads the same bodies as BenchmarkReadData, sent as one
// BDAT chunk (CRLF line ends, no dot-stuffing).
func BenchmarkChunks(b *testing.B) {
	benchRead(b, "\r\n", func(p []byte) []byte { return p }, func(br *bufio.Reader, n int64) error {
		c := NewChunks(io.Discard, 0, BareLFReject)
		if err := c.Read(br, n); err != nil {
			return err
		}
		_, err := c.End()
		return err
	})
}

func BenchmarkParseCommand(b *testing.B) {
	for _, tc := range []struct{ name, line string }{
		{"NOOP", "NOOP"},
		{"MAIL", "MAIL FROM:<sender@example.org> SIZE=12345 BODY=8BITMIME"},
		{"RCPT XLDA", "RCPT TO:<alice@example.org> NOTIFY=FAILURE XLDA-USER=alice XLDA-DEST=maildir:/home/alice/Maildir+23Lists"},
	} {
		line := []byte(tc.line)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseCommand(line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
