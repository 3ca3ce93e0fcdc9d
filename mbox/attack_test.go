package mbox

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const victimContent = "root:x:0:0:victim file, must not change\n"

// TestFilesystemAttacks plants each attack and asserts the status and that
// neither the victim nor the planted object changed.
func TestFilesystemAttacks(t *testing.T) {
	tests := []struct {
		name     string
		mbox     string
		create   bool
		setup    func(t *testing.T, p, victim string)
		code     int
		enhanced string
		root     bool
		never    bool // must not even be opened
	}{
		{
			name: "mailbox is a symlink to a file in another directory", mbox: "inbox",
			setup: func(t *testing.T, p, victim string) { symlink(t, victim, filepath.Join(p, "inbox")) },
			code:  450, enhanced: "4.2.0",
		},
		{
			name: "mailbox is a symlink, create set", mbox: "inbox", create: true,
			setup: func(t *testing.T, p, victim string) { symlink(t, victim, filepath.Join(p, "inbox")) },
			code:  450, enhanced: "4.2.0",
		},
		{
			name: "mailbox is a dangling symlink, create set", mbox: "inbox", create: true,
			setup: func(t *testing.T, p, victim string) {
				symlink(t, filepath.Join(filepath.Dir(victim), "created-by-attack"), filepath.Join(p, "inbox"))
			},
			code: 450, enhanced: "4.2.0",
		},
		{
			name: "mailbox is a relative symlink within the directory", mbox: "inbox",
			setup: func(t *testing.T, p, victim string) {
				writeFile(t, filepath.Join(p, "other"), "other mailbox\n")
				symlink(t, "other", filepath.Join(p, "inbox"))
			},
			code: 450, enhanced: "4.2.0",
		},
		{
			name: "intermediate directory is a symlink", mbox: "Mail/inbox", create: true,
			setup: func(t *testing.T, p, victim string) {
				// victim's directory holds a file "inbox" too.
				writeFile(t, filepath.Join(filepath.Dir(victim), "inbox"), victimContent)
				symlink(t, filepath.Dir(victim), filepath.Join(p, "Mail"))
			},
			code: 450, enhanced: "4.2.0",
		},
		{
			name: "first of two intermediate directories is a symlink", mbox: "Mail/sub/inbox", create: true,
			setup: func(t *testing.T, p, victim string) {
				writeFile(t, filepath.Join(filepath.Dir(victim), "sub", "inbox"), victimContent)
				symlink(t, filepath.Dir(victim), filepath.Join(p, "Mail"))
			},
			code: 450, enhanced: "4.2.0",
		},
		{
			name: "symlink inside the tree to another directory of the tree", mbox: "Mail/sub/inbox", create: true,
			setup: func(t *testing.T, p, victim string) {
				writeFile(t, filepath.Join(p, "real", "inbox"), "real mailbox\n")
				mkdir(t, filepath.Join(p, "Mail"))
				symlink(t, "../real", filepath.Join(p, "Mail", "sub"))
			},
			code: 450, enhanced: "4.2.0",
		},
		{
			name: "intermediate directory is a relative symlink escaping with ..", mbox: "Mail/victim",
			setup: func(t *testing.T, p, victim string) {
				rel, err := filepath.Rel(p, filepath.Dir(victim))
				if err != nil {
					t.Fatal(err)
				}
				symlink(t, rel, filepath.Join(p, "Mail"))
			},
			code: 450, enhanced: "4.2.0",
		},
		{
			name: "name with ..", mbox: "../victim/victim", create: true,
			setup: func(t *testing.T, p, victim string) {},
			code:  501, enhanced: "5.5.4",
		},
		{
			name: "name with .. inside", mbox: "Mail/../../victim/victim", create: true,
			setup: func(t *testing.T, p, victim string) { mkdir(t, filepath.Join(p, "Mail")) },
			code:  501, enhanced: "5.5.4",
		},
		{
			name: "hard-linked mailbox", mbox: "inbox",
			setup: func(t *testing.T, p, victim string) {
				if err := os.Link(victim, filepath.Join(p, "inbox")); err != nil {
					t.Fatal(err)
				}
			},
			code: 450, enhanced: "4.2.0",
		},
		{
			name: "FIFO", mbox: "inbox", create: true,
			setup: func(t *testing.T, p, victim string) {
				if err := unix.Mkfifo(filepath.Join(p, "inbox"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			code: 550, enhanced: "5.2.0", never: true,
		},
		{
			name: "socket", mbox: "inbox", create: true,
			setup: func(t *testing.T, p, victim string) {
				l, err := net.Listen("unix", filepath.Join(p, "inbox"))
				if err != nil {
					t.Fatal(err)
				}
				l.(*net.UnixListener).SetUnlinkOnClose(false)
				t.Cleanup(func() { l.Close() })
			},
			code: 550, enhanced: "5.2.0", never: true,
		},
		{
			name: "directory", mbox: "inbox", create: true,
			setup: func(t *testing.T, p, victim string) { mkdir(t, filepath.Join(p, "inbox")) }, never: true,
			code: 550, enhanced: "5.2.0",
		},
		{
			name: "character device", mbox: "inbox", create: true, root: true,
			setup: func(t *testing.T, p, victim string) {
				if err := unix.Mknod(filepath.Join(p, "inbox"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
					t.Skip("mknod:", err)
				}
			},
			code: 550, enhanced: "5.2.0", never: true,
		},
		{
			name: "wrong owner", mbox: "inbox", root: true,
			setup: func(t *testing.T, p, victim string) {
				mb := filepath.Join(p, "inbox")
				writeFile(t, mb, "someone else's file\n")
				if err := os.Chown(mb, 65534, 65534); err != nil {
					t.Fatal(err)
				}
			},
			code: 450, enhanced: "4.2.0",
		},
		{
			name: "planted dot-lock symlink to the victim", mbox: "inbox",
			setup: func(t *testing.T, p, victim string) {
				writeFile(t, filepath.Join(p, "inbox"), testFrom+"old\n\n")
				symlink(t, victim, filepath.Join(p, "inbox.lock"))
			},
			code: 450, enhanced: "4.2.0",
		},
		{
			name: "planted dangling dot-lock symlink", mbox: "inbox",
			setup: func(t *testing.T, p, victim string) {
				writeFile(t, filepath.Join(p, "inbox"), testFrom+"old\n\n")
				symlink(t, filepath.Join(filepath.Dir(victim), "created-by-attack"), filepath.Join(p, "inbox.lock"))
			},
			code: 450, enhanced: "4.2.0",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				requireRoot(t)
			}
			p, d := testDir(t)
			victimDir := t.TempDir()
			victim := filepath.Join(victimDir, "victim")
			writeFile(t, victim, victimContent)
			tc.setup(t, p, victim)
			entries, _ := os.ReadDir(p)
			paths := []string{victim, filepath.Join(victimDir, "created-by-attack"), filepath.Join(victimDir, "inbox"),
				filepath.Join(p, "inbox.lock")}
			for _, e := range entries {
				paths = append(paths, filepath.Join(p, e.Name()))
			}
			snap := takeSnapshot(t, paths...)

			opt := testOptions()
			opt.Create = tc.create
			opt.LockTimeout = 200 * time.Millisecond
			opened := false
			setHook(t, func(stage string) error {
				opened = opened || stage == "open"
				return nil
			})
			err := appendWithin(t, 5*time.Second, d, tc.mbox, "attack\n", opt)
			wantStatus(t, err, tc.code, tc.enhanced)
			snap.check(t)
			if tc.never && opened {
				t.Errorf("a non-regular file was opened")
			}
		})
	}
}

// appendWithin fails the test if Append does not return in time (a FIFO
// must not hang the delivery).
func appendWithin(t *testing.T, limit time.Duration, d *os.File, name, body string, opt Options) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Append(d, name, strings.NewReader(body), opt)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("Append did not return within %v", limit)
		return nil
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
}

// TestRaces swaps the mailbox between the checks and the open, and while
// the lock is being taken, through the test hook.
func TestRaces(t *testing.T) {
	tests := []struct {
		name     string
		stage    string
		swap     func(t *testing.T, p, victim string)
		code     int
		enhanced string
	}{
		{"replaced by a FIFO before open", "open", func(t *testing.T, p, victim string) {
			mb := filepath.Join(p, "inbox")
			os.Rename(mb, mb+".saved")
			if err := unix.Mkfifo(mb, 0o600); err != nil {
				t.Fatal(err)
			}
		}, 550, "5.2.0"},
		{"replaced by a symlink before open", "open", func(t *testing.T, p, victim string) {
			mb := filepath.Join(p, "inbox")
			os.Rename(mb, mb+".saved")
			symlink(t, victim, mb)
		}, 450, "4.2.0"},
		{"replaced by a directory before open", "open", func(t *testing.T, p, victim string) {
			mb := filepath.Join(p, "inbox")
			os.Rename(mb, mb+".saved")
			mkdir(t, mb)
		}, 550, "5.2.0"},
		{"hard-linked before open", "open", func(t *testing.T, p, victim string) {
			os.Link(filepath.Join(p, "inbox"), filepath.Join(p, "link"))
		}, 450, "4.2.0"},
		{"replaced after open, before the comparison", "opened", func(t *testing.T, p, victim string) {
			mb := filepath.Join(p, "inbox")
			writeFile(t, filepath.Join(p, "new"), "replacement\n")
			os.Rename(mb, mb+".saved")
			os.Rename(filepath.Join(p, "new"), mb)
		}, 450, "4.2.0"},
		{"hard-linked while locking", "locked", func(t *testing.T, p, victim string) {
			os.Link(filepath.Join(p, "inbox"), filepath.Join(p, "link"))
		}, 450, "4.2.0"},
		{"replaced while locking", "locked", func(t *testing.T, p, victim string) {
			mb := filepath.Join(p, "inbox")
			writeFile(t, filepath.Join(p, "new"), "replacement\n")
			os.Rename(mb, mb+".saved")
			os.Rename(filepath.Join(p, "new"), mb)
		}, 450, "4.2.0"},
		{"removed while locking", "locked", func(t *testing.T, p, victim string) {
			mb := filepath.Join(p, "inbox")
			os.Rename(mb, mb+".saved")
		}, 450, "4.2.0"},
		{"replaced by a symlink while locking", "locked", func(t *testing.T, p, victim string) {
			mb := filepath.Join(p, "inbox")
			os.Rename(mb, mb+".saved")
			symlink(t, victim, mb)
		}, 450, "4.2.0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, d := testDir(t)
			victim := filepath.Join(t.TempDir(), "victim")
			writeFile(t, victim, victimContent)
			mb := filepath.Join(p, "inbox")
			const original = testFrom + "original\n\n"
			writeFile(t, mb, original)
			fired, locked := false, false
			setHook(t, func(stage string) error {
				if stage == tc.stage && !fired {
					fired = true
					tc.swap(t, p, victim)
				}
				locked = locked || stage == "locked"
				return nil
			})
			err := appendWithin(t, 5*time.Second, d, "inbox", "attack\n", testOptions())
			if !fired {
				t.Fatal("hook did not fire")
			}
			wantStatus(t, err, tc.code, tc.enhanced)
			if tc.stage != "locked" && locked {
				t.Errorf("a change before locking was not detected before locking")
			}
			if got := readFile(t, victim); got != victimContent {
				t.Errorf("victim changed: %q", got)
			}
			saved := mb
			if _, err := os.Lstat(mb + ".saved"); err == nil {
				saved = mb + ".saved"
			}
			if got := readFile(t, saved); got != original {
				t.Errorf("original mailbox changed: %q", got)
			}
			if _, err := os.Lstat(mb + ".lock"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dot-lock left behind")
			}
		})
	}
}

// TestCreateRace: the mailbox appears between our lstat (ENOENT) and our
// O_CREAT|O_EXCL; the existing-file path is taken once, with all checks.
func TestCreateRace(t *testing.T) {
	const theirs = testFrom + "theirs\n\n"
	tests := []struct {
		name     string
		plant    func(t *testing.T, mb, victim string)
		code     int // 0: success
		enhanced string
		want     string // mailbox afterwards ("" for not a file)
	}{
		{"regular file created meanwhile", func(t *testing.T, mb, victim string) { writeFile(t, mb, theirs) },
			0, "", theirs + testFrom + "x\n\n"},
		{"symlink planted meanwhile", func(t *testing.T, mb, victim string) { symlink(t, victim, mb) },
			450, "4.2.0", ""},
		{"FIFO planted meanwhile", func(t *testing.T, mb, victim string) {
			if err := unix.Mkfifo(mb, 0o600); err != nil {
				t.Fatal(err)
			}
		}, 550, "5.2.0", ""},
		{"hard link planted meanwhile", func(t *testing.T, mb, victim string) {
			if err := os.Link(victim, mb); err != nil {
				t.Fatal(err)
			}
		}, 450, "4.2.0", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, d := testDir(t)
			mb := filepath.Join(p, "inbox")
			victim := filepath.Join(t.TempDir(), "victim")
			writeFile(t, victim, victimContent)
			fired := 0
			setHook(t, func(stage string) error {
				if stage == "create" {
					fired++
					tc.plant(t, mb, victim)
				}
				return nil
			})
			err := appendWithin(t, 5*time.Second, d, "inbox", "x\n", testOptions())
			if fired != 1 {
				t.Fatalf("create hook fired %d times", fired)
			}
			if tc.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got := readFile(t, mb); got != tc.want {
					t.Errorf("mailbox %q, want %q", got, tc.want)
				}
			} else {
				wantStatus(t, err, tc.code, tc.enhanced)
			}
			if got := readFile(t, victim); got != victimContent {
				t.Errorf("victim changed: %q", got)
			}
		})
	}
}
