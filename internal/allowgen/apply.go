package allowgen

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Write writes every output that differs from the file on disk, except
// those that are refused or incomplete: each atomically (a temporary file
// in the same directory, synced, renamed), owned as the Output says. A
// stale generated user file or script is removed. It returns one line per
// file written or removed, and the errors.
func (r *Result) Write() (done []string, errs []error) {
	for _, o := range r.Outputs {
		if !o.Changed() || o.Refused() != "" {
			continue
		}
		if err := o.write(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o.Path, err))
			continue
		}
		if o.Content == nil {
			done = append(done, "removed "+o.Path)
		} else {
			done = append(done, "wrote "+o.Path)
		}
	}
	return done, errs
}

func (o *Output) write() error {
	dirfd, err := openDir(o.home, o.Path)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	name := filepath.Base(o.Path)
	if o.Content != nil {
		// Keep an existing file's mode if it is stricter.
		mode := o.Mode
		if o.Old.exists && os.FileMode(o.Old.mode)&^o.Mode.Perm() == 0 && o.Old.refuse == "" {
			mode = os.FileMode(o.Old.mode)
		}
		return writeAtomic(dirfd, name, o.Content, o.UID, o.GID, mode)
	}
	// Remove a stale generated file: check again that it is ours.
	if e := readExisting(o.home, o.Path, o.Whole); !e.exists || e.refuse != "" {
		return nil
	}
	if err := unix.Unlinkat(dirfd, name, 0); err != nil {
		return err
	}
	return unix.Fsync(dirfd)
}
