package mbox

import (
	"bytes"
	"io"
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
