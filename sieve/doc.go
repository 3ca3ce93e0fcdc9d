// Package sieve is lda's pure Sieve core: it loads user and system scripts
// with github.com/foxcpp/go-sieve, runs them on a parsed message (or on the
// envelope alone, at RCPT time) and returns validated actions.
//
// The package never opens a file, changes a uid or talks to the network:
// scripts and messages come from readers given by the caller, and the caller
// carries out the actions (keep, fileinto, redirect, reject, discard).
//
// go-sieve leaves several checks to its users (see the notes in
// /work/shared/notes/dependencies.md); this package adds them:
//
//   - fileinto names become Maildir++ folder names (policy.ValidFolder);
//     "INBOX" in any case means keep; "/" is mapped to ".";
//   - redirect addresses must be RFC 5321 mailboxes, at most 320 bytes,
//     without CR, LF, NUL, space or a leading "-";
//   - RFC 5429: at most one reject or ereject, and never together with
//     keep, fileinto or redirect;
//   - the number of distinct redirects and actions is capped;
//   - scripts are limited in size, tokens and variables, and each run has a
//     deadline.
//
// At RCPT time (RunEnvelope) every access to the message and to the
// envelope is recorded. A run that touches no part of the message is
// decided, and equals Run on every message; a run that reaches the message
// before reading anything of the envelope (Outcome.MessageFirst) would
// reach it there for every envelope, so the caller may stop asking at RCPT
// time until the scripts change. Both are property-tested over generated
// scripts, envelopes and messages. A *Script is never changed by a run, so
// a caller may keep one while its file is unchanged.
//
// Any runtime error of a script, and any invalid action, discards every
// action of every script and yields exactly one implicit Keep together with
// Outcome.ScriptError. Only temporary failures (deadline, I/O) are returned
// as errors; they must become a 4xx reply, never a keep.
//
// Importing this package sets go-message's CharsetReader (if it is nil) to a
// small decoder for US-ASCII, UTF-8, ISO-8859-1, ISO-8859-15 and
// Windows-1252 (other ISO-8859 and Windows code pages keep their US-ASCII
// subset), so that body :text and :content can read Latin-1 parts.
package sieve
