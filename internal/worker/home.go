package worker

import (
	"errors"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Every job looks in the user's home for the per-user files: the policy
// file (policy.System.UserFile, ~/.lda.yaml) and the Sieve scripts
// (UserScripts). Most users have none of them, so a warm worker paid
// three failed opens per delivery to learn what it learned the job
// before. homeCache remembers that none of them was there, for as long as
// the home directory provably has not changed since; a job then stats the
// home instead of opening three names in it.
//
// "Provably" is the identity a stat of the home gives, as fileCache uses
// it: device, inode, size, modification and change times. Every name
// created in a directory (open with O_CREAT, link, rename, symlink, mkdir,
// mknod) changes both times, the change time cannot be set by the
// directory's owner, and another directory cannot take the same device and
// inode while the path still leads to this one.
//
// The racy case is a name created in the same tick of the file system's
// clock as the change before it: the times stay as they were. So what a
// job finds is remembered only if this worker first saw the home with
// these very times at least homeSettle before (by its own clock, so a
// file server's clock that is behind or ahead changes nothing): any name
// created after that job's lookups is then at least homeSettle after the
// last change, in a later tick. homeSettle is 100 ms where the times show
// sub-millisecond digits (the kernel's own clock, whose tick is at most
// 10 ms), and fileCache's settle (3 s) where they do not (one- and
// two-second granularities).
//
// Remembered is only "no entry by these names": a script name that is a
// dangling symlink fails to open with ENOENT too, but its target can
// appear without the home changing, so such a job remembers nothing. A
// policy file name with a "/" (a file in a subdirectory of the home, which
// the home's times do not cover) turns the cache off.
var homeCache struct {
	mu        sync.Mutex
	path      string
	userFile  string
	id        fileID
	firstSeen time.Time // when this worker first saw the home as id
	valid     bool      // a job's lookups found none of the files
}

// homeSettle is how long the home must have been seen unchanged before
// what a job finds in it is remembered.
func homeSettle(id fileID) time.Duration {
	if id.ctime.Nsec%1e6 != 0 && id.mtime.Nsec%1e6 != 0 {
		return 100 * time.Millisecond
	}
	return settle
}

// homeProbe is what one job knows of the user's home: whether the cache
// says that none of the per-user files exists (absent), and what the job's
// own lookups found, to be remembered by record.
type homeProbe struct {
	path, userFile string
	id             fileID
	settled        bool // seen unchanged for homeSettle before this job
	absent         bool // the cache: none exists; skip the lookups
	// What this job's own lookups found: for the policy file and for the
	// user scripts, looked for and, if so, no entry.
	policyLooked, noPolicy   bool
	scriptsLooked, noScripts bool
	dir                      bool // the stat at the job's start found the home a directory (id)
}

// seenDir returns what this job's probe found at path, a directory, if
// path is the home it stat'ed; else nil.
func (hp *homeProbe) seenDir(path string) *fileID {
	if hp == nil || !hp.dir || hp.path != path {
		return nil
	}
	return &hp.id
}

// probeHome stats home and consults the cache. A nil probe (the tests')
// and one that could not stat the home make every lookup as before, and
// remember nothing.
func probeHome(home, userFile string) *homeProbe {
	hp := &homeProbe{path: home, userFile: userFile}
	if strings.Contains(userFile, "/") || home == "" {
		return hp
	}
	var st unix.Stat_t
	if unix.Stat(home, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return hp
	}
	hp.dir = true
	now := cacheClock()
	hp.id = idOf(&st)
	homeCache.mu.Lock()
	defer homeCache.mu.Unlock()
	c := &homeCache
	if c.path != home || c.userFile != userFile || c.id != hp.id {
		c.path, c.userFile, c.id, c.firstSeen, c.valid = home, userFile, hp.id, now, false
	}
	hp.absent = c.valid
	hp.settled = now.Sub(c.firstSeen) >= homeSettle(hp.id)
	return hp
}

// skip reports whether the lookups can be skipped: the cache says that
// none of the files exists.
func (hp *homeProbe) skip() bool { return hp != nil && hp.absent }

// recording reports whether what this job finds can be remembered.
func (hp *homeProbe) recording() bool { return hp != nil && hp.settled && !hp.absent }

// noEntry reports whether err, from opening name in the home following
// symlinks, means that no entry of that name exists (not a dangling
// symlink).
func noEntry(home, name string, err error) bool {
	if !errors.Is(err, unix.ENOENT) {
		return false
	}
	var st unix.Stat_t
	return errors.Is(unix.Lstat(home+"/"+name, &st), unix.ENOENT)
}

// record remembers that the home holds none of the per-user files, if
// this job looked for each of them and found no entry, and the home had
// been seen unchanged for homeSettle before. A job that found one forgets
// what was remembered.
func (hp *homeProbe) record() {
	if hp == nil || hp.absent || hp.path == "" {
		return
	}
	found := hp.policyLooked && !hp.noPolicy || hp.scriptsLooked && !hp.noScripts
	homeCache.mu.Lock()
	defer homeCache.mu.Unlock()
	c := &homeCache
	if c.path != hp.path || c.userFile != hp.userFile || c.id != hp.id {
		return // another job's view since (one job at a time: not seen)
	}
	switch {
	case hp.policyLooked && hp.noPolicy && hp.scriptsLooked && hp.noScripts && hp.settled:
		c.valid = true
	case found:
		c.valid = false
	}
}
