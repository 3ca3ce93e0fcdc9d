package allowgen

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"lda/internal/aliases"
	"lda/policy"
)

// ownerRule says who may own a file that allowgen reads on someone's
// behalf.
type ownerRule struct {
	// uid may own the file; -1: anyone may (an :include: file of the
	// aliases file, whose owner then becomes the user its programs and
	// files run as).
	uid int
	// rootReadable: root may own the file too, if others may read it
	// (so that allowgen reads nothing for a user that the user could not
	// read).
	rootReadable bool
}

// refusal is an error that says why a file was not read.
type refusal struct{ msg string }

func (r *refusal) Error() string { return "refused: " + r.msg }

func refuse(format string, args ...any) error { return &refusal{fmt.Sprintf(format, args...)} }

// openErr turns an error of open/openat2 into a message.
func openErr(err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return refuse("a symbolic link (symlinks are not followed, in any component)")
	case errors.Is(err, unix.EXDEV):
		return refuse("the path leaves its directory")
	case errors.Is(err, unix.ENOENT):
		return fs.ErrNotExist
	case errors.Is(err, unix.ENOTDIR):
		return refuse("a component is not a directory")
	}
	return err
}

// readChecked reads an open descriptor after checking what it is: a
// regular file with one link, not writable by group or others, owned as
// rule demands. It closes fd. It returns the owner's uid.
func readChecked(fd int, name string, rule ownerRule) ([]byte, int, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, 0, err
	}
	if err := checkStat(&st, rule); err != nil {
		return nil, 0, err
	}
	data, err := io.ReadAll(io.LimitReader(f, aliases.MaxFileSize+1))
	if err != nil {
		return nil, 0, err
	}
	if len(data) > aliases.MaxFileSize {
		return nil, 0, fmt.Errorf("larger than %d bytes", aliases.MaxFileSize)
	}
	return data, int(st.Uid), nil
}

func checkStat(st *unix.Stat_t, rule ownerRule) error {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return refuse("not a regular file")
	case st.Nlink != 1:
		return refuse("%d hard links (a hard link can make another file look like this one)", st.Nlink)
	case st.Mode&0o022 != 0:
		return refuse("writable by group or others (mode %#o)", st.Mode&0o7777)
	}
	if rule.uid < 0 || int(st.Uid) == rule.uid {
		return nil
	}
	if st.Uid == 0 && rule.rootReadable {
		if st.Mode&0o004 == 0 {
			return refuse("owned by root and not readable by others")
		}
		return nil
	}
	return refuse("owned by uid %d, not by uid %d", st.Uid, rule.uid)
}

// openNoSymlinks opens path (absolute) for reading with no symlink
// followed in any component.
func openNoSymlinks(dirfd int, path string, resolve uint64) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY,
		Resolve: resolve | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(dirfd, path, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return -1, openErr(err)
		}
		return fd, nil
	}
}

// readInclude reads an :include: file for ExpandIncludes.
func readInclude(path string, rule ownerRule) (*aliases.Opened, error) {
	if err := policy.ValidPath(path); err != nil {
		return nil, refuse("%v", err)
	}
	fd, err := openNoSymlinks(unix.AT_FDCWD, path, 0)
	if err != nil {
		return nil, err
	}
	data, uid, err := readChecked(fd, path, rule)
	if err != nil {
		return nil, err
	}
	return &aliases.Opened{Data: data, Owner: uid}, nil
}

// readAliasesFile reads the administrator's aliases file: the path given
// may be a symlink the administrator made, but the file must be a regular
// file not writable by group or others. It returns its owner's uid.
func readAliasesFile(path string) ([]byte, int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, 0, openErr(err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, 0, err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, 0, refuse("not a regular file")
	case st.Mode&0o022 != 0:
		return nil, 0, refuse("writable by group or others (mode %#o): anyone who can write it could run programs", st.Mode&0o7777)
	}
	data, err := io.ReadAll(io.LimitReader(f, aliases.MaxFileSize+1))
	if err != nil {
		return nil, 0, err
	}
	if len(data) > aliases.MaxFileSize {
		return nil, 0, fmt.Errorf("larger than %d bytes", aliases.MaxFileSize)
	}
	return data, int(st.Uid), nil
}

// home is an opened home directory.
type home struct {
	acct *Account
	fd   int
}

// openHome opens a user's home directory (the path comes from the
// administrator's passwd file) and checks that it is a directory owned by
// the user or root, that others cannot write, and that a group can write
// only if it is the user's own primary group.
func openHome(a *Account) (*home, error) {
	fd, err := unix.Open(a.Home, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openErr(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	switch {
	case int(st.Uid) != a.UID && st.Uid != 0:
		err = refuse("the home directory %s is owned by uid %d, not by %s or root", a.Home, st.Uid, a.Name)
	case st.Mode&0o002 != 0:
		err = refuse("the home directory %s is writable by others (mode %#o)", a.Home, st.Mode&0o7777)
	case st.Mode&0o020 != 0 && int(st.Gid) != a.GID:
		err = refuse("the home directory %s is writable by group %d, not %s's own", a.Home, st.Gid, a.Name)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &home{acct: a, fd: fd}, nil
}

func (h *home) close() { unix.Close(h.fd) }

// read reads name (relative, beneath the home directory, no symlink in
// any component), held to rule.
func (h *home) read(name string, rule ownerRule) ([]byte, error) {
	fd, err := openNoSymlinks(h.fd, name, unix.RESOLVE_BENEATH)
	if err != nil {
		return nil, err
	}
	data, _, err := readChecked(fd, filepath.Join(h.acct.Home, name), rule)
	return data, err
}

// existing is what is at an output path now.
type existing struct {
	data   []byte
	exists bool
	mode   uint32 // permission bits
	// refuse is why the file must not be replaced or removed ("" = it may).
	refuse string
}

// marker begins every file that allowgen writes whole (user files, Sieve
// scripts); allowgen replaces or removes only files that begin with it.
const marker = "# Generated by allowgen"

// readExisting reads a file that allowgen may replace. In a user's
// directory (h != nil) the file is opened beneath the home directory with
// no symlink followed; a symlink, a file that is not regular, and a file
// that allowgen did not write (no marker) must not be replaced.
func readExisting(h *home, path string, whole bool) existing {
	var fd int
	var err error
	if h != nil {
		rel, rerr := filepath.Rel(h.acct.Home, path)
		if rerr != nil || strings.HasPrefix(rel, "..") {
			return existing{refuse: "not beneath the home directory"}
		}
		fd, err = openNoSymlinks(h.fd, rel, unix.RESOLVE_BENEATH)
	} else {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			err = openErr(err)
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return existing{}
	}
	if err != nil {
		return existing{exists: true, refuse: err.Error()}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return existing{exists: true, refuse: err.Error()}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return existing{exists: true, refuse: "refused: not a regular file"}
	}
	data, err := io.ReadAll(io.LimitReader(f, policy.MaxFileSize+1))
	if err != nil {
		return existing{exists: true, refuse: err.Error()}
	}
	e := existing{data: data, exists: true, mode: st.Mode & 0o777}
	if whole && !strings.HasPrefix(string(data), marker) {
		e.refuse = "it exists and was not written by allowgen (it does not begin with \"" + marker + "\"); it is left alone"
	}
	return e
}

// writeAtomic writes data to name in the directory dirfd: a new
// temporary file (O_EXCL, no symlink followed), owned by uid:gid with
// mode, synced, then renamed over name (rename replaces a directory entry
// and never follows a symlink), then the directory is synced.
func writeAtomic(dirfd int, name string, data []byte, uid, gid int, mode os.FileMode) error {
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := "." + name + ".allowgen-" + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	fail := func(err error) error {
		f.Close()
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return fail(err)
		}
	}
	if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	return unix.Fsync(dirfd)
}

// openDir opens the directory that will hold path: beneath a home
// directory with no symlink followed (h != nil), or as the administrator
// named it.
func openDir(h *home, path string) (int, error) {
	dir := filepath.Dir(path)
	if h == nil {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, openErr(err)
		}
		return fd, nil
	}
	rel, err := filepath.Rel(h.acct.Home, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return -1, refuse("not beneath the home directory")
	}
	if rel == "." {
		return unix.Dup(h.fd)
	}
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(h.fd, rel, &how)
	if err != nil {
		return -1, openErr(err)
	}
	return fd, nil
}
