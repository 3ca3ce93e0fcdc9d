package daemon

import (
	"fmt"
	"testing"
	"time"

	"lda/internal/job"
	"lda/internal/status"
)

// TestLearnRcpt: what jobs say about RCPT-time evaluation, and when the
// listener skips it.
func TestLearnRcpt(t *testing.T) {
	skip := &job.Reply{Status: status.Delivered, SkipRcpt: true}
	able := &job.Reply{Status: status.Delivered}
	failed := &job.Reply{Status: status.Unknown, SkipRcpt: true}
	now := time.Now()
	before := now.Add(-time.Second)
	for _, tc := range []struct {
		name  string
		learn func(l *Listener)
		skip  bool
	}{
		{"nothing known", func(l *Listener) {}, false},
		{"a job could not decide", func(l *Listener) { l.learnRcpt("u", skip, now) }, true},
		{"then one could", func(l *Listener) { l.learnRcpt("u", skip, now); l.learnRcpt("u", able, now) }, false},
		{"a failed job says nothing", func(l *Listener) { l.learnRcpt("u", failed, now) }, false},
		{"a job started before the last that could decide says nothing", func(l *Listener) {
			l.learnRcpt("u", able, now)
			l.learnRcpt("u", skip, before) // the old script, held up on a lock
		}, false},
		{"a job started after it does", func(l *Listener) {
			l.learnRcpt("u", able, before)
			l.learnRcpt("u", skip, time.Now())
		}, true},
		{"another user's", func(l *Listener) { l.learnRcpt("v", skip, now) }, false},
		{"expired", func(l *Listener) { l.skipRcpt["u"] = rcptSeen{skip: time.Now().Add(-skipRcptTTL)} }, false},
		{"a job started before the map was emptied says nothing", func(l *Listener) {
			l.learnRcpt("u", able, now)
			for i := range 10000 {
				l.learnRcpt(fmt.Sprintf("x%d", i), skip, now)
			}
			if len(l.skipRcpt) > 10000 {
				t.Fatalf("%d entries, the bound is 10000", len(l.skipRcpt))
			}
			l.learnRcpt("u", skip, before)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &Listener{skipRcpt: map[string]rcptSeen{}}
			tc.learn(l)
			if got := l.rcptUndecidable("u"); got != tc.skip {
				t.Fatalf("skip RCPT-time evaluation: %v, want %v", got, tc.skip)
			}
		})
	}
}
