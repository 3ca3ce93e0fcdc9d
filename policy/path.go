package policy

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the lexical checks.
const (
	MaxPathLen     = 4096 // bytes in a path (PATH_MAX)
	MaxNameLen     = 255  // bytes in one path component (NAME_MAX)
	MaxFolderLen   = 254  // bytes in a Maildir++ folder name ("." + name must fit NAME_MAX)
	MaxUserNameLen = 64   // bytes in a user name
)

// isControl reports C0 and C1 control characters and DEL.
func isControl(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)
}

// checkText refuses invalid UTF-8 and control characters (NUL included).
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("invalid UTF-8")
	}
	for _, r := range s {
		if r == 0 {
			return errors.New("contains NUL")
		}
		if isControl(r) {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}

// ValidUserName checks a user name before it is placed into any path or
// argument (%u). It refuses "", names longer than 64 bytes, invalid UTF-8,
// NUL, control characters and white space, "/", "*", "%", "..", and a
// leading "-" or ".".
func ValidUserName(name string) error {
	switch {
	case name == "":
		return errors.New("empty user name")
	case len(name) > MaxUserNameLen:
		return fmt.Errorf("user name longer than %d bytes", MaxUserNameLen)
	}
	if err := checkText(name); err != nil {
		return fmt.Errorf("user name %s: %v", strconv.Quote(name), err)
	}
	switch {
	case name[0] == '-':
		return fmt.Errorf("user name %s begins with -", strconv.Quote(name))
	case name[0] == '.':
		return fmt.Errorf("user name %s begins with .", strconv.Quote(name))
	case strings.Contains(name, ".."):
		return fmt.Errorf("user name %s contains ..", strconv.Quote(name))
	}
	for _, r := range name {
		switch {
		case r == '/' || r == '*' || r == '%':
			return fmt.Errorf("user name %s contains %q", strconv.Quote(name), r)
		case unicode.IsSpace(r):
			return fmt.Errorf("user name %s contains white space", strconv.Quote(name))
		}
	}
	return nil
}

// ValidPath checks a path lexically, before any system call: it must be
// absolute, clean (path.Clean(p) == p, so no "//", "/./", "/../" and no
// trailing "/"), without a ".." component, valid UTF-8 without NUL or
// control characters, at most 4096 bytes long with components of at most
// 255 bytes.
func ValidPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > MaxPathLen:
		return fmt.Errorf("path longer than %d bytes", MaxPathLen)
	}
	if err := checkText(p); err != nil {
		return fmt.Errorf("path %s: %v", strconv.Quote(p), err)
	}
	if p[0] != '/' {
		return fmt.Errorf("path %s is not absolute", strconv.Quote(p))
	}
	if path.Clean(p) != p {
		return fmt.Errorf("path %s is not clean (//, /./, /../ or a trailing /)", strconv.Quote(p))
	}
	if p == "/" {
		return nil
	}
	for rest, more := p[1:], true; more; { // strings.Split without the slice
		var c string
		c, rest, more = strings.Cut(rest, "/")
		switch {
		case c == "." || c == "..":
			return fmt.Errorf("path %s has a %s component", strconv.Quote(p), c)
		case len(c) > MaxNameLen:
			return fmt.Errorf("path %s has a component longer than %d bytes", strconv.Quote(p), MaxNameLen)
		}
	}
	return nil
}

// ValidFolder checks a Maildir++ folder name such as "Work" or
// "Lists.golang": non-empty dot-separated non-empty parts (so no leading,
// trailing or doubled "."), no "/", valid UTF-8 without NUL or control
// characters, at most MaxFolderLen (254) bytes. The empty name (INBOX) is
// not a folder name: callers check it only when non-empty.
func ValidFolder(name string) error {
	switch {
	case name == "":
		return errors.New("empty folder name")
	case len(name) > MaxFolderLen:
		return fmt.Errorf("folder name longer than %d bytes", MaxFolderLen)
	}
	if err := checkText(name); err != nil {
		return fmt.Errorf("folder %s: %v", strconv.Quote(name), err)
	}
	if strings.ContainsRune(name, '/') {
		return fmt.Errorf("folder %s contains /", strconv.Quote(name))
	}
	for _, part := range strings.Split(name, ".") {
		// Parts cannot contain "." so "." and ".." show up as empty parts.
		if part == "" {
			return fmt.Errorf("folder %s has an empty part (leading, trailing or doubled .)", strconv.Quote(name))
		}
	}
	return nil
}

// validUser checks both fields of u.
func validUser(u User) error {
	if err := ValidUserName(u.Name); err != nil {
		return err
	}
	if err := ValidPath(u.Home); err != nil {
		return fmt.Errorf("home directory: %v", err)
	}
	if u.Home == "/" {
		return errors.New("home directory / cannot hold mail")
	}
	return nil
}

// ValidProgramName checks a program's name as used in the policy and in
// destinations: a letter or digit, then letters, digits, ".", "_" and
// "-", at most 64 bytes. So "prog;id", "../../bin/sh" and "-x" are refused.
func ValidProgramName(name string) error {
	if name == "" {
		return errors.New("empty program name")
	}
	if len(name) > 64 {
		return errors.New("program name longer than 64 bytes")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum || i > 0 && (c == '.' || c == '_' || c == '-') {
			continue
		}
		return fmt.Errorf("program name %s: only letters, digits and . _ - are allowed, beginning with a letter or digit", strconv.Quote(name))
	}
	return nil
}

// validUserFile checks the user_file setting: a clean relative path.
func validUserFile(p string) error {
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("user_file %s must be relative to the home directory", strconv.Quote(p))
	}
	if p == "." {
		return errors.New(`user_file "." names the home directory`)
	}
	if err := ValidPath("/" + p); err != nil {
		return fmt.Errorf("user_file %s: must be a clean relative path without ..", strconv.Quote(p))
	}
	return nil
}
