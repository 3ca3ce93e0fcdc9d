package daemon

import (
	"bytes"
	"io"
	"log/slog"
	"strconv"
	"testing"
)

// recipientAttrs is a recipient's log line as Data makes it for a direct
// worker's delivery.
func recipientAttrs() []slog.Attr {
	return []slog.Attr{slog.String("session", "4f2a"), slog.String("peer", "uid=0"),
		slog.String("sender", "bench@bench.test"), slog.String("recipient", "expu1@bench.test"),
		slog.String("user", "expu1"), slog.String("dest", "default:"), slog.String("status", "250 2.0.0"),
		slog.Int64("size", 1024), slog.Float64("duration_ms", 1.234), slog.String("actions", ""),
		slog.String("where", "maildir:/home/expu1/Maildir/new/1796592460.M574502P16913Q51R2747424e771d4421.vm,S=1201"),
		slog.String("rule", "/etc/lda/policy.yaml:4: allow maildir:~/Maildir")}
}

// BenchmarkRecipientLog is Reset writing one recipient's line through
// slog's text handler into io.Discard, as the daemon does after DATA.
func BenchmarkRecipientLog(b *testing.B) {
	l := &Listener{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	bk := &backend{l: l}
	attrs := recipientAttrs()
	b.ReportAllocs()
	for b.Loop() {
		bk.lines = []logLine{{slog.LevelInfo, attrs}}
		bk.Reset()
	}
}

// TestRecipientLog: Reset writes each kept line as the logger itself
// would, and none below the handler's level.
func TestRecipientLog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		min   slog.Level
		level slog.Level
		want  bool
	}{
		{"info", slog.LevelInfo, slog.LevelInfo, true},
		{"warn", slog.LevelInfo, slog.LevelWarn, true},
		{"below the level", slog.LevelError, slog.LevelWarn, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got, want bytes.Buffer
			opts := &slog.HandlerOptions{Level: tc.min}
			bk := &backend{l: &Listener{log: slog.New(slog.NewTextHandler(&got, opts))}}
			bk.lines = []logLine{{tc.level, recipientAttrs()}, {}}
			bk.Reset()
			slog.New(slog.NewTextHandler(&want, opts)).LogAttrs(t.Context(), tc.level, "recipient", recipientAttrs()...)
			// Both lines start with their own time; compare the rest.
			strip := func(b []byte) string {
				s := string(b)
				if _, rest, ok := bytes.Cut(b, []byte(" level=")); ok {
					s = "level=" + string(rest)
				}
				return s
			}
			if !tc.want {
				if got.Len() != 0 || want.Len() != 0 {
					t.Fatalf("logged below the level: %q", got.String())
				}
				return
			}
			if got.Len() == 0 || strip(got.Bytes()) != strip(want.Bytes()) {
				t.Fatalf("Reset wrote\n%q\nthe logger writes\n%q", got.String(), want.String())
			}
			if n := bytes.Count(got.Bytes(), []byte("\n")); n != 1 {
				t.Fatalf("%s lines for one kept line", strconv.Itoa(n))
			}
		})
	}
}
