package mbox

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
)

// referenceQuote is the obvious, line-by-line definition of the quoting,
// against which the streaming writer is checked.
func referenceQuote(body []byte, q Quoting) []byte {
	re := regexp.MustCompile(`^>*From `)
	if q == MboxO {
		re = regexp.MustCompile(`^From `)
	}
	var out []byte
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		line := body
		if i >= 0 {
			line = body[:i+1]
		}
		body = body[len(line):]
		if re.Match(line) {
			out = append(out, '>')
		}
		out = append(out, line...)
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, '\n')
}

// quoteChunked runs the quoting writer with writes of the given sizes.
func quoteChunked(body []byte, q Quoting, sizes []int) []byte {
	var out bytes.Buffer
	qw := newQuoteWriter(&out, q)
	for i := 0; len(body) > 0; i++ {
		n := max(1, min(sizes[i%len(sizes)], len(body)))
		if _, err := qw.Write(body[:n]); err != nil {
			panic(err)
		}
		body = body[n:]
	}
	if err := qw.Close(); err != nil {
		panic(err)
	}
	return out.Bytes()
}

var tricky = []string{
	"",
	"\n",
	"From ",
	"From",
	">From ",
	">>From ",
	">>>>>>>>>>From x\n",
	"From x\nFrom y\n",
	"x\nFrom y",
	"x\n>From y\n>>From z\n",
	"x\n>Fromage\n>From\n> From x\n",
	"a\r\nFrom b\r\n.\r\n",
	"\n\nFrom \n\n",
	"From \n\n\n",
	"no newline at end",
	">",
	">>>",
	"From x\n\n",
	"F\nFr\nFro\nFrom\nFrom \n",
	"\x00From \x00\n",
	"From\tx\nFrom  x\n",
	"From x\r\n\r\nFrom y",
}

func TestQuoteMatchesReference(t *testing.T) {
	splits := [][]int{{1 << 20}, {1}, {2}, {3}, {5}, {7, 1, 4096}, {4095}, {4096}, {4097}, {65536}}
	for _, q := range []Quoting{MboxRD, MboxO} {
		for i, body := range tricky {
			for _, sizes := range splits {
				t.Run(fmt.Sprintf("%v/%d/%v", q, i, sizes), func(t *testing.T) {
					got := quoteChunked([]byte(body), q, sizes)
					want := referenceQuote([]byte(body), q)
					if !bytes.Equal(got, want) {
						t.Errorf("body %q:\n got %q\nwant %q", body, got, want)
					}
				})
			}
		}
	}
}

// TestQuoteRandom compares the writer with the reference on random bodies
// built from line fragments that matter, with random write splits.
func TestQuoteRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	frags := []string{"From ", "From", ">", ">>", "\n", "\r\n", "x", " ", "F", "rom ", strings.Repeat("y", 4093)}
	for i := range 3000 {
		var b []byte
		for range rng.IntN(30) {
			b = append(b, frags[rng.IntN(len(frags))]...)
		}
		sizes := []int{1 + rng.IntN(10), 1 + rng.IntN(5000), 1 + rng.IntN(3)}
		q := Quoting(i % 2)
		if got, want := quoteChunked(b, q, sizes), referenceQuote(b, q); !bytes.Equal(got, want) {
			t.Fatalf("%v body %q sizes %v:\n got %q\nwant %q", q, b, sizes, got, want)
		}
	}
}

// TestLongLines appends lines around buffer sizes, followed by From_
// lines, fed in reads that split "From " and the lines everywhere, and
// checks the file byte for byte (sendmail mail.local CVE-2000-0319).
func TestLongLines(t *testing.T) {
	lengths := []int{4095, 4096, 4097, 8191, 8192, 65535, 65536, 65537, 200000}
	readers := map[string]func([]byte) *chunkReader{
		"whole":   func(b []byte) *chunkReader { return &chunkReader{data: b, sizes: []int{1 << 30}} },
		"4096":    func(b []byte) *chunkReader { return &chunkReader{data: b, sizes: []int{4096}} },
		"odd":     func(b []byte) *chunkReader { return &chunkReader{data: b, sizes: []int{3, 4093, 1, 65535, 2}} },
		"primes":  func(b []byte) *chunkReader { return &chunkReader{data: b, sizes: []int{4099, 7, 13}} },
		"onebyte": func(b []byte) *chunkReader { return &chunkReader{data: b, sizes: []int{1}} },
	}
	for _, n := range lengths {
		for rname, mk := range readers {
			if rname == "onebyte" && n > 70000 {
				continue
			}
			t.Run(fmt.Sprintf("%d/%s", n, rname), func(t *testing.T) {
				var body bytes.Buffer
				for _, prefix := range []string{"", "From ", ">From ", ">>From "} {
					body.WriteString(prefix)
					body.WriteString(strings.Repeat("a", n-len(prefix)))
					body.WriteString("\nFrom me\n>From you\n")
				}
				body.WriteString(strings.Repeat(">", n) + "From many\n")
				body.WriteString(strings.Repeat("b", n)) // no final newline
				p, d := testDir(t)
				if _, err := Append(d, "inbox", mk(body.Bytes()), testOptions()); err != nil {
					t.Fatal(err)
				}
				got := readFile(t, filepath.Join(p, "inbox"))
				want := testFrom + string(referenceQuote(body.Bytes(), MboxRD))
				if got != want {
					t.Fatalf("file differs from the reference (len %d vs %d)", len(got), len(want))
				}
				msgs := readAll(t, got, MboxRD)
				if len(msgs) != 1 || !bytes.Equal(msgs[0].Body, normalise(body.Bytes())) {
					t.Fatalf("round trip differs")
				}
			})
		}
	}
}

func TestRoundTripAppend(t *testing.T) {
	for _, q := range []Quoting{MboxRD, MboxO} {
		t.Run(q.String(), func(t *testing.T) {
			p, d := testDir(t)
			opt := testOptions()
			opt.Quoting = q
			for _, body := range tricky {
				if _, err := Append(d, "inbox", iotest.OneByteReader(strings.NewReader(body)), opt); err != nil {
					t.Fatal(err)
				}
			}
			msgs := readAll(t, readFile(t, filepath.Join(p, "inbox")), q)
			if len(msgs) != len(tricky) {
				t.Fatalf("%d messages, want %d", len(msgs), len(tricky))
			}
			for i, m := range msgs {
				want := normalise([]byte(tricky[i]))
				if q == MboxO {
					want = mboxoExpect(want)
				}
				if !bytes.Equal(m.Body, want) {
					t.Errorf("message %d: got %q, want %q", i, m.Body, want)
				}
				if m.From+"\n" != testFrom {
					t.Errorf("message %d: From_ line %q", i, m.From)
				}
			}
		})
	}
}

// mboxoExpect is what an mboxo round trip yields: ">From " lines lose one '>'.
func mboxoExpect(b []byte) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if bytes.HasPrefix(line, []byte(">From ")) {
			line = line[1:]
		}
		out = append(out, line...)
	}
	return out
}

func TestReaderStrict(t *testing.T) {
	tests := []struct {
		name, data string
		good       int // messages before the error
	}{
		{"not starting with From_", "Subject: x\n\n", 0},
		{"leading blank line", "\n" + testFrom + "x\n\n", 0},
		{"From_ without preceding blank line", testFrom + "x\n" + testFrom + "y\n\n", 0},
		{"no final blank line", testFrom + "x\n", 0},
		{"no final newline", testFrom + "x\n\nx", 0},
		{"truncated From_ line", testFrom + "x\n\nFrom y", 1},
		{"second bad", testFrom + "x\n\n" + testFrom + "y\n", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tc.data), MboxRD)
			for i := range tc.good {
				if _, err := r.Next(); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			_, err := r.Next()
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want ErrFormat", err)
			}
			if _, err2 := r.Next(); err2 != err {
				t.Errorf("error not sticky: %v", err2)
			}
		})
	}
	t.Run("empty file", func(t *testing.T) {
		if msgs := readAll(t, "", MboxRD); len(msgs) != 0 {
			t.Errorf("%d messages", len(msgs))
		}
	})
}
