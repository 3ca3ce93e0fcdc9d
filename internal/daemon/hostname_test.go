package daemon

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestHostName: the name in the greeting and the Received lines is the
// configured one, else the system's if it is a domain name, else
// localhost with a warning: a system name that cannot go into a header
// line must not make every recipient fail.
func TestHostName(t *testing.T) {
	defer func(f func() (string, error)) { osHostname = f }(osHostname)
	for _, tc := range []struct {
		name, configured, system string
		err                      error
		want                     string
		warns                    bool
	}{
		{"configured", "mx.example.org", "other.example", nil, "mx.example.org", false},
		{"the system's", "", "host1.example.net", nil, "host1.example.net", false},
		{"the system's, one label", "", "mailhost", nil, "mailhost", false},
		{"system name with NEL", "", "bad\u0085host", nil, "localhost", true},
		{"system name not UTF-8", "", "bad\xffhost", nil, "localhost", true},
		{"system name with CR LF", "", "a\r\n250 ok", nil, "localhost", true},
		{"system name with a space", "", "a b", nil, "localhost", true},
		{"empty system name", "", "", nil, "localhost", true},
		{"no system name", "", "", errors.New("uname failed"), "localhost", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			osHostname = func() (string, error) { return tc.system, tc.err }
			var buf bytes.Buffer
			got := hostName(&Config{Hostname: tc.configured}, slog.New(slog.NewTextHandler(&buf, nil)))
			if got != tc.want {
				t.Fatalf("hostName = %q, want %q", got, tc.want)
			}
			if warned := strings.Contains(buf.String(), "level=WARN"); warned != tc.warns {
				t.Fatalf("warning logged %v, want %v: %q", warned, tc.warns, buf.String())
			}
		})
	}
}
