// Package seqpacket is the record channel between lda's processes: one end
// of an AF_UNIX SOCK_SEQPACKET socketpair. Every packet is one record
// (package job) with at most one descriptor attached. Packet boundaries
// mean no framing can be confused; a packet that was truncated, or that
// carries more than one descriptor, is refused.
//
// # Security
//
// It trusts nothing it receives: the size of a packet is bounded by
// MaxPacket, truncation (MSG_TRUNC, MSG_CTRUNC) is an error, and every
// descriptor received is close-on-exec (the net package passes
// MSG_CMSG_CLOEXEC on Linux), so none can leak into a program the receiver
// runs. What the records mean is for package job to check.
package seqpacket

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// MaxPacket bounds one record.
const MaxPacket = 64 << 10

// ErrPacket is returned for a packet that was truncated or carried more
// than one descriptor.
var ErrPacket = errors.New("seqpacket: truncated packet or more than one descriptor")

// Pair returns a connected socketpair, both ends close-on-exec.
func Pair() (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "seqpacket"), os.NewFile(uintptr(fds[1]), "seqpacket"), nil
}

// Conn is one end of a pair. Send may be called from several goroutines;
// Recv from one at a time.
type Conn struct {
	c   *net.UnixConn
	wmu sync.Mutex
	rmu sync.Mutex
	buf []byte // reused by Recv, which returns a copy of each packet
	oob []byte
}

// New takes f over (f is closed; the Conn owns a duplicate that uses the
// runtime's poller, so deadlines work and no thread blocks).
func New(f *os.File) (*Conn, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("seqpacket: %T is not a Unix socket", c)
	}
	return &Conn{c: uc}, nil
}

// Send writes one packet, with file attached if it is not nil.
func (c *Conn) Send(msg []byte, file *os.File) error {
	if len(msg) > MaxPacket {
		return fmt.Errorf("seqpacket: packet of %d bytes exceeds %d", len(msg), MaxPacket)
	}
	var oob []byte
	if file != nil {
		oob = unix.UnixRights(int(file.Fd()))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, _, err := c.c.WriteMsgUnix(msg, oob, nil)
	runtime.KeepAlive(file) // its descriptor must stay open until sent
	return err
}

// Recv returns one packet and the descriptor that came with it, if any.
// A closed peer is io.EOF.
func (c *Conn) Recv() ([]byte, *os.File, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.buf == nil {
		c.buf, c.oob = make([]byte, MaxPacket), make([]byte, unix.CmsgSpace(4*4))
	}
	buf, oob := c.buf, c.oob
	n, oobn, flags, _, err := c.c.ReadMsgUnix(buf, oob)
	var files []*os.File
	if oobn > 0 {
		if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				fds, err := unix.ParseUnixRights(&m)
				if err != nil {
					continue
				}
				for _, fd := range fds {
					files = append(files, os.NewFile(uintptr(fd), "passed"))
				}
			}
		}
	}
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	if n == 0 && oobn == 0 {
		return nil, nil, io.EOF
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || len(files) > 1 {
		closeAll()
		return nil, nil, ErrPacket
	}
	var f *os.File
	if len(files) == 1 {
		f = files[0]
	}
	return append([]byte(nil), buf[:n]...), f, nil
}

// SetReadDeadline bounds the next Recv.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// Close closes this end; the peer's Recv then returns io.EOF.
func (c *Conn) Close() error { return c.c.Close() }
