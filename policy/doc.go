// Package policy is lda's allowed-destination policy: which mailboxes,
// maildirs and programs a recipient may receive into.
//
// It is pure. It switches no uid and opens no file of a user: ParseSystem
// and ParseUser parse an io.Reader the caller opened (LoadSystem opens the
// administrator's file), and Check returns a Decision without any system
// call. The file formats are described in lda-policy(5).
//
// A System is the administrator's file (/etc/lda/policy.yaml), a
// UserPolicy a recipient's own file (~/.lda.yaml), parsed for that one
// user. A Policy pairs them; Check and Default answer for one destination.
// All three are immutable after parsing and safe for concurrent use. A
// caller that checks many destinations for one user (a warm worker) may
// expand the system's rules for that user once, with System.Expand, and
// give the Expansion as Policy.X; Check (and Default, for the system's
// default destination) uses it only if it was made for the very System
// and User being checked, and otherwise expands afresh, so the answer
// never depends on it (FuzzCheck holds the two to each other). The texts
// a decision quotes are made once per rule, when the file is read.
//
// # Security
//
// What it trusts. The system file (LoadSystem refuses one that is not a
// regular file owned by root or by the calling user, or that is writable
// by group or others),
// and the User it is given: the name and home directory from the user
// database. It trusts them only after checking them lexically:
// ValidUserName and ValidPath, and a home directory other than "/". It
// does not trust the user's file, any destination, any folder name or any
// program name: those may come from a sender (+detail), a Sieve script or
// the user.
//
// What it checks, in this order (Check):
//
//  1. Lexically, before any rule: the User (ValidUserName, ValidPath on
//     the home); that a UserPolicy was parsed for this very user; the
//     kind; for Mbox and Maildir ValidPath(Path) (absolute, clean: no "//",
//     "/./", "..", trailing "/", no NUL or control characters, at most
//     4096 bytes), for Maildir ValidFolder(Folder) when not "" (and no
//     folder for Mbox); for Program a well-formed name that the system file
//     defines. A refusal here has Rule == nil and a Reason that says why.
//  2. The user's deny rules: a match denies (Rule = that rule).
//  3. The system's deny rules: a match denies.
//  4. The system's allow rules: the first match allows.
//  5. The user's allow rules, each re-checked against the system's
//     user_may_add rules at check time: a destination is allowed only if
//     a user rule and a user_may_add rule both match it.
//  6. Otherwise it is denied, Rule nil, Reason "no rule allows <dest>".
//
// A Maildir++ folder is allowed only if the rule that matches the maildir
// admits folders (folders: true, the default); for a user's rule the
// user_may_add rule must admit them too.
//
// Matching is done on whole path components, never on string prefixes:
// "/home/a/Mail" does not admit "/home/a/Mail2/x", nor "/home/a/Mail/x"
// unless the pattern says "**". "*" never matches "/"; wildcards never
// match a component that begins with "." (so "~/**" does not reach
// "~/.ssh"); "~" and "%u" are replaced by the home directory and the
// user name, which were validated first, so a name such as "../x", "*",
// "a/b" or "-x" can never change what a pattern means.
//
// Root and Rel. An allowed Mbox or Maildir decision carries Root, a
// directory that comes from the administrator, and Rel, the destination
// relative to it. The worker opens Root (trusted, so it may follow
// administrator-made symlinks) and then Rel beneath it with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so a symlink or ".."
// planted by anyone on the way cannot lead outside. Root is:
//
//   - for a pattern that begins with "~": the user's home directory;
//   - otherwise: the pattern's literal directory prefix, the leading
//     components before the first component that contains a wildcard or
//     "%u", never including the pattern's last component. So
//     "/var/mail/%u" has Root "/var/mail" and "/srv/mail/*/box" has Root
//     "/srv/mail". An allow or user_may_add pattern without such a
//     directory (such as "/*" or "/%u/x") is a parse error; Root is never
//     "/".
//   - for a destination allowed by a user's rule: the Root of the
//     system's user_may_add rule that admits it, never one derived from
//     the user's own pattern (whose directories the user controls).
//
// Check verifies, before it answers, that Rel is not "", not ".", not
// absolute, has no "." or ".." component and that filepath.Join(Root, Rel)
// equals the destination path; otherwise it refuses.
//
// The user's file only narrows or adds where the administrator lets users
// add: ParseUser refuses (with file:line) an allow rule that is not
// provably inside a user_may_add rule of the same kind (the inclusion
// test is sound, and conservative for unusual globs), a program that
// user_may_add does not list, a rule both allowed and denied, a default
// that is not allowed, and a deny of the effective default without a
// default of its own. So a user's "allow /" or "allow /**" is an error,
// not a widening. The caller must read the user's file as the user, and
// use it only if it is a regular file owned by the user and not writable
// by group or others.
//
// Programs are chosen by name from the system file's programs section;
// argv is fixed there (argv[0] an absolute path), only %u is replaced in
// later arguments, and no shell is ever involved: "prog;id", "../../bin/sh"
// and "prog || sh" are not program names.
//
// Both files are plain YAML decoded with KnownFields(true): unknown and
// duplicate keys, anchors, aliases, merge keys, explicit tags, more than
// one document and files over 1 MiB are errors, each reported as
// "FILE:LINE: text".
package policy
