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
// runs. What the records mean is for package job to check. A reply
// channel (AcceptReply) must be a connected AF_UNIX SOCK_SEQPACKET socket.
//
// # Two sockets, not one
//
// A socket in an epoll set is woken each time its peer reads a record it
// sent: the kernel frees the record and tells the sender's waiters that it
// can write again (unix_write_space), and the runtime's poller registers
// every socket for writability as well. Over one socketpair, both sides of
// every job and its answer pay that: the reader for the wake-up, the
// sender for a spurious return from epoll_wait. Parent and AcceptReply
// split a channel in two: each side receives on a socket in its poller
// that it never writes to, and sends on one that is in no epoll set with
// a plain blocking sendmsg (records are small and the peer holds at most
// a few, so it does not block).
package seqpacket

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
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
	c     *net.UnixConn
	w     *os.File // split channel: the blocking socket Send writes to (nil once closed)
	wfd   int
	split bool
	wmu   sync.Mutex
	rmu   sync.Mutex
	buf   []byte // reused by Recv, which returns a copy of each packet
	oob   []byte
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
	return &Conn{c: uc, wfd: -1}, nil
}

// replyRecord announces the reply socket of a split channel.
const replyRecord = "lda-reply 1"

// sendTimeout bounds a Parent's blocking send: the peer reads its jobs one
// at a time and holds at most one, so only a peer that stopped reading
// with its queue full could make it wait.
const sendTimeout = 10 * time.Second

// Parent takes f over (one end of a Pair, or a socket passed on from
// one) as the sending side of a split channel: it makes a second pair,
// sends its peer's end over f in a reply record, and from then on sends on
// f (a blocking socket in no epoll set) and receives on the second pair.
// The peer calls AcceptReply before it sends anything. Records already
// queued on f (a bind record) stay ahead of the reply record.
func Parent(f *os.File) (*Conn, error) {
	wfd := int(f.Fd())
	if err := unix.SetNonblock(wfd, false); err != nil {
		f.Close()
		return nil, err
	}
	tv := unix.NsecToTimeval(sendTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(wfd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		f.Close()
		return nil, err
	}
	mine, theirs, err := Pair()
	if err != nil {
		f.Close()
		return nil, err
	}
	err = unix.Sendmsg(wfd, []byte(replyRecord), unix.UnixRights(int(theirs.Fd())), nil, unix.MSG_NOSIGNAL)
	theirs.Close()
	if err != nil {
		mine.Close()
		f.Close()
		return nil, fmt.Errorf("seqpacket: reply record: %w", err)
	}
	c, err := New(mine)
	if err != nil {
		f.Close()
		return nil, err
	}
	c.w, c.wfd, c.split = f, wfd, true
	return c, nil
}

// AcceptReply reads the next record, which must be a Parent's reply
// record with its socket, and sends on that socket from then on.
func (c *Conn) AcceptReply() error {
	if c.split {
		return errors.New("seqpacket: the channel is already split")
	}
	msg, f, err := c.Recv()
	if err != nil {
		return err
	}
	if string(msg) != replyRecord || f == nil {
		if f != nil {
			f.Close()
		}
		return errors.New("seqpacket: expected a reply record with its socket")
	}
	fd := int(f.Fd())
	typ, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	dom, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	_, err3 := unix.Getpeername(fd)
	if err1 != nil || err2 != nil || err3 != nil || typ != unix.SOCK_SEQPACKET || dom != unix.AF_UNIX {
		f.Close()
		return errors.New("seqpacket: the reply record's descriptor is not a connected Unix SOCK_SEQPACKET socket")
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		f.Close()
		return err
	}
	c.wmu.Lock()
	c.w, c.wfd, c.split = f, fd, true
	c.wmu.Unlock()
	return nil
}

// Unread reports, after the first Recv for a record sent failed with err
// (or saw io.EOF), whether the peer ended without reading it: its end was
// closed with records still queued. On a split channel the kernel says so
// on the sending socket once the peer's end is released, which it waits
// for (at most a second).
func (c *Conn) Unread(err error) bool {
	if errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.w == nil {
		return false
	}
	pfd := []unix.PollFd{{Fd: int32(c.wfd), Events: unix.POLLRDHUP}}
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		n, perr := unix.Poll(pfd, int(time.Until(deadline).Milliseconds())+1)
		if perr == unix.EINTR {
			continue
		}
		if perr != nil || n > 0 {
			break
		}
	}
	v, gerr := unix.GetsockoptInt(c.wfd, unix.SOL_SOCKET, unix.SO_ERROR)
	runtime.KeepAlive(c.w)
	return gerr == nil && v == int(unix.ECONNRESET)
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
	var err error
	if c.split {
		if c.w == nil {
			return net.ErrClosed
		}
		err = unix.Sendmsg(c.wfd, msg, oob, nil, unix.MSG_NOSIGNAL)
		runtime.KeepAlive(c.w)
	} else {
		_, _, err = c.c.WriteMsgUnix(msg, oob, nil)
	}
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

// Close closes this end (both sockets of a split channel); the peer's
// Recv then returns io.EOF.
func (c *Conn) Close() error {
	err := c.c.Close()
	c.wmu.Lock()
	if c.w != nil {
		c.w.Close()
		c.w, c.wfd = nil, -1
	}
	c.wmu.Unlock()
	return err
}
