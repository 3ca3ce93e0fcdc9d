package daemon

import (
	"bytes"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// maxLoopHeader bounds how much of a message deliveredTo reads.
const maxLoopHeader = 1 << 20

// deliveredTo returns the lower-cased Delivered-To values of the message's
// header (the lines before the first empty one, within its first MiB),
// for loop detection; nil when there are none. size is the spool's size.
//
// It runs for every message on the listener's path, so it reads the spool
// with pread into a buffer on its stack, one call for a header that fits
// (8 KiB), and allocates only for a line that crosses a chunk and for
// what it returns.
func deliveredTo(f *os.File, size int64) map[string]bool {
	var seen map[string]bool
	visit := func(line []byte) (end bool) {
		t := bytes.TrimRight(line, "\r\n")
		if len(t) == 0 {
			return true
		}
		if k, v, ok := bytes.Cut(t, []byte(":")); ok && bytes.EqualFold(k, []byte("Delivered-To")) {
			if seen == nil {
				seen = map[string]bool{}
			}
			seen[strings.ToLower(strings.TrimSpace(string(v)))] = true
		}
		return false
	}
	fd := int(f.Fd())
	var chunk [8 << 10]byte
	var carry []byte // the start of a line that crosses a chunk
	carrying := false
	for off, limit := int64(0), min(size, maxLoopHeader); off < limit; {
		n, err := unix.Pread(fd, chunk[:min(int64(len(chunk)), limit-off)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			break // what could not be read is not looked at, as at EOF
		}
		off += int64(n)
		for b := chunk[:n]; len(b) > 0; {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				carry, carrying = append(carry, b...), true
				break
			}
			line := b[:i+1]
			if carrying {
				carry = append(carry, line...)
				line, carry, carrying = carry, carry[:0], false
			}
			b = b[i+1:]
			if visit(line) {
				return seen
			}
		}
	}
	if carrying {
		visit(carry)
	}
	return seen
}
