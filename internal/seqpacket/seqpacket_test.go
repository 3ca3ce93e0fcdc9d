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
// root parent and a warm worker.
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
	go func() {
		for {
			msg, _, err := cc.Recv()
			if err != nil {
				return
			}
			cc.Send(msg, nil)
		}
	}()
	rec := bytes.Repeat([]byte("x"), 400)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := ca.Send(rec, nil); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ca.Recv(); err != nil {
			b.Fatal(err)
		}
	}
}
