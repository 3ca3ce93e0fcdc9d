package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// channel is one end of the SOCK_SEQPACKET socketpair between the root
// parent and the listener. Every packet is one record (package job), with
// at most one descriptor attached; packet boundaries mean no framing can be
// confused, and a packet that was truncated is refused.
type channel struct {
	f   *os.File
	fd  int
	wmu sync.Mutex
}

const maxPacket = 64 << 10

func socketPair() (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "control"), os.NewFile(uintptr(fds[1]), "control"), nil
}

func newChannel(f *os.File) *channel {
	return &channel{f: f, fd: int(f.Fd())} // Fd() leaves it in blocking mode
}

func (c *channel) send(msg []byte, file *os.File) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var oob []byte
	if file != nil {
		oob = unix.UnixRights(int(file.Fd()))
	}
	err := unix.Sendmsg(c.fd, msg, oob, nil, 0)
	runtime.KeepAlive(file)
	return err
}

// recv returns one packet and the descriptor that came with it, if any.
func (c *channel) recv() ([]byte, *os.File, error) {
	buf := make([]byte, maxPacket)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(c.fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		var files []*os.File
		if oobn > 0 {
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err == nil {
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
		if n == 0 && oobn == 0 {
			return nil, nil, io.EOF
		}
		if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || len(files) > 1 {
			for _, f := range files {
				f.Close()
			}
			return nil, nil, fmt.Errorf("control: truncated packet or more than one descriptor")
		}
		var f *os.File
		if len(files) == 1 {
			f = files[0]
		}
		return buf[:n], f, nil
	}
}

func (c *channel) close() error { return c.f.Close() }
