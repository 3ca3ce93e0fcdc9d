package job

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// chmodded is a copy of file with the given mode, in a directory of its
// own.
func chmodded(t *testing.T, file string, mode os.FileMode) string {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckMessage: a message descriptor passes only if no one can change
// the message through it: a memfd sealed against writing, shrinking and
// growing (whatever its mode), or a read-only descriptor of a regular
// file that neither group nor others may write (a worker could reopen it
// for writing through /proc otherwise: an unsealed memfd is 0777). Each
// seal missing, a writable descriptor (on a tmpfs too, whose files are of
// shmem like a memfd's), such a mode, O_PATH, a directory and a pipe are
// refused.
func TestCheckMessage(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "msg")
	if err := os.WriteFile(file, []byte("Subject: x\n\nbody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A file of shmem that is not a memfd: born with F_SEAL_SEAL, it can
	// never carry the seals that would let CheckMessage skip its mode.
	shmDir, shmErr := os.MkdirTemp("/dev/shm", "checkmessage")
	if shmErr == nil {
		defer os.RemoveAll(shmDir)
	}
	shm := filepath.Join(shmDir, "msg")
	if shmErr == nil {
		shmErr = os.WriteFile(shm, []byte("Subject: x\n\nbody\n"), 0o600)
	}
	open := func(path string, flags int) func(t *testing.T) int {
		return func(t *testing.T) int {
			if (path == shm || path == filepath.Dir(shm)) && shmErr != nil {
				t.Skipf("no tmpfs at /dev/shm: %v", shmErr)
			}
			fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			return fd
		}
	}
	memfd := func(seals int, reopen int) func(t *testing.T) int {
		return func(t *testing.T) int {
			fd, err := unix.MemfdCreate("msg", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := unix.Write(fd, []byte("Subject: x\n\nbody\n")); err != nil {
				t.Fatal(err)
			}
			if seals != 0 {
				if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
					t.Fatal(err)
				}
			}
			if reopen < 0 {
				return fd
			}
			defer unix.Close(fd)
			return open("/proc/self/fd/"+strconv.Itoa(fd), reopen)(t)
		}
	}
	// memfdMode is an unsealed memfd, its mode changed, reopened read-only.
	memfdMode := func(mode uint32) func(t *testing.T) int {
		return func(t *testing.T) int {
			fd, err := unix.MemfdCreate("msg", unix.MFD_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if err := unix.Fchmod(fd, mode); err != nil {
				t.Fatal(err)
			}
			return open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_RDONLY)(t)
		}
	}
	pipe := func(t *testing.T) int {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		unix.Close(p[1])
		return p[0]
	}
	all := unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL
	for _, tc := range []struct {
		name   string
		fd     func(t *testing.T) int
		want   error
		sealed bool // Sealed says so: workers may share it
	}{
		{"sealed memfd", memfd(all, -1), nil, true},
		{"sealed memfd, the seals left open", memfd(FrozenSeals, -1), nil, true},
		{"sealed memfd reopened read-only", memfd(all, unix.O_RDONLY), nil, true},
		{"sealed memfd reopened O_PATH", memfd(all, unix.O_PATH), ErrMessageChangeable, false},
		{"memfd without seals", memfd(0, -1), ErrMessageChangeable, false},
		{"memfd that can grow", memfd(unix.F_SEAL_WRITE|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL, -1), ErrMessageChangeable, false},
		{"memfd that can shrink", memfd(unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SEAL, -1), ErrMessageChangeable, false},
		{"memfd that can be written", memfd(unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL, -1), ErrMessageChangeable, false},
		{"memfd without seals, reopened read-only", memfd(0, unix.O_RDONLY), ErrMessageChangeable, false},
		{"memfd without seals, mode 0600, reopened read-only", memfdMode(0o600), nil, false},
		{"file read-only", open(file, unix.O_RDONLY), nil, false},
		{"file read-only, mode 0644", open(chmodded(t, file, 0o644), unix.O_RDONLY), nil, false},
		{"file read-only, group may write", open(chmodded(t, file, 0o660), unix.O_RDONLY), ErrMessageChangeable, false},
		{"file read-only, others may write", open(chmodded(t, file, 0o602), unix.O_RDONLY), ErrMessageChangeable, false},
		{"file read-write", open(file, unix.O_RDWR), ErrMessageChangeable, false},
		{"file write-only", open(file, unix.O_WRONLY), ErrMessageChangeable, false},
		{"file O_PATH", open(file, unix.O_PATH), ErrMessageChangeable, false},
		{"directory", open(dir, unix.O_RDONLY|unix.O_DIRECTORY), ErrMessageNotFile, false},
		{"tmpfs file read-write", open(shm, unix.O_RDWR), ErrMessageChangeable, false},
		{"tmpfs file read-only", open(shm, unix.O_RDONLY), nil, false},
		{"tmpfs directory", open(filepath.Dir(shm), unix.O_RDONLY|unix.O_DIRECTORY), ErrMessageNotFile, false},
		{"pipe", pipe, ErrMessageNotFile, false},
		{"no descriptor", func(*testing.T) int { return -1 }, ErrMessageNotFile, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd := tc.fd(t)
			defer unix.Close(fd)
			if err := CheckMessage(fd); !errors.Is(err, tc.want) {
				t.Fatalf("CheckMessage = %v, want %v", err, tc.want)
			}
			if got := Sealed(fd); got != tc.sealed {
				t.Fatalf("Sealed = %v, want %v", got, tc.sealed)
			}
		})
	}
}
