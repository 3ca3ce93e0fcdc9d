package worker

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A warm worker serves one user's jobs one after another, and for a user
// with a Sieve script every message used to cost two parses of it (one for
// the RCPT-time envelope job, one after DATA) and, with a policy file of
// their own, two YAML parses of that. fileCache keeps what was parsed from
// a file for as long as the file is provably the one it was parsed from,
// so an edit still reaches the next job, as it did when every job parsed
// afresh (lda(8), "a policy change reaches the next delivery").
//
// "Provably" is the identity fstat gives of the descriptor that was read:
// device, inode, size, modification and change times. The change time
// cannot be set by the file's owner, and any write or rename moves it. One
// hole is left by time itself: a file system stamps times from the
// kernel's coarse clock, which lags the real one by up to a jiffy, in its
// own granularity (a second on ext3, on ext4 with small inodes and on some
// NFS servers); so a write just after the read could leave the times as
// they were. A file changed less than settle before it was read is
// therefore parsed but not kept (git's "racily clean" rule), and the next
// job parses it again. On a network file system whose server's clock is
// behind ours by more than settle the rule is weaker; the worst that can
// happen is that the user's own file is read stale until it changes again.
//
// K is what else a parse depended on (the system policy and the user, for
// a user's policy file); it is compared along with the file's identity.
type fileCache[K comparable, V any] struct {
	mu sync.Mutex
	m  map[string]cached[K, V]
}

type cached[K comparable, V any] struct {
	id  fileID
	key K
	v   V
}

type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

const (
	// settle is how long a file must have been left alone before its
	// parse is kept: a one-second timestamp granularity, plus the coarse
	// clock's lag, plus a margin.
	settle = 3 * time.Second
	// maxCached bounds a cache. A worker reads at most three scripts per
	// job (the system's two and the user's) and one policy file, each kind
	// in its own cache; a full cache is emptied, never grown.
	maxCached = 8
)

// cacheClock says when a file is read (a variable for tests).
var cacheClock = time.Now

func idOf(st *unix.Stat_t) fileID {
	return fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// get returns what was kept for path, if st (of the descriptor just
// opened) is still the same file and key is the same.
func (c *fileCache[K, V]) get(path string, st *unix.Stat_t, key K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[path]
	if !ok || e.id != idOf(st) || e.key != key {
		var zero V
		return zero, false
	}
	return e.v, true
}

// put keeps v, parsed from the descriptor st describes, which was read at
// readAt or later, unless the file had changed too shortly before.
func (c *fileCache[K, V]) put(path string, st *unix.Stat_t, readAt time.Time, key K, v V) {
	limit := readAt.Add(-settle)
	if !time.Unix(st.Ctim.Unix()).Before(limit) || !time.Unix(st.Mtim.Unix()).Before(limit) {
		c.forget(path)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCached {
		c.m = map[string]cached[K, V]{}
	}
	c.m[path] = cached[K, V]{id: idOf(st), key: key, v: v}
}

// forget drops what was kept for path.
func (c *fileCache[K, V]) forget(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, path)
}
