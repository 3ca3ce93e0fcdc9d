package lmtp

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"lda/internal/status"
)

// Seed corpora: testdata/fuzz/FuzzParseCommand, testdata/fuzz/FuzzReadData
// and testdata/fuzz/FuzzChunks.

func hasCRLFNUL(s string) bool { return strings.ContainsAny(s, "\r\n\x00") }

func FuzzParseCommand(f *testing.F) {
	f.Fuzz(func(t *testing.T, line []byte) {
		cmd, err := ParseCommand(line)
		if err != nil {
			st, ok := err.(*status.Status)
			if !ok || (st.Code != 500 && st.Code != 501) || st.Validate() != nil {
				t.Fatalf("ParseCommand(%q) error %v", line, err)
			}
			return
		}
		if cmd.Verb == "" || hasCRLFNUL(cmd.Verb) || !validText(cmd.Arg) {
			t.Fatalf("ParseCommand(%q) accepted %+v", line, cmd)
		}
		for _, p := range cmd.Params {
			if hasCRLFNUL(p.Key) || hasCRLFNUL(p.Value) || !validText(p.Value) {
				t.Fatalf("ParseCommand(%q) accepted parameter %+v", line, p)
			}
		}
		switch cmd.Verb {
		case "BDAT":
			// The size is what the line said: written back in canonical
			// form it parses to the same command.
			canon := "BDAT " + strconv.FormatInt(cmd.Chunk, 10)
			if cmd.Last {
				canon += " LAST"
			}
			again, err := ParseCommand([]byte(canon))
			if cmd.Chunk < 0 || err != nil || again.Chunk != cmd.Chunk || again.Last != cmd.Last {
				t.Fatalf("ParseCommand(%q) = %+v, but %q gives %+v, %v", line, cmd, canon, again, err)
			}
		case "MAIL":
			if len(cmd.Arg) > MaxAddressLen {
				t.Fatalf("ParseCommand(%q) accepted a %d-byte address", line, len(cmd.Arg))
			}
			mp, st := parseMailParams(cmd.Params)
			if st == nil && (hasCRLFNUL(mp.EnvID) || hasCRLFNUL(mp.Body) || hasCRLFNUL(mp.Ret)) {
				t.Fatalf("MAIL parameters of %q decode to %+v", line, mp)
			}
		case "RCPT":
			if cmd.Arg == "" || len(cmd.Arg) > MaxAddressLen || strings.HasPrefix(cmd.Arg, "-") {
				t.Fatalf("ParseCommand(%q) accepted address %q", line, cmd.Arg)
			}
			r, st := parseRcptParams(cmd.Arg, cmd.Params, true)
			if st != nil {
				return
			}
			for _, v := range []string{r.Notify, r.ORcpt, r.User, r.Dest, r.Filter} {
				if hasCRLFNUL(v) {
					t.Fatalf("RCPT parameters of %q decode to %+v", line, r)
				}
			}
			if r.Dest != "" && (!ValidDest(r.Dest) || strings.Contains(r.Dest, "/../") || strings.Contains(r.Dest, "//")) {
				t.Fatalf("RCPT %q accepted destination %q", line, r.Dest)
			}
		}
	})
}

func FuzzReadData(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, small bool) {
		size := 4096
		if small {
			size = 16
		}
		read := func(wire []byte, max int64, policy string) (out []byte, n int64, consumed int, err error) {
			br := bufio.NewReaderSize(bytes.NewReader(wire), size)
			var w bytes.Buffer
			n, err = ReadData(br, &w, max, policy)
			if n != int64(w.Len()) {
				t.Fatalf("ReadData returned n=%d but wrote %d bytes", n, w.Len())
			}
			// What ReadData did not consume is still in br or behind it.
			left, _ := readAll(br)
			return w.Bytes(), n, len(wire) - left, err
		}

		// 1. Round trip: the body, dot-stuffed into wire form, comes back
		// exactly, under both policies, consuming exactly the wire form.
		wire := dotStuff(data)
		for _, policy := range []string{BareLFReject, BareLFAccept} {
			out, _, consumed, err := read(wire, 0, policy)
			if err != nil || !bytes.Equal(out, normalise(data)) || consumed != len(wire) {
				t.Fatalf("round trip of %q (%s): %q, %v, consumed %d of %d", data, policy, out, err, consumed, len(wire))
			}
		}

		// 2. Arbitrary wire input: never more bytes out than in; DATA ends
		// exactly at the first CRLF.CRLF (or a leading ".\r\n"), never
		// earlier, never later; a size limit changes the outcome but not
		// where DATA ends.
		end := -1
		if bytes.HasPrefix(data, []byte(".\r\n")) {
			end = 3
		} else if i := bytes.Index(data, []byte("\r\n.\r\n")); i >= 0 {
			end = i + 5
		}
		acceptOut, _, consumed, err := read(data, 0, BareLFAccept)
		if len(acceptOut) > len(data) {
			t.Fatalf("%q gave %d bytes from %d", data, len(acceptOut), len(data))
		}
		if (err == nil) != (end >= 0) || (err == nil && consumed != end) {
			t.Fatalf("%q: err %v, consumed %d, end marker at %d", data, err, consumed, end)
		}
		if end < 0 {
			return
		}
		rejectOut, _, consumed2, err2 := read(data, 0, BareLFReject)
		bare := hasBareLF(data[:end])
		if consumed2 != end || (err2 != nil) != bare || (bare && !errors.Is(err2, ErrBareLF)) {
			t.Fatalf("%q reject: err %v, consumed %d, end %d, bare LF %v", data, err2, consumed2, end, bare)
		}
		if !bare && !bytes.Equal(rejectOut, acceptOut) {
			t.Fatalf("%q: policies disagree without a bare LF", data)
		}
		// Half the output as the limit (0 means none).
		limit := int64(len(acceptOut) / 2)
		limOut, _, consumed3, err3 := read(data, limit, BareLFAccept)
		ok := consumed3 == end && bytes.HasPrefix(acceptOut, limOut)
		if limit > 0 {
			ok = ok && errors.Is(err3, ErrTooBig) && int64(len(limOut)) <= limit
		} else {
			ok = ok && err3 == nil && len(limOut) == len(acceptOut)
		}
		if !ok {
			t.Fatalf("%q limit %d: %q, %v, consumed %d of %d", data, limit, limOut, err3, consumed3, end)
		}
	})
}

func readAll(br *bufio.Reader) (int, error) {
	var n int
	buf := make([]byte, 4096)
	for {
		k, err := br.Read(buf)
		n += k
		if err != nil {
			return n, err
		}
	}
}

func hasBareLF(b []byte) bool {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}

// FuzzChunks checks the BDAT body against a reference and against DATA.
// The body is cut into chunks at the places cuts gives and read through a
// small or a large buffer, with a sentinel byte after every chunk.
// Properties: every chunk is consumed exactly (the sentinel is next);
// under accept the spooled bytes are the reference conversion (each CR LF
// becomes LF, every other byte is kept) wherever the cuts fall; under
// reject the error is ErrBareLF exactly when the body has a bare LF, and
// the output is a prefix of the reference; with a limit of half the
// reference the error is ErrTooBig and the output a prefix within the
// limit; and a body that DATA can carry (empty or ending in CR LF),
// dot-stuffed and sent with DATA, spools the same bytes.
func FuzzChunks(f *testing.F) {
	f.Fuzz(func(t *testing.T, body, cuts []byte, small bool) {
		size := 4096
		if small {
			size = 16
		}
		var chunks [][]byte
		rest := body
		for _, c := range cuts {
			k := int(c) % (len(rest) + 1)
			chunks, rest = append(chunks, rest[:k]), rest[k:]
		}
		chunks = append(chunks, rest)
		const sentinel = '#'
		var wire []byte
		for _, c := range chunks {
			wire = append(append(wire, c...), sentinel)
		}
		run := func(max int64, policy string) ([]byte, error) {
			br := bufio.NewReaderSize(bytes.NewReader(wire), size)
			var w bytes.Buffer
			c := NewChunks(&w, max, policy)
			for i, chunk := range chunks {
				if err := c.Read(br, int64(len(chunk))); err != nil {
					t.Fatalf("%q chunk %d: %v", body, i, err)
				}
				if b, err := br.ReadByte(); err != nil || b != sentinel {
					t.Fatalf("%q chunk %d of %d bytes: next byte %q, %v; want the sentinel", body, i, len(chunk), b, err)
				}
			}
			n, err := c.End()
			if n != int64(w.Len()) {
				t.Fatalf("%q: End returned n=%d but wrote %d bytes", body, n, w.Len())
			}
			return w.Bytes(), err
		}
		ref := bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))

		out, err := run(0, BareLFAccept)
		if err != nil || !bytes.Equal(out, ref) {
			t.Fatalf("%q in %d chunks (accept): %q, %v; want %q", body, len(chunks), out, err, ref)
		}
		out, err = run(0, BareLFReject)
		bare := hasBareLF(body)
		if (err != nil) != bare || (bare && !errors.Is(err, ErrBareLF)) || !bytes.HasPrefix(ref, out) || (!bare && len(out) != len(ref)) {
			t.Fatalf("%q (reject): %q, %v; bare LF %v", body, out, err, bare)
		}
		if limit := int64(len(ref) / 2); limit > 0 {
			out, err = run(limit, BareLFAccept)
			if !errors.Is(err, ErrTooBig) || int64(len(out)) > limit || !bytes.HasPrefix(ref, out) {
				t.Fatalf("%q limit %d: %q, %v", body, limit, out, err)
			}
		}

		if len(body) > 0 && !bytes.HasSuffix(body, []byte("\r\n")) {
			return
		}
		var data bytes.Buffer
		for i := 0; i < len(body); i++ {
			if body[i] == '.' && (i == 0 || (i >= 2 && body[i-2] == '\r' && body[i-1] == '\n')) {
				data.WriteByte('.')
			}
			data.WriteByte(body[i])
		}
		data.WriteString(".\r\n")
		var w bytes.Buffer
		n, err := ReadData(bufio.NewReaderSize(bytes.NewReader(data.Bytes()), size), &w, 0, BareLFAccept)
		if err != nil || n != int64(len(ref)) || !bytes.Equal(w.Bytes(), ref) {
			t.Fatalf("%q by DATA: %q, %v; by BDAT: %q", body, w.Bytes(), err, ref)
		}
	})
}
