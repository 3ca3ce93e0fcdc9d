package daemon

import (
	"os"

	"lda/internal/seqpacket"
)

// channel is one end of the SOCK_SEQPACKET socketpair between the root
// parent and the listener (package seqpacket): one record per packet, at
// most one descriptor attached.
type channel struct{ c *seqpacket.Conn }

func socketPair() (*os.File, *os.File, error) { return seqpacket.Pair() }

// newChannel takes f over.
func newChannel(f *os.File) (*channel, error) {
	c, err := seqpacket.New(f)
	if err != nil {
		return nil, err
	}
	return &channel{c: c}, nil
}

func (c *channel) send(msg []byte, file *os.File) error { return c.c.Send(msg, file) }

// recv returns one packet and the descriptor that came with it, if any.
func (c *channel) recv() ([]byte, *os.File, error) { return c.c.Recv() }

func (c *channel) close() error { return c.c.Close() }
