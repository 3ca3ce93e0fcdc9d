package maildir

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/status"
)

// Options control a delivery. The zero value delivers into an existing
// maildir's new/ and creates nothing.
type Options struct {
	CheckOwner    bool             // require that the maildir, the folder, tmp/ and new/ (or cur/) are owned by Owner
	Owner         int              // the recipient's uid, for CheckOwner
	Create        bool             // create the maildir (and missing parent directories of it beneath dir) with tmp/ new/ cur/, mode 0700
	CreateFolders bool             // create a missing Maildir++ folder (".Folder" with tmp/new/cur and a "maildirfolder" file), mode 0700
	Flags         string           // IMAP flags as maildir info letters (subset of "DFPRST", any order); non-empty -> deliver into cur/ as NAME:2,SORTEDFLAGS
	Host          string           // host name for unique names; "" = os.Hostname(); "/" and ":" escaped as \057 and \072 (also ",", "\\", control bytes)
	Now           func() time.Time // nil = time.Now
	// Creating, if set, is called with the name a file is about to be
	// created under in tmp/ (relative to tmp/, one component), before it
	// exists, so that a caller that may die mid-delivery can have it
	// removed afterwards (RemoveTmp). An error stops the delivery before
	// anything is created.
	Creating func(tmp string) error
	// Dirs, if set, keeps the maildir's directories open for the next
	// delivery into the same INBOX and reuses them, checked (see Dirs).
	Dirs *Dirs
}

// Result describes a delivered message.
type Result struct {
	Path string // relative to the maildir root, e.g. "new/1700000000.M1P2Q3R4.host,S=123" or ".Work/cur/...:2,S"
	Size int64  // bytes written
}

// maxTries bounds the attempts to find an unused name in tmp/ and in new/
// (or cur/). With 64 random bits per name, a collision means names are being
// planted; giving up then is right.
const maxTries = 8

// faultHook, when set by a test, is called at each stage of a delivery with
// the name involved: "create" (tmp name, before openat), "write" (tmp name,
// after the copy), "fsync" and "close" (tmp name), "link" (final name,
// before linkat) and "dirsync" (final name, before fsync of new/ or cur/).
// A non-nil result is handled as if the system call had returned it.
var faultHook func(stage, name string) error

// openHook, when set by a test, hears every directory name openBeneath is
// about to open.
var openHook func(name string)

func fault(stage, name string) error {
	if faultHook != nil {
		return faultHook(stage, name)
	}
	return nil
}

// useLink makes tests take the linkat and unlinkat path that is otherwise
// only used where the file system has no RENAME_NOREPLACE.
var useLink bool

// renameNoReplace is renameat2(RENAME_NOREPLACE); tests replace it to play
// a file system without the flag.
var renameNoReplace = func(olddirfd int, oldpath string, newdirfd int, newpath string) error {
	return unix.Renameat2(olddirfd, oldpath, newdirfd, newpath, unix.RENAME_NOREPLACE)
}

// bufPool holds copy buffers; a delivery from a pipe or socket moves data in
// 256 KiB chunks without allocating.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// Deliver writes msg into the maildir `name` (a relative path beneath dir;
// may have several components) or into its Maildir++ folder `folder` (""
// = INBOX). Nothing becomes visible in new/ (or cur/) until the file is
// complete and fsync'ed; new/ (or cur/) is fsync'ed before Deliver returns
// nil. See the package documentation for the exact order of operations.
//
// Errors: an invalid name is status.ConfigError, an invalid folder
// status.PolicyRefused, invalid flags status.Usage and an unusable host
// name status.ConfigError; a non-directory is status.MailboxUnavail. System
// call errors are wrapped with %w so that status.From maps the errno (a
// symlink, ELOOP or EXDEV, and a missing maildir, ENOENT, give 450 4.2.0;
// ENOSPC 452 4.3.1; EDQUOT 552 5.2.2). Errors from msg are returned wrapped.
func Deliver(dir *os.File, name, folder string, msg io.Reader, opt Options) (Result, error) {
	// Step 1: everything lexical, before any system call.
	if err := validName(name); err != nil {
		return Result{}, status.ConfigError.Wrap(err)
	}
	if folder != "" {
		if err := ValidFolder(folder); err != nil {
			return Result{}, status.PolicyRefused.Wrap(err)
		}
	}
	flags, err := ParseFlags(opt.Flags)
	if err != nil {
		return Result{}, status.Usage.Wrap(err)
	}
	host, err := escapeHost(opt.Host)
	if err != nil {
		return Result{}, status.ConfigError.Wrap(err)
	}
	if dir == nil || msg == nil {
		return Result{}, status.ConfigError.Wrapf("maildir: nil directory or message")
	}
	if opt.CheckOwner && opt.Owner < 0 {
		return Result{}, status.ConfigError.Wrapf("maildir: owner check without a uid (%d)", opt.Owner)
	}
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	defer runtime.KeepAlive(dir)

	// Step 2: the directories, each resolved beneath its parent, never
	// through a symlink; or those of the last delivery, found again where
	// they were (Options.Dirs).
	owner := -1
	if opt.CheckOwner {
		owner = opt.Owner
	}
	dst := "new"
	if flags != "" {
		dst = "cur"
	}
	// Opened here: the root, the folder, tmp/ and new/ (cur/), closed on
	// return unless opt.Dirs keeps them.
	var fds [4]int
	nfds := 0
	defer func() {
		for _, fd := range fds[:nfds] {
			unix.Close(fd)
		}
	}()
	reusable := opt.Dirs != nil && folder == "" && dst == "new" && !strings.Contains(name, "/")
	var tmpfd, dstfd int
	reused := false
	if reusable {
		tmpfd, dstfd, reused = opt.Dirs.reuse(dir, name, owner)
	}
	prefix := ""
	if !reused {
		root, err := openMaildir(int(dir.Fd()), name, opt.Create, owner)
		if err != nil {
			return Result{}, err
		}
		fds[nfds], nfds = root, nfds+1
		box, create := root, opt.Create
		if folder != "" {
			fd, err := openFolder(root, folder, opt.CreateFolders)
			if err != nil {
				return Result{}, err
			}
			fds[nfds], nfds = fd, nfds+1
			if err := checkDir(fd, "."+folder, owner); err != nil {
				return Result{}, err
			}
			box, prefix, create = fd, "."+folder+"/", opt.CreateFolders
		}
		if tmpfd, err = openSub(box, "tmp", create, owner); err != nil {
			return Result{}, err
		}
		fds[nfds], nfds = tmpfd, nfds+1
		if dstfd, err = openSub(box, dst, create, owner); err != nil {
			return Result{}, err
		}
		fds[nfds], nfds = dstfd, nfds+1
	}
	res, err := deliverIn(tmpfd, dstfd, dst, prefix, flags, msg, now, host, opt.Creating)
	switch {
	case err != nil && reused:
		opt.Dirs.Close() // start afresh next time
	case err == nil && reusable && !reused && opt.Dirs.keep(dir, name, fds[0], tmpfd, dstfd):
		nfds = 0
	}
	return res, err
}

// deliverIn is steps 3 to 6: the message written into tmpfd, linked into
// dstfd (dst is "new" or "cur") and made durable there.
func deliverIn(tmpfd, dstfd int, dst, prefix, flags string, msg io.Reader, now func() time.Time, host string, creating func(string) error) (Result, error) {
	// Steps 3 and 4: a fresh file in tmp/, written and fsync'ed.
	uniq, size, err := writeTmp(tmpfd, msg, now, host, creating)
	if err != nil {
		return Result{}, err
	}

	// Step 5: link it into new/ (cur/) under a name that is not taken.
	final, err := moveIn(tmpfd, uniq, dstfd, size, flags, dst == "cur", now, host)
	if err != nil {
		unix.Unlinkat(tmpfd, uniq, 0)
		return Result{}, err
	}

	// Step 6: make the new entry durable; never report success otherwise.
	err = fault("dirsync", final)
	if err == nil {
		err = fsync(dstfd)
	}
	if err != nil {
		unix.Unlinkat(dstfd, final, 0)
		fsync(dstfd)
		return Result{}, fmt.Errorf("maildir: fsync %s/: %w", dst, err)
	}
	return Result{Path: prefix + dst + "/" + final, Size: size}, nil
}

// openBeneath opens the directory path name (no "..", not absolute; checked
// by the caller) beneath dirfd without following any symlink, magic link or
// escaping dirfd. Kernels without openat2 (ENOSYS, before Linux 5.6) get an
// equivalent walk: one component at a time with O_NOFOLLOW.
func openBeneath(dirfd int, name string) (int, error) {
	if openHook != nil {
		openHook(name)
	}
	if !noOpenat2 {
		how := unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		}
	retry:
		for i := 0; ; i++ {
			fd, err := unix.Openat2(dirfd, name, &how)
			switch {
			case err == unix.EINTR || (err == unix.EAGAIN && i < 3):
				continue // EAGAIN: a concurrent rename somewhere; retry
			case err == unix.ENOSYS:
				break retry
			}
			return fd, err
		}
	}
	fd := dirfd
	for _, c := range strings.Split(name, "/") {
		nfd, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		var st unix.Stat_t
		if err == unix.ENOTDIR && unix.Fstatat(fd, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
			st.Mode&unix.S_IFMT == unix.S_IFLNK {
			err = unix.ELOOP // as openat2 reports it; O_DIRECTORY|O_NOFOLLOW says ENOTDIR
		}
		if fd != dirfd {
			unix.Close(fd)
		}
		if err != nil {
			return -1, err
		}
		fd = nfd
	}
	return fd, nil
}

// noOpenat2 makes openBeneath use its fallback walk (set by tests).
var noOpenat2 bool

// openOrMkdir opens the single component name beneath dirfd. If it is
// missing and create is set, it is made with mode 0700, opened, and fchmod'ed
// to 0700 (umask and default ACLs cannot loosen it); created reports that,
// and the caller must then fsync dirfd. A concurrent creator's directory
// (EEXIST) is used as found.
func openOrMkdir(dirfd int, name string, create bool) (fd int, created bool, err error) {
	fd, err = openBeneath(dirfd, name)
	if err == unix.ENOENT && create {
		err = unix.Mkdirat(dirfd, name, 0o700)
		created = err == nil
		if err == nil || err == unix.EEXIST {
			fd, err = openBeneath(dirfd, name)
		}
		if err == nil && created {
			if err = unix.Fchmod(fd, 0o700); err != nil {
				unix.Close(fd)
			}
		}
	}
	if err != nil {
		return -1, false, fmt.Errorf("maildir: open %q: %w", name, err)
	}
	return fd, created, nil
}

// openMaildir opens the maildir root. With create, missing components are
// made one at a time, each parent fsync'ed, and a new root gets tmp/ new/
// cur/.
func openMaildir(dirfd int, name string, create bool, owner int) (int, error) {
	fd, err := openBeneath(dirfd, name)
	if err != nil && (err != unix.ENOENT || !create) {
		return -1, fmt.Errorf("maildir: open maildir %q: %w", name, err)
	}
	if err != nil {
		created := false
		fd = dirfd
		for _, c := range strings.Split(name, "/") {
			nfd, made, err := openOrMkdir(fd, c, true)
			if err == nil && made {
				err = fsyncDir(fd)
			}
			if fd != dirfd {
				unix.Close(fd)
			}
			if err != nil {
				if nfd >= 0 {
					unix.Close(nfd)
				}
				return -1, err
			}
			fd, created = nfd, made
		}
		if created {
			if err := makeSubdirs(fd); err != nil {
				unix.Close(fd)
				return -1, err
			}
		}
	}
	if err := checkDir(fd, name, owner); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// makeSubdirs creates whichever of tmp/ new/ cur/ is missing in box and
// fsyncs box if it created any.
func makeSubdirs(box int) error {
	made := false
	for _, d := range [...]string{"tmp", "new", "cur"} {
		fd, created, err := openOrMkdir(box, d, true)
		if err != nil {
			return err
		}
		unix.Close(fd)
		made = made || created
	}
	if made {
		return fsyncDir(box)
	}
	return nil
}

// openSub opens tmp/, new/ or cur/ of box; with create, a missing one is
// made together with its siblings.
func openSub(box int, sub string, create bool, owner int) (int, error) {
	fd, err := openBeneath(box, sub)
	if err == unix.ENOENT && create {
		if err = makeSubdirs(box); err != nil {
			return -1, err
		}
		fd, err = openBeneath(box, sub)
	}
	if err != nil {
		return -1, fmt.Errorf("maildir: open %s/: %w", sub, err)
	}
	if err := checkDir(fd, sub, owner); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// checkDir confirms with fstat that fd is a directory.
//
// With owner >= 0 (Options.CheckOwner) it also refuses a directory that
// another user owns: that user could remove or alter mail after it was
// acknowledged. Temporary (4.2.0), since the owner can be corrected.
func checkDir(fd int, name string, owner int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("maildir: fstat %q: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return status.MailboxUnavail.Wrapf("maildir: %q is not a directory", name)
	}
	if owner >= 0 && int(st.Uid) != owner {
		return status.MailboxUnavail.Wrapf("maildir: %q is owned by uid %d, not the recipient (%d)", name, st.Uid, owner)
	}
	return nil
}

// fsyncFn is unix.Fsync; tests wrap it to see what is synced, and when.
var fsyncFn = unix.Fsync

func fsync(fd int) error {
	for {
		if err := fsyncFn(fd); err != unix.EINTR {
			return err
		}
	}
}

func fsyncDir(fd int) error {
	if err := fsync(fd); err != nil {
		return fmt.Errorf("maildir: fsync directory: %w", err)
	}
	return nil
}

// writeTmp creates a new file in tmp/ (O_EXCL, O_NOFOLLOW, 0600; a name
// that exists is never opened, another is picked), copies msg into it,
// fsyncs and closes it. On error nothing it made is left in tmp/.
func writeTmp(tmpfd int, msg io.Reader, now func() time.Time, host string, creating func(string) error) (uniq string, size int64, err error) {
	fd := -1
	for i := 0; ; i++ {
		uniq = uniqueName(now(), host)
		if creating != nil {
			if err := creating(uniq); err != nil {
				return "", 0, fmt.Errorf("maildir: %w", err)
			}
		}
		err = fault("create", uniq)
		if err == nil {
			fd, err = unix.Openat(tmpfd, uniq,
				unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		}
		if err == unix.EEXIST && i+1 < maxTries {
			continue
		}
		if err != nil {
			return "", 0, fmt.Errorf("maildir: create in tmp/: %w", err)
		}
		break
	}
	// The raw descriptor, not an *os.File: a regular file needs no poller,
	// and os.NewFile costs a system call and a finalizer per message.
	name := uniq
	defer func() {
		if err != nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			unix.Unlinkat(tmpfd, name, 0)
		}
	}()
	if err = unix.Fchmod(fd, 0o600); err != nil {
		return "", 0, fmt.Errorf("maildir: fchmod: %w", err)
	}
	size, err = copyMsg(fd, msg)
	if err == nil {
		err = fault("write", uniq)
	}
	if err != nil {
		return "", 0, fmt.Errorf("maildir: write: %w", err)
	}
	if err = fault("fsync", uniq); err == nil {
		err = fsync(fd)
	}
	if err != nil {
		return "", 0, fmt.Errorf("maildir: fsync: %w", err)
	}
	err = fault("close", uniq)
	if cerr := closeFd(fd); err == nil {
		err = cerr
	}
	fd = -1
	if err != nil {
		return "", 0, fmt.Errorf("maildir: close: %w", err)
	}
	return uniq, size, nil
}

// copyMsg copies msg into the file fd. An *os.File source lets the
// kernel copy (copy_file_range, splice) into a duplicate of fd; anything
// else goes through a pooled 256 KiB buffer.
func copyMsg(fd int, msg io.Reader) (int64, error) {
	if src, ok := msg.(*os.File); ok {
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return 0, err
		}
		f := os.NewFile(uintptr(d), "tmp")
		n, err := f.ReadFrom(src)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return n, err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	// Fill the buffer before each write: the worker's message is its
	// trace headers followed by the spooled message, and a small one
	// then takes one write(2) instead of one per part. Not io.ReadFull:
	// it reports a short last read as io.ErrUnexpectedEOF, which a
	// reader can also return as a real error (a message cut off), and
	// only io.EOF may end the message.
	buf := *bp
	var size int64
	for {
		n := 0
		var rerr error
		for n < len(buf) && rerr == nil {
			var m int
			m, rerr = msg.Read(buf[n:])
			n += m
		}
		if n > 0 {
			w, werr := writeFd(fd, buf[:n])
			size += int64(w)
			if werr != nil {
				return size, werr
			}
		}
		if rerr == io.EOF {
			return size, nil
		}
		if rerr != nil {
			return size, rerr
		}
	}
}

// writeFd writes all of p to fd, through short writes and EINTR.
func writeFd(fd int, p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(fd, p[done:])
		if n > 0 {
			done += n
		}
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return done, err
		case n <= 0:
			return done, io.ErrShortWrite
		}
	}
	return done, nil
}

// closeFd closes fd; EINTR is not retried (Linux has closed it anyway).
func closeFd(fd int) error {
	if err := unix.Close(fd); err != nil && err != unix.EINTR {
		return err
	}
	return nil
}

// moveIn gives the complete tmp file its final name in dst with
// renameat2(RENAME_NOREPLACE), which fails with EEXIST instead of
// replacing a name, and leaves no second name behind. A taken name is
// never replaced: a new unique name is drawn, up to maxTries times. A file
// system without RENAME_NOREPLACE (EINVAL: NFS, say) gets linkat, which
// never replaces either, then the tmp name is unlinked (the classic
// Maildir way; one more system call, and the inode changed twice).
func moveIn(tmpfd int, uniq string, dstfd int, size int64, flags string, cur bool, now func() time.Time, host string) (string, error) {
	final := finalName(uniq, size, flags, cur)
	link := useLink
	for i := 0; ; i++ {
		err := fault("link", final)
		if err == nil {
			if !link {
				err = renameNoReplace(tmpfd, uniq, dstfd, final)
				if err == unix.EINVAL || err == unix.ENOSYS {
					link = true
				}
			}
			if link {
				err = unix.Linkat(tmpfd, uniq, dstfd, final, 0)
			}
		}
		if err == unix.EEXIST && i+1 < maxTries {
			final = finalName(uniqueName(now(), host), size, flags, cur)
			continue
		}
		if err != nil {
			return "", fmt.Errorf("maildir: link into %s: %w", dirName(cur), err)
		}
		break
	}
	if link {
		// The message is in place; a tmp name left by a failed unlink is
		// harmless (readers remove tmp files older than 36 hours).
		unix.Unlinkat(tmpfd, uniq, 0)
	}
	return final, nil
}

func dirName(cur bool) string {
	if cur {
		return "cur/"
	}
	return "new/"
}
