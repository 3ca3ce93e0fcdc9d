package lmtp

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

func BenchmarkReadData(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"100KiB", 100 << 10}} {
		// A mail-like body: 72-byte lines, some dot-stuffed.
		var body bytes.Buffer
		for i := 0; body.Len() < size.n; i++ {
			if i%10 == 0 {
				body.WriteByte('.')
			}
			body.WriteString(strings.Repeat("m", 71))
			body.WriteByte('\n')
		}
		wire := dotStuff(body.Bytes())
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			rd := bytes.NewReader(wire)
			br := bufio.NewReaderSize(rd, readBufferSize)
			for b.Loop() {
				rd.Reset(wire)
				br.Reset(rd)
				if _, err := ReadData(br, io.Discard, 0, BareLFReject); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkChunks reads the same bodies as BenchmarkReadData, sent as one
// BDAT chunk (CRLF line ends, no dot-stuffing).
func BenchmarkChunks(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"100KiB", 100 << 10}} {
		var body bytes.Buffer
		for i := 0; body.Len() < size.n; i++ {
			if i%10 == 0 {
				body.WriteByte('.')
			}
			body.WriteString(strings.Repeat("m", 71))
			body.WriteString("\r\n")
		}
		wire := body.Bytes()
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			rd := bytes.NewReader(wire)
			br := bufio.NewReaderSize(rd, readBufferSize)
			for b.Loop() {
				rd.Reset(wire)
				br.Reset(rd)
				c := NewChunks(io.Discard, 0, BareLFReject)
				if err := c.Read(br, int64(len(wire))); err != nil {
					b.Fatal(err)
				}
				if _, err := c.End(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
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
