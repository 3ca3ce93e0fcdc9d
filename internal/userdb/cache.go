package userdb

import (
	"bufio"
	"errors"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// A parsed user file is kept until the file changes: every lookup stats
// the file (a few microseconds) and parses it again only when its device,
// inode, size, mtime or ctime differ. A lookup therefore always sees the
// file as it is now, as it did when it read the file every time.
var cache = struct {
	sync.Mutex
	files map[string]*parsedFile
}{files: map[string]*parsedFile{}}

type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64
}

type parsedFile struct {
	stamp fileStamp
	users map[string]*User
	err   error
}

// users returns the users of path, parsed by parse, from the cache when
// the file has not changed since.
func users(path string, parse func(io.Reader, string) (map[string]*User, error)) (map[string]*User, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	stamp := fileStamp{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
	cache.Lock()
	pf := cache.files[path]
	cache.Unlock()
	if pf != nil && pf.stamp == stamp {
		return pf.users, pf.err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Stamp what was opened, so that a change between the stat and the
	// open is seen by the next lookup.
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	stamp = fileStamp{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
	m, err := parse(f, path)
	cache.Lock()
	cache.files[path] = &parsedFile{stamp: stamp, users: m, err: err}
	cache.Unlock()
	return m, err
}

// parsePasswd reads passwd(5) into a map by name; the first line of a
// name wins, as in a linear search.
func parsePasswd(r io.Reader, _ string) (map[string]*User, error) {
	m := map[string]*User{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		u, err := ParsePasswdLine(sc.Text())
		var bad *BadEntryError
		if errors.As(err, &bad) {
			u, err = &User{Name: bad.Name, bad: bad.Reason}, nil
		}
		if err != nil {
			continue // comments, NIS "+" lines and garbage are not users
		}
		if m[u.Name] == nil {
			m[u.Name] = u
		}
	}
	return m, sc.Err()
}

// copyOf returns a copy the caller may change.
func copyOf(u *User) *User {
	c := *u
	return &c
}
