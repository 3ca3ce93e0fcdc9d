package daemon

import (
	"bufio"
	"bytes"
	"io"
	"maps"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// referenceDeliveredTo is deliveredTo as it was first written, through
// bufio: the stack-buffer version must find the same addresses.
func referenceDeliveredTo(f *os.File) map[string]bool {
	seen := map[string]bool{}
	r := bufio.NewReader(io.NewSectionReader(f, 0, maxLoopHeader))
	for {
		line, err := r.ReadBytes('\n')
		t := bytes.TrimRight(line, "\r\n")
		if len(t) == 0 {
			return seen
		}
		if k, v, ok := bytes.Cut(t, []byte(":")); ok && strings.EqualFold(string(k), "Delivered-To") {
			seen[strings.ToLower(strings.TrimSpace(string(v)))] = true
		}
		if err != nil {
			return seen
		}
	}
}

// spoolOf is a memfd holding msg, as the listener's spool.
func spoolOf(t testing.TB, msg []byte) *os.File {
	fd, err := unix.MemfdCreate("test-spool", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "spool")
	if _, err := f.Write(msg); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDeliveredTo(t *testing.T) {
	long := strings.Repeat("x", 20<<10)
	pad := func(n int) string { return "X-Pad: " + strings.Repeat("p", n-len("X-Pad: \n")) + "\n" }
	for _, tc := range []struct {
		name string
		msg  string
		want []string
	}{
		{"header only, not the body", "Received: x\nDELIVERED-TO:  Alice@Example.org \nSubject: s\n\nDelivered-To: body@example.org\n", []string{"alice@example.org"}},
		{"CRLF and two fields", "Delivered-To: a@x\r\nDelivered-to: B@x\r\n\r\n", []string{"a@x", "b@x"}},
		{"none", "Subject: s\n\nbody\n", nil},
		{"empty message", "", nil},
		{"no empty line, no final newline", "Subject: s\nDelivered-To: end@x", []string{"end@x"}},
		{"a field across the first chunk's end", pad(8<<10-10) + "Delivered-To: across@x\n\n", []string{"across@x"}},
		{"a field after a line longer than a chunk", "X-Long: " + long + "\nDelivered-To: after@x\n\n", []string{"after@x"}},
		{"a longer name is not the field", "Delivered-To-Not: no@x\nXDelivered-To: no@x\n\n", nil},
		{"past the first MiB", strings.Repeat(pad(1000), (1<<20)/1000+1) + "Delivered-To: late@x\n\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := spoolOf(t, []byte(tc.msg))
			defer f.Close()
			got := deliveredTo(f, int64(len(tc.msg)))
			want := map[string]bool{}
			for _, a := range tc.want {
				want[a] = true
			}
			if !maps.Equal(got, want) {
				t.Fatalf("deliveredTo = %v, want %v", got, want)
			}
			if ref := referenceDeliveredTo(f); !maps.Equal(ref, want) {
				t.Fatalf("the reference finds %v, want %v (the case is wrong)", ref, want)
			}
		})
	}
}

// FuzzDeliveredTo: on any spool, deliveredTo finds exactly what the
// reference finds.
func FuzzDeliveredTo(f *testing.F) {
	f.Add([]byte("Delivered-To: a@x\r\nSubject: s\r\n\r\nDelivered-To: b@x\r\n"))
	f.Add([]byte("delivered-to:\n\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		sp := spoolOf(t, msg)
		defer sp.Close()
		got, want := deliveredTo(sp, int64(len(msg))), referenceDeliveredTo(sp)
		if !maps.Equal(got, want) {
			t.Fatalf("deliveredTo = %v, the reference %v", got, want)
		}
	})
}
