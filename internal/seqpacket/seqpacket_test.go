package seqpacket

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func pair(t *testing.T) (*Conn, *Conn, int) {
	t.Helper()
	a, b, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	// A raw duplicate of a's descriptor, to send what Send would refuse.
	raw, err := unix.Dup(int(a.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	// Closed by the last subtest, so that the peer sees EOF.
	ca, err := New(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := New(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb, raw
}

func TestConn(t *testing.T) {
	ca, cb, raw := pair(t)
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("payload")

	t.Run("record with a descriptor", func(t *testing.T) {
		if err := ca.Send([]byte("one"), f); err != nil {
			t.Fatal(err)
		}
		msg, g, err := cb.Recv()
		if err != nil || string(msg) != "one" || g == nil {
			t.Fatalf("got %q %v %v", msg, g, err)
		}
		defer g.Close()
		fl, err := unix.FcntlInt(g.Fd(), unix.F_GETFD, 0)
		if err != nil || fl&unix.FD_CLOEXEC == 0 {
			t.Fatalf("received descriptor is not close-on-exec (%#x, %v)", fl, err)
		}
		b := make([]byte, 7)
		if _, err := g.ReadAt(b, 0); err != nil || string(b) != "payload" {
			t.Fatalf("descriptor reads %q, %v", b, err)
		}
	})
	t.Run("records do not share memory", func(t *testing.T) {
		ca.Send([]byte("first"), nil)
		ca.Send([]byte("second"), nil)
		m1, _, _ := cb.Recv()
		m2, _, _ := cb.Recv()
		if string(m1) != "first" || string(m2) != "second" {
			t.Fatalf("got %q then %q", m1, m2)
		}
	})
	t.Run("oversized send refused", func(t *testing.T) {
		if err := ca.Send(bytes.Repeat([]byte("x"), MaxPacket+1), nil); err == nil {
			t.Fatal("oversized packet sent")
		}
	})
	t.Run("truncated packet refused", func(t *testing.T) {
		if err := unix.Sendmsg(raw, bytes.Repeat([]byte("x"), MaxPacket+100), nil, nil, 0); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cb.Recv(); !errors.Is(err, ErrPacket) {
			t.Fatalf("err = %v, want ErrPacket", err)
		}
	})
	t.Run("two descriptors refused and closed", func(t *testing.T) {
		if err := unix.Sendmsg(raw, []byte("two"), unix.UnixRights(int(f.Fd()), int(f.Fd())), nil, 0); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cb.Recv(); !errors.Is(err, ErrPacket) {
			t.Fatalf("err = %v, want ErrPacket", err)
		}
	})
	t.Run("closed peer is EOF", func(t *testing.T) {
		ca.Close()
		unix.Close(raw)
		if _, _, err := cb.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("err = %v, want EOF", err)
		}
	})
}

// BenchmarkRoundTrip is one record each way over a pair, as between the
// root parent and a warm worker before the channel was split.
func BenchmarkRoundTrip(b *testing.B) {
	a, c, err := Pair()
	if err != nil {
		b.Fatal(err)
	}
	ca, err := New(a)
	if err != nil {
		b.Fatal(err)
	}
	cc, err := New(c)
	if err != nil {
		b.Fatal(err)
	}
	defer ca.Close()
	defer cc.Close()
	roundTrips(b, ca, cc)
}

// roundTrips times b.N records sent by a and echoed back by c. Both ends
// are in this process, so it shares one poller: it shows the cost of a
// round trip, not the wake-ups between processes that splitting saves.
func roundTrips(b *testing.B, a, c *Conn) {
	go func() {
		for {
			msg, _, err := c.Recv()
			if err != nil {
				return
			}
			c.Send(msg, nil)
		}
	}()
	rec := bytes.Repeat([]byte("x"), 400)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := a.Send(rec, nil); err != nil {
			b.Fatal(err)
		}
		if _, _, err := a.Recv(); err != nil {
			b.Fatal(err)
		}
	}
}

// split returns the two ends of a split channel: the parent's, and the
// child's after AcceptReply.
func split(t testing.TB) (parent, child *Conn) {
	t.Helper()
	a, b, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	if parent, err = Parent(a); err != nil {
		t.Fatal(err)
	}
	if child, err = New(b); err != nil {
		t.Fatal(err)
	}
	if err := child.AcceptReply(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { parent.Close(); child.Close() })
	return parent, child
}

func TestSplit(t *testing.T) {
	parent, child := split(t)
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	t.Run("records both ways", func(t *testing.T) {
		if err := parent.Send([]byte("job"), f); err != nil {
			t.Fatal(err)
		}
		msg, g, err := child.Recv()
		if err != nil || string(msg) != "job" || g == nil {
			t.Fatalf("child got %q %v %v", msg, g, err)
		}
		g.Close()
		if err := child.Send([]byte("result"), nil); err != nil {
			t.Fatal(err)
		}
		if msg, _, err := parent.Recv(); err != nil || string(msg) != "result" {
			t.Fatalf("parent got %q %v", msg, err)
		}
	})
	t.Run("send sides are in no poller", func(t *testing.T) {
		// The runtime's poller needs O_NONBLOCK: a blocking socket
		// cannot be in its epoll set.
		for name, c := range map[string]*Conn{"parent": parent, "child": child} {
			fl, err := unix.FcntlInt(uintptr(c.wfd), unix.F_GETFL, 0)
			if err != nil || fl&unix.O_NONBLOCK != 0 {
				t.Errorf("%s's send socket: flags %#x, %v; want blocking", name, fl, err)
			}
		}
	})
	t.Run("second accept refused", func(t *testing.T) {
		if err := child.AcceptReply(); err == nil {
			t.Fatal("a split channel accepted another reply socket")
		}
	})
	t.Run("send after close refused", func(t *testing.T) {
		p, c := split(t)
		p.Close()
		if err := p.Send([]byte("late"), nil); err == nil {
			t.Fatal("send on a closed channel")
		}
		if _, _, err := c.Recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("child after the parent closed: %v, want EOF", err)
		}
	})
}

// TestUnread: a peer that ends with the job unread is told apart from one
// that read it and died, as the warm-worker pool needs to retry the
// first on a fresh worker and answer 4xx for the second.
func TestUnread(t *testing.T) {
	for _, c := range []struct {
		name string
		read bool
	}{{"ended without reading", false}, {"read, then ended", true}} {
		t.Run(c.name, func(t *testing.T) {
			parent, child := split(t)
			if err := parent.Send([]byte("job"), nil); err != nil {
				t.Fatal(err)
			}
			if c.read {
				if _, _, err := child.Recv(); err != nil {
					t.Fatal(err)
				}
			}
			child.Close()
			_, _, err := parent.Recv()
			if !errors.Is(err, io.EOF) {
				t.Fatalf("parent's Recv: %v, want EOF", err)
			}
			if got := parent.Unread(err); got == c.read {
				t.Fatalf("Unread = %v", got)
			}
		})
	}
}

func TestAcceptReplyRefuses(t *testing.T) {
	reg, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[0])
	defer unix.Close(sp[1])
	lone, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lone)
	for _, c := range []struct {
		name string
		msg  string
		fd   int // -1: none
	}{
		{"no descriptor", replyRecord, -1},
		{"another record", "lda-job 1\n", int(reg.Fd())},
		{"a regular file", replyRecord, int(reg.Fd())},
		{"a stream socket", replyRecord, sp[0]},
		{"an unconnected SOCK_SEQPACKET socket", replyRecord, lone},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b, err := Pair()
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			child, err := New(b)
			if err != nil {
				t.Fatal(err)
			}
			defer child.Close()
			var oob []byte
			if c.fd >= 0 {
				oob = unix.UnixRights(c.fd)
			}
			if err := unix.Sendmsg(int(a.Fd()), []byte(c.msg), oob, nil, 0); err != nil {
				t.Fatal(err)
			}
			if err := child.AcceptReply(); err == nil {
				t.Fatal("accepted")
			}
			if err := child.Send([]byte("x"), nil); err != nil {
				// Not split: it still sends on its own socket.
				t.Fatalf("send after a refused reply record: %v", err)
			}
			if msg, _, err := recvRaw(int(a.Fd())); err != nil || msg != "x" {
				t.Fatalf("peer got %q, %v", msg, err)
			}
		})
	}
}

func recvRaw(fd int) (string, int, error) {
	b := make([]byte, 100)
	n, _, _, _, err := unix.Recvmsg(fd, b, nil, 0)
	return string(b[:max(n, 0)]), n, err
}

// BenchmarkRoundTripSplit is BenchmarkRoundTrip over a split channel, as
// between the listener and a direct worker.
func BenchmarkRoundTripSplit(b *testing.B) {
	parent, child := split(b)
	roundTrips(b, parent, child)
}
