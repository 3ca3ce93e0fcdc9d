package policy

import (
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Kind is the kind of a destination.
type Kind int

// The destination kinds.
const (
	Mbox Kind = iota + 1
	Maildir
	Program
)

// String returns "mbox", "maildir" or "program".
func (k Kind) String() string {
	switch k {
	case Mbox:
		return "mbox"
	case Maildir:
		return "maildir"
	case Program:
		return "program"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind is the inverse of Kind.String. Only the lower-case names are
// accepted.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "mbox":
		return Mbox, nil
	case "maildir":
		return Maildir, nil
	case "program":
		return Program, nil
	}
	return 0, fmt.Errorf("unknown destination kind %s (want mbox, maildir or program)", quote(s))
}

// User is the recipient as the user database describes it. Name must pass
// ValidUserName and Home must pass ValidPath (and not be "/"); Check
// refuses everything for a User that does not.
type User struct {
	Name string
	Home string
}

// Destination is where a message is to be delivered.
type Destination struct {
	Kind    Kind
	Path    string // absolute path, for Mbox and Maildir
	Folder  string // Maildir++ folder for Maildir ("" = INBOX), e.g. "Work" or "Lists.golang"
	Program string // program name, for Program
}

// String describes d on one line, e.g. `maildir /home/a/Maildir folder Work`.
// Values that are not plain printable text are quoted.
func (d Destination) String() string {
	switch d.Kind {
	case Mbox:
		return "mbox " + quote(d.Path)
	case Maildir:
		if d.Folder != "" {
			return "maildir " + quote(d.Path) + " folder " + quote(d.Folder)
		}
		return "maildir " + quote(d.Path)
	case Program:
		return "program " + quote(d.Program)
	}
	return d.Kind.String()
}

// Rule is one rule of a policy file, as written, with its position.
type Rule struct {
	File    string
	Line    int
	Source  string // "system" or "user"
	Action  string // "allow", "deny", "default" or "user_may_add"
	Kind    Kind
	Pattern string // as written in the file (a program name for Program)
}

// String returns e.g. "/etc/lda/policy.yaml:12: allow mbox /var/mail/%u".
func (r *Rule) String() string {
	if r == nil {
		return "(no rule)"
	}
	return r.File + ":" + strconv.Itoa(r.Line) + ": " + r.Action + " " + r.Kind.String() + " " + quote(r.Pattern)
}

// ProgramSpec is how to run an allowed program: never through a shell.
type ProgramSpec struct {
	Name    string
	Argv    []string      // absolute argv[0]; %u in later args already expanded
	Timeout time.Duration // default 5m
}

// Decision is the result of Check.
type Decision struct {
	Allowed bool
	// Internal marks a refusal that comes from an inconsistency in lda
	// itself rather than from the rules; the caller answers it as a
	// temporary failure (an unknown error is never permanent).
	Internal bool
	// Rule is the rule that decided; nil if nothing matched or the
	// destination was refused before any rule was consulted.
	Rule *Rule
	// Reason is a one-line human explanation for `lda explain` and logs.
	Reason string
	// Root is, for an allowed Mbox or Maildir, the trusted absolute
	// directory beneath which the destination is to be opened. It comes
	// from the administrator's file, never from a user's file.
	Root string
	// Rel is the destination path relative to Root: never "", never ".",
	// never absolute, never containing a ".." component;
	// filepath.Join(Root, Rel) == Destination.Path.
	Rel string
	// Create reports that the mailbox or maildir may be created if missing.
	Create bool
	// CreateFolders reports that Maildir++ folders may be created.
	CreateFolders bool
	// Program is, for an allowed Program, how to run it.
	Program *ProgramSpec
}

// ParseError is the error of ParseSystem and ParseUser: a problem at a
// line of a file. Error returns "FILE:LINE: text".
type ParseError struct {
	File string
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// quote returns s as it is if it is plain printable text without spaces or
// quotes, and Go-quoted otherwise, so that a log line stays one line and
// unambiguous.
func quote(s string) string {
	if s == "" {
		return `""`
	}
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '\\' || isControl(r) || r == utf8.RuneError {
			return strconv.Quote(s)
		}
	}
	return s
}
