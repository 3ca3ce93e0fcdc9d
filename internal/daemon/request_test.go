package daemon

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"lda/internal/job"
	"lda/internal/testutil"
)

// TestRequestWithoutReply: a request root never answers fails with 451
// 4.3.0 after the wait (two delivery timeouts and a margin) instead of
// holding the session for ever, and is logged.
func TestRequestWithoutReply(t *testing.T) {
	old := replyMargin
	replyMargin = 50 * time.Millisecond
	t.Cleanup(func() { replyMargin = old })
	l, root, log, done := requestToRoot(t, 10*time.Millisecond, false)
	defer root.close()
	// Root has read the request and says nothing.
	var rep *job.Reply
	select {
	case rep = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the request still waits for root")
	}
	if rep.Status.Code != 451 || rep.Status.Enhanced != "4.3.0" {
		t.Fatalf("reply %d %s, want 451 4.3.0", rep.Status.Code, rep.Status.Enhanced)
	}
	if !strings.Contains(log.String(), "no reply from root") {
		t.Fatalf("not logged:\n%s", log.String())
	}
	l.mu.Lock()
	n := len(l.waiting)
	l.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d requests still waiting", n)
	}
}

// TestBrokenControlChannel: when root goes away, a waiting request gets
// 451 4.3.0 to send to its client, and only then does the listener exit.
func TestBrokenControlChannel(t *testing.T) {
	exited := make(chan struct{})
	old := brokenChannelExit
	brokenChannelExit = func() { close(exited) }
	t.Cleanup(func() { brokenChannelExit = old })
	_, root, log, done := requestToRoot(t, time.Minute, true)
	root.close() // root goes away holding the request
	select {
	case rep := <-done:
		if rep.Status.Code != 451 || rep.Status.Enhanced != "4.3.0" {
			t.Fatalf("reply %d %s, want 451 4.3.0", rep.Status.Code, rep.Status.Enhanced)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiting request got no reply")
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the listener did not go on to exit")
	}
	if !strings.Contains(log.String(), "control channel broken") {
		t.Fatalf("not logged:\n%s", log.String())
	}
}

// requestToRoot starts a listener on one end of a control channel and one
// delivery request from it, and reads that request as root would. It
// returns the listener, root's end, the listener's log and where the
// request's reply will arrive.
func requestToRoot(t *testing.T, deliveryTime time.Duration, routeReplies bool) (*Listener, *channel, *testutil.SyncBuffer, chan *job.Reply) {
	t.Helper()
	mine, root := channelPair(t)
	t.Cleanup(func() { mine.close() })
	log := &testutil.SyncBuffer{}
	l := &Listener{cfg: &Config{DeliveryTime: deliveryTime}, ctl: mine, waiting: map[uint64]chan reply{},
		log: slog.New(slog.NewTextHandler(log, nil))}
	if routeReplies {
		go l.readReplies()
	}
	done := make(chan *job.Reply, 1)
	go func() {
		rep, _ := l.request(&job.Request{Op: job.ModeDeliver, User: "bob", Kind: job.KindDefault}, nil)
		done <- rep
	}()
	if _, _, err := root.recv(); err != nil {
		t.Fatal(err)
	}
	return l, root, log, done
}
