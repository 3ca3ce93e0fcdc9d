package maildir

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// maxFolderLen bounds a Maildir++ folder name. The directory entry is
// "." + name, and it must fit in NAME_MAX (255) bytes, so a 255-byte folder
// name could never be created.
const maxFolderLen = 254

// ValidFolder reports whether name is an acceptable Maildir++ folder name
// ("Work", "Lists.golang"): valid UTF-8 of at most 254 bytes, dot-separated
// non-empty parts (hence no leading or trailing ".", no "..", no part "." or
// ".."), no "/" and no NUL or other control character. The empty name is
// not a folder (Deliver takes "" to mean INBOX). "INBOX" is not special here:
// callers map it to "" themselves.
func ValidFolder(name string) error {
	switch {
	case name == "":
		return errors.New("maildir: empty folder name")
	case len(name) > maxFolderLen:
		return fmt.Errorf("maildir: folder name longer than %d bytes", maxFolderLen)
	case !utf8.ValidString(name):
		return errors.New("maildir: folder name is not valid UTF-8")
	}
	for _, r := range name {
		switch {
		case isControl(r):
			return fmt.Errorf("maildir: folder name %q contains a control character", name)
		case r == '/':
			return fmt.Errorf("maildir: folder name %q contains \"/\"", name)
		}
	}
	for _, p := range strings.Split(name, ".") {
		// An empty part covers a leading or trailing dot and "..";
		// "." and ".." themselves split into empty parts.
		if p == "" || p == "." || p == ".." {
			return fmt.Errorf("maildir: folder name %q has an empty part", name)
		}
	}
	return nil
}

// openFolder opens the Maildir++ folder "."+folder beneath the maildir root.
// With create, a missing folder is made (0700) with tmp/ new/ cur/ and an
// empty "maildirfolder" file (0600), and the root is fsync'ed so that the
// folder survives a crash once a message in it has been acknowledged.
func openFolder(root int, folder string, create bool) (int, error) {
	fd, created, err := openOrMkdir(root, "."+folder, create)
	if err != nil {
		return -1, err
	}
	if !created {
		return fd, nil
	}
	err = makeSubdirs(fd)
	if err == nil {
		err = makeMarker(fd)
	}
	if err == nil {
		err = fsyncDir(root)
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// makeMarker creates the empty "maildirfolder" file that marks a Maildir++
// folder, never following or truncating anything already there, and fsyncs
// the folder.
func makeMarker(folder int) error {
	fd, err := unix.Openat(folder, "maildirfolder",
		unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	switch {
	case err == unix.EEXIST:
		// Made by a concurrent delivery; it only has to exist.
	case err != nil:
		return fmt.Errorf("maildir: create maildirfolder: %w", err)
	default:
		err = unix.Fchmod(fd, 0o600)
		if cerr := unix.Close(fd); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("maildir: create maildirfolder: %w", err)
		}
	}
	return fsyncDir(folder)
}
