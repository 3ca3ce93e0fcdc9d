package maildir

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"lda/internal/status"
)

// ValidTmpName checks a name Deliver may create in tmp/: one path
// component, not starting with '.', without control characters or '/',
// at most 255 bytes.
func ValidTmpName(tmp string) error {
	if tmp == "" || len(tmp) > 255 || tmp[0] == '.' || strings.ContainsAny(tmp, "/") {
		return errors.New("maildir: bad tmp/ name")
	}
	for i := 0; i < len(tmp); i++ {
		if tmp[i] < 0x21 || tmp[i] == 0x7f {
			return errors.New("maildir: bad tmp/ name")
		}
	}
	return nil
}

// RemoveTmp removes tmp/<tmp> of the maildir `name` beneath dir (or of its
// Maildir++ folder): the file a delivery that died mid-way left, as named
// to Options.Creating. The maildir and folder are opened as Deliver opens
// them (beneath dir, no symlinks, nothing created); only a regular file is
// removed. It reports whether there was one; a file that is not there is
// no error (the delivery died before creating it, or after moving it).
func RemoveTmp(dir *os.File, name, folder, tmp string) (bool, error) {
	if err := validName(name); err != nil {
		return false, status.ConfigError.Wrap(err)
	}
	if folder != "" {
		if err := ValidFolder(folder); err != nil {
			return false, status.PolicyRefused.Wrap(err)
		}
	}
	if err := ValidTmpName(tmp); err != nil {
		return false, status.Usage.Wrap(err)
	}
	if dir == nil {
		return false, status.ConfigError.Wrapf("maildir: nil directory")
	}
	defer runtime.KeepAlive(dir)
	root, err := openMaildir(int(dir.Fd()), name, false, -1)
	if err != nil {
		return false, err
	}
	defer unix.Close(root)
	box := root
	if folder != "" {
		fd, err := openFolder(root, folder, false)
		if err != nil {
			return false, err
		}
		defer unix.Close(fd)
		box = fd
	}
	tmpfd, err := openSub(box, "tmp", false, -1)
	if err != nil {
		return false, err
	}
	defer unix.Close(tmpfd)
	var st unix.Stat_t
	err = unix.Fstatat(tmpfd, tmp, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("maildir: stat tmp/%s: %w", tmp, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, status.NotRegular.Wrapf("maildir: tmp/%s is not a regular file", tmp)
	}
	if err := unix.Unlinkat(tmpfd, tmp, 0); err != nil && err != unix.ENOENT {
		return false, fmt.Errorf("maildir: remove tmp/%s: %w", tmp, err)
	}
	return true, nil
}
