// Package userdb resolves a user name to the account facts delivery needs:
// uid, gid and home directory.
//
// Three backends exist: the passwd file, parsed in pure Go; NSS through
// getent(1), so that LDAP or sssd users resolve in a CGO_ENABLED=0 binary;
// and a YAML map of virtual users onto a system uid and a mail directory.
//
// Security: names are validated (policy.ValidUserName) before any lookup,
// so nothing that starts with "-" or holds a separator ever reaches getent's
// argv or a comparison. Results are validated too: the home directory must
// be an absolute clean path and the uid and gid plain decimal numbers.
package userdb

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"lda/internal/affinity"
	"lda/policy"
)

// User is one account.
type User struct {
	Name     string
	UID, GID int
	Home     string

	bad string // passwd: the name is there, but its entry is unusable (why)
}

// BadEntryError is a passwd line whose user name is valid but whose uid,
// gid or home directory is not. The user exists, so mail for it must wait
// for the entry to be fixed (4xx), not bounce as "no such user".
type BadEntryError struct {
	Name, Reason string
}

func (e *BadEntryError) Error() string {
	return fmt.Sprintf("userdb: passwd entry of %q: %s", e.Name, e.Reason)
}

// passwdFile is /etc/passwd; tests point it elsewhere.
var passwdFile = "/etc/passwd"

// ErrNotFound means the user does not exist.
var ErrNotFound = errors.New("userdb: no such user")

// Lookup finds name by a backend: "passwd" (the file /etc/passwd),
// "getent" (NSS) or "yaml:PATH" (a map of virtual users, virtual.go). Any
// other value is an error.
func Lookup(backend, name string) (*User, error) {
	if err := policy.ValidUserName(name); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	switch backend {
	case "passwd", "":
		m, err := users(passwdFile, parsePasswd)
		if err != nil {
			return nil, err
		}
		if u := m[name]; u != nil {
			if u.bad != "" {
				return nil, &BadEntryError{Name: name, Reason: u.bad}
			}
			return copyOf(u), nil
		}
		return nil, ErrNotFound
	case "getent":
		return lookupGetent(name)
	}
	if path, ok := strings.CutPrefix(backend, "yaml:"); ok {
		return lookupVirtual(path, name)
	}
	return nil, fmt.Errorf("userdb: unknown backend %q", backend)
}

// LookupUID finds the passwd entry of uid in /etc/passwd.
func LookupUID(uid int) (*User, error) {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return lookupPasswd(f, func(u *User) bool { return u.UID == uid })
}

func lookupPasswd(r io.Reader, match func(*User) bool) (*User, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		u, err := ParsePasswdLine(sc.Text())
		if err != nil {
			continue // comments, NIS "+" lines and garbage are not users
		}
		if match(u) {
			return u, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, ErrNotFound
}

// ParsePasswdLine parses one passwd(5) line.
func ParsePasswdLine(line string) (*User, error) {
	f := strings.Split(line, ":")
	if len(f) != 7 {
		return nil, errors.New("userdb: malformed passwd line")
	}
	if policy.ValidUserName(f[0]) != nil {
		return nil, errors.New("userdb: bad user name")
	}
	uid, err1 := strictAtoi(f[2])
	gid, err2 := strictAtoi(f[3])
	if err1 != nil || err2 != nil {
		return nil, &BadEntryError{Name: f[0], Reason: "bad uid or gid"}
	}
	if err := policy.ValidPath(f[5]); err != nil {
		return nil, &BadEntryError{Name: f[0], Reason: "home directory " + strconv.Quote(f[5]) + " is not an absolute clean path"}
	}
	return &User{Name: f[0], UID: uid, GID: gid, Home: f[5]}, nil
}

func strictAtoi(s string) (int, error) {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("bad number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("bad number")
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > 1<<31-1 {
		return 0, errors.New("bad number")
	}
	return int(n), nil
}

func lookupGetent(name string) (*User, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "getent", "passwd", "--", name)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	// Started spread even from a gathered listener (affinity.Spawn).
	err := affinity.Spawn(cmd.Start)
	if err == nil {
		err = cmd.Wait()
	}
	out := stdout.Bytes()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("userdb: getent: %w", err)
	}
	line, _, _ := bytes.Cut(out, []byte("\n"))
	u, err := ParsePasswdLine(string(line))
	if err != nil || u.Name != name {
		return nil, fmt.Errorf("userdb: getent returned an unusable entry for %q", name)
	}
	return u, nil
}
