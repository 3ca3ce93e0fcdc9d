package maildir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// maxNameLen bounds the maildir path given to Deliver (PATH_MAX is 4096
// including the terminating NUL).
const maxNameLen = 4095

// maxHostLen bounds the escaped host part of a unique name, so that the
// whole file name ("<sec>.M<usec>P<pid>Q<n>R<16 hex>.<host>,S=<size>:2,FLAGS")
// always fits in NAME_MAX (255) bytes.
const maxHostLen = 128

var (
	pid      = strconv.Itoa(os.Getpid())
	counter  atomic.Uint64
	hostname = sync.OnceValue(func() string {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return "localhost"
		}
		return h
	})
)

// validName checks the maildir path lexically, before any system call: it
// must be relative and clean (no "//", "/./", trailing "/"), contain no ".."
// component, no NUL or other control character, and be valid UTF-8. The
// single name "." means dir itself.
func validName(name string) error {
	switch {
	case name == "":
		return errors.New("maildir: empty maildir name")
	case len(name) > maxNameLen:
		return errors.New("maildir: maildir name too long")
	case !utf8.ValidString(name):
		return errors.New("maildir: maildir name is not valid UTF-8")
	case name[0] == '/':
		return fmt.Errorf("maildir: maildir name %q is absolute", name)
	}
	for _, r := range name {
		if isControl(r) {
			return fmt.Errorf("maildir: maildir name %q contains a control character", name)
		}
	}
	if path.Clean(name) != name {
		return fmt.Errorf("maildir: maildir name %q is not clean", name)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return fmt.Errorf("maildir: maildir name %q contains \"..\"", name)
		}
	}
	return nil
}

// isControl reports C0 and C1 control characters and DEL.
func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f)
}

// escapeHost returns h (os.Hostname() when empty) as it appears in unique
// names: "/" and ":" are written as \057 and \072 (as qmail and Dovecot do),
// and so are "," (which starts the ",S=" field), "\" (which starts an
// escape) and control bytes, as a backslash and three octal digits.
func escapeHost(h string) (string, error) {
	if h == "" {
		h = hostname()
	}
	var b strings.Builder
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '/' || c == ':' || c == ',' || c == '\\' || c < 0x20 || c == 0x7f:
			b.WriteByte('\\')
			b.WriteByte('0' + c>>6)
			b.WriteByte('0' + (c>>3)&7)
			b.WriteByte('0' + c&7)
		default:
			b.WriteByte(c)
		}
	}
	if b.Len() > maxHostLen {
		return "", fmt.Errorf("maildir: host name longer than %d bytes", maxHostLen)
	}
	return b.String(), nil
}

// uniqueName returns "<unix seconds>.M<microseconds>P<pid>Q<counter>R<16 hex
// random>.<host>". The counter makes names unique within this process, the
// pid and time across processes on this host, the host across hosts, and the
// 64 random bits cover pid reuse, clock steps and a reused Now.
func uniqueName(t time.Time, host string) string {
	var r [8]byte
	rand.Read(r[:]) // never fails (crypto/rand, Go >= 1.24)
	b := make([]byte, 0, 72+len(host))
	b = strconv.AppendInt(b, t.Unix(), 10)
	b = append(b, ".M"...)
	b = strconv.AppendInt(b, int64(t.Nanosecond()/1000), 10)
	b = append(b, 'P')
	b = append(b, pid...)
	b = append(b, 'Q')
	b = strconv.AppendUint(b, counter.Add(1), 10)
	b = append(b, 'R')
	b = hex.AppendEncode(b, r[:])
	b = append(b, '.')
	b = append(b, host...)
	return string(b)
}

// finalName is the name in new/ (flags == "") or cur/ (":2,FLAGS").
func finalName(uniq string, size int64, flags string, cur bool) string {
	s := uniq + ",S=" + strconv.FormatInt(size, 10)
	if cur {
		s += ":2," + flags
	}
	return s
}

// ParseFlags validates s as maildir info flag letters (a subset of
// "DFPRST" in any order; duplicates are merged) and returns them sorted in
// ASCII order, as the Maildir specification requires.
func ParseFlags(s string) (string, error) {
	const all = "DFPRST"
	var seen [len(all)]bool
	for i := 0; i < len(s); i++ {
		j := strings.IndexByte(all, s[i])
		if j < 0 {
			return "", fmt.Errorf("maildir: invalid flag %q", s[i])
		}
		seen[j] = true
	}
	b := make([]byte, 0, len(all))
	for j := range seen {
		if seen[j] {
			b = append(b, all[j])
		}
	}
	return string(b), nil
}
