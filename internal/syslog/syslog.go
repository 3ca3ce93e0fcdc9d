// Package syslog writes log records to the local syslog socket.
//
// It exists so that lda need not import log/syslog: that package imports
// net, which links cgo whenever CGO_ENABLED=1, and in a cgo binary
// syscall.AllThreadsSyscall (the worker's PR_SET_NO_NEW_PRIVS on all
// threads) returns ENOTSUP. A test keeps cgo out of cmd/lda.
package syslog

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Writer sends each Write as one RFC 3164 datagram to /dev/log.
type Writer struct {
	mu       sync.Mutex
	fd       int
	priority int
	tag      string
}

// FacilityMail and the severities lda uses.
const (
	FacilityMail = 2 << 3
	SevInfo      = 6
)

// Dial connects to /dev/log.
func Dial(priority int, tag string) (*Writer, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: "/dev/log"}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Writer{fd: fd, priority: priority, tag: tag}, nil
}

// Write sends p (one record, trailing newline removed) as one message.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 && p[len(p)-1] == '\n' {
		p = p[:len(p)-1]
	}
	msg := fmt.Sprintf("<%d>%s %s[%d]: %s", w.priority, time.Now().Format(time.Stamp), w.tag, os.Getpid(), p)
	if err := unix.Send(w.fd, []byte(msg), 0); err != nil {
		return 0, err
	}
	return n, nil
}
