package mbox

import (
	"bytes"
	"encoding/hex"
	"io"
	"strconv"
	"strings"
	"testing"
)

// FuzzQuoteRoundTrip writes three messages with the quoting writer, split
// into writes of the given size, reads them back with the Reader and
// requires exactly three messages with the input bodies (normalised to end
// in "\n"; for mboxo, with ">From " lines losing one '>'), and output
// identical to the line-by-line reference.
func FuzzQuoteRoundTrip(f *testing.F) {
	for _, s := range tricky {
		f.Add([]byte(s), []byte("From x\n"), []byte(""), uint16(1), false)
	}
	f.Fuzz(func(t *testing.T, a, b, c []byte, chunk uint16, mboxo bool) {
		q := MboxRD
		if mboxo {
			q = MboxO
		}
		bodies := [][]byte{a, b, c}
		sizes := []int{int(chunk%8192) + 1, int(chunk>>13) + 1}
		var file bytes.Buffer
		for _, body := range bodies {
			file.WriteString(testFrom)
			out := quoteChunked(body, q, sizes)
			if want := referenceQuote(body, q); !bytes.Equal(out, want) {
				t.Fatalf("quoting %q:\n got %q\nwant %q", body, out, want)
			}
			file.Write(out)
		}
		r := NewReader(&file, q)
		for i, body := range bodies {
			m, err := r.Next()
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			want := normalise(body)
			if q == MboxO {
				want = mboxoExpect(want)
			}
			if !bytes.Equal(m.Body, want) {
				t.Fatalf("message %d: got %q, want %q", i, m.Body, want)
			}
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("after 3 messages: %v, want io.EOF", err)
		}
	})
}

// FuzzIntent: what setIntent writes reads back as the region it
// describes and is at most 59 bytes whatever the sender; and any
// value parseIntent accepts in the second form is the one intentValue
// writes for it (so no two values mean the same region).
func FuzzIntent(f *testing.F) {
	f.Add(int64(0), "alice@example.org", "2 0 40 0123456789abcdef")
	f.Add(int64(1)<<62, "", "1 5 "+testFrom)
	f.Add(int64(123456), strings.Repeat("x", maxSender), "2 01 40 0123456789abcdef")
	f.Fuzz(func(t *testing.T, off int64, sender, raw string) {
		if off >= 0 && checkSender(sender) == nil {
			from := FromLine(sender, testTime)
			v := intentValue(off, from)
			if len(v) > 59 {
				t.Fatalf("value %q is %d bytes", v, len(v))
			}
			r, ok := parseIntent(string(v))
			if !ok || r.off != off || r.n != len(from) || !r.startsWith([]byte(from)) {
				t.Fatalf("%q read back as %+v, %v", v, r, ok)
			}
			for k := 1; k < len(from); k++ {
				if !r.startsWith([]byte(from[:k])) {
					t.Fatalf("%q: the first %d bytes of its From_ line are not taken for its start", v, k)
				}
			}
		}
		r, ok := parseIntent(raw)
		if !ok || r.from != "" {
			return
		}
		want := "2 " + strconv.FormatInt(r.off, 10) + " " + strconv.Itoa(r.n) + " " + hex.EncodeToString(r.sum[:])
		if raw != want {
			t.Fatalf("%q accepted as %+v, which is written %q", raw, r, want)
		}
	})
}
