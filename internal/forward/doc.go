// Package forward reads ~/.forward files: the sendmail and Postfix forms
// and Exim's plain-address form, which share one grammar, and it
// recognises the two filter languages that may sit in the same file.
//
// # Grammar
//
// A .forward file is one of:
//
//   - An Exim filter: its first line begins with "# Exim filter" (any
//     case, any white space after "#"). Format EximFilter; reported as an
//     error (not converted), never read as addresses.
//   - A Sieve script: a first line "# Sieve filter" (Exim's marker), or a
//     first statement (after blank and "#" lines) that is Sieve and cannot
//     be a list of destinations: require followed by [ or ", if followed
//     by a test, keep; discard; stop; (with the semicolon), fileinto,
//     redirect, reject, vacation or notify followed by a string or a
//     :tag, or a /* comment. Format Sieve; reported, not converted. A
//     user called "keep" (the line "keep" without ";") stays an address.
//   - Otherwise a list (Format List), read by aliases.ParseList with
//     Options.Home: one list of elements per line, no continuation lines,
//     blank lines and lines beginning with "#" skipped. The elements are
//     those of aliases(5): \user, user, user@domain, |command,
//     "|command with args", /file, /maildir/, ~/file, :include:/file, and
//     Exim's :blackhole:, :fail: text, :defer: text and :unknown:.
//
// A UTF-8 byte order mark at the start is ignored. Every problem is an
// aliases.Diag naming file:line; parsing goes on.
//
// # Security
//
// Parse is pure: it reads bytes that the caller has opened, and the
// caller decides whether the file may be trusted (allowgen opens it
// beneath the home directory with no symlink in any component, and
// requires a regular file with one link, owned by the user or by root and
// world-readable, not writable by group or others). A .forward belongs to
// its user: everything in it is treated as that user's wish and nothing
// more. :include: elements are not followed here; the caller follows them
// with aliases.ExpandIncludes and an Opener that holds included files to
// the same rules. Nothing read is ever executed or resolved.
package forward
