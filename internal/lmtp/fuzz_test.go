package lmtp

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	"lda/internal/status"
)

// Seed corpora: testdata/fuzz/FuzzParseCommand and testdata/fuzz/FuzzReadData.

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
