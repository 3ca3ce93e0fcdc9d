package spawn

import (
	"golang.org/x/sys/unix"
)

// closeRangeCloexec is CLOSE_RANGE_CLOEXEC from <linux/close_range.h>
// (Linux 5.11); x/sys does not name it.
const closeRangeCloexec = 1 << 2

// SealDescriptors marks every descriptor from first upwards close-on-exec.
// Go opens its own descriptors close-on-exec, but it passes on whatever
// the process itself inherited without the flag (from an MTA, a shell or
// a service manager); lda calls this first thing, so that a worker gets
// only the descriptors spawn hands it. It falls back to fcntl per
// descriptor on kernels without close_range.
func SealDescriptors(first int) {
	if unix.CloseRange(uint(first), ^uint(0), closeRangeCloexec) == nil {
		return
	}
	var rl unix.Rlimit
	max := 1024
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur < 1<<20 {
		max = int(rl.Cur)
	}
	for fd := first; fd < max; fd++ {
		unix.CloseOnExec(fd)
	}
}
