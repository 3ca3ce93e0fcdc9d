// Package mbox appends one message to a Unix mbox file safely, undoes a
// partial append, and reads mbox files back.
//
// The format is the "default" mbox database format of RFC 4155: every
// message starts with a From_ line ("From <sender> <ctime>"), ends with a
// line feed, and is followed by one empty line. Lines of the body that
// would be taken for a From_ line are quoted with '>'.
//
// # Quoting
//
// Two quoting schemes are supported:
//
//   - MboxRD (the default): every line matching "^>*From " (with the
//     space) gets one more '>', and a reader removes exactly one. This is
//     reversible: any body, including one that already contains ">From "
//     lines, reads back byte for byte.
//   - MboxO: only lines matching "^From " get a '>'. A reader cannot tell a
//     quoted "From " from a ">From " that was in the message, so the body
//     is altered on the round trip. Offered for readers that expect it.
//
// MboxRD is the default because it is the only one of the two that is
// lossless; a reader that knows only mboxo shows a few extra '>' in a few
// lines, which is harmless.
//
// The body is copied byte for byte: line endings are not converted (LF is
// expected; CRLF is left as is), a missing final line feed is added, and
// quoting is decided at line starts only, with no line length limit and
// no dependence on where buffers or reads happen to split the input
// (sendmail mail.local CVE-2000-0319 split long lines).
//
// # The From_ line
//
// FromLine writes "From <sender> <ctime>\n" with ctime in the layout
// "Mon Jan _2 15:04:05 2006" in the location of the time given (Append
// uses time.Now() in the local zone when Options.Time is zero). The null
// sender "" is written as MAILER-DAEMON, as Postfix and sendmail do.
//
// The sender is envelope data and may come from a remote peer. It is
// refused (status.Usage, 501 5.5.4) if it contains a CR, LF, NUL, TAB or
// any other C0/C1 control character or DEL, is not valid UTF-8, or is
// longer than 998 bytes; so it can never end the From_ line early or
// inject a line (nor contain U+2028 or U+2029, which end a line for some
// Unicode-aware readers). Otherwise it is written exactly as given: a sender with
// a space reaches us only as an RFC 5321 quoted local part
// ("john doe"@example.org) and is written so, quotes included, as Postfix
// does. A space cannot forge a message boundary (only a line start can),
// and mbox readers that parse the From_ line (mutt, Dovecot) accept quoted
// local parts or take the date from the end of the line.
//
// # Security
//
// What the package trusts: the directory handle given to Append and
// Recover (the caller opened it, as the right user, from configuration),
// and its own process. What it does not trust: every name beneath that
// directory, the type, owner, link count and contents of the mailbox and
// its lock file, and every other process that can write the directory,
// including the mailbox's owner.
//
// The name is checked lexically first (not empty, relative, no empty, "."
// or ".." component, no control character) and refused with status.Usage.
//
// The mailbox is then opened in the order of Postfix's safe_open (see
// src/util/safe_open.c and src/global/mbox_open.c in Postfix), adapted to
// openat2(2):
//
//  1. The parent directory is opened with openat2 beneath the given
//     directory with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
//     RESOLVE_NO_MAGICLINKS, so no component may be a symlink and nothing
//     may escape (ELOOP/EXDEV: status.MailboxUnavail). Every later step
//     works relative to that descriptor, so renaming a directory on the
//     path in between cannot redirect us. A mailbox directly beneath the
//     given directory (a name of one component) uses that directory's own
//     descriptor, which is what opening "." beneath it would give.
//  2. lstat (fstatat AT_SYMLINK_NOFOLLOW) of the last component: a symlink
//     is refused (MailboxUnavail); anything but a regular file is refused
//     with status.NotRegular (550 5.2.0) before it is ever opened, so a
//     device is not opened at all. A missing file is created (below).
//  3. open with openat2, O_RDWR|O_APPEND|O_NONBLOCK|O_NOFOLLOW|O_NOCTTY|
//     O_CLOEXEC and the same RESOLVE flags. O_NONBLOCK: a FIFO swapped in
//     after step 2 cannot hang us (OpenSMTPD 2015); a socket fails with
//     ENXIO (NotRegular). O_APPEND: every write goes to the end of the
//     file even if a program that ignores our locks appends at the same
//     time, so we can never overwrite its data; O_RDWR because the last
//     two bytes must be read to repair a missing separator and Recover
//     must read the region it would truncate.
//  4. fstat of the descriptor: regular file (else NotRegular), st_nlink
//     == 1 (else MailboxUnavail: Exim CVE-2010-2023), st_uid == Owner
//     (else MailboxUnavail, a temporary failure so the administrator can
//     fix it).
//  5. lstat of the name again; it must agree with the fstat on dev, ino,
//     nlink, mode and uid: what was checked is what was opened.
//  6. Lock (below).
//  7. After locking, fstat again (nlink == 1) and lstat the name again
//     (still the same dev/ino): the file may have been replaced or linked
//     while we waited. Else MailboxUnavail.
//  8. Only now the size is taken as the original size. The message is
//     read and quoted into the write buffer; just before its first
//     write(2), with a kernel lock (fcntl or flock), the append intent
//     (intent.go) is set, an extended attribute "user.lda.append" naming
//     the offset, and the length and a SHA-256 prefix of the From_ line
//     about to be written (at most 59 bytes, so that beside no other
//     attribute it stays in the inode); one already there was left by a
//     writer that died mid-append (its kernel locks died with it), and
//     its region is cut off first, with Recover's checks. Then the
//     message is appended, the intent removed, and the descriptor
//     fsync'ed (and the directory, if the file was created); an intent
//     that cannot be removed takes its message with it. Options.Durable
//     is called only then, with the locks still held, so no intent is
//     ever left beside a message that was answered. On any failure of a
//     read, write, fsync or close, the file is truncated back to the
//     original size while still locked, and fsync'ed; fsync is never
//     retried (a retried fsync can succeed after the data was dropped).
//     So a killed lda writer's partial message is cut off by whichever
//     lda writer takes the locks next, before a later message could
//     follow it, not only by Recover run after the death. With a
//     dot-lock alone, or where the file system keeps no user extended
//     attributes, there is no intent, and only Recover's own checks
//     apply.
//
// A missing mailbox (ENOENT on the last component only; a missing
// directory is MailboxUnavail) is created only if Options.Create is set,
// with openat2 O_CREAT|O_EXCL mode 0600 (O_EXCL never follows a symlink),
// fchmod'ed to 0600 whatever the umask, and fchown'ed to Owner if it
// differs (which only root can do). If creation loses a race (EEXIST),
// the existing-file path is tried once more.
//
// With Options.Held (lda's warm worker), steps 2 to 5 may be skipped:
// step 1 is taken as always (the parent directory opened afresh), then
// the file the last append to that name beneath the same directory handle
// left open is locked (step 6) and put through step 7, which every append
// makes: one link, the owner's uid, and the last component looked up
// afresh in the parent with fstatat(AT_SYMLINK_NOFOLLOW) still the very
// file held (device and inode, which no other file can take while it is
// held open; looked at once before locking too, so that no lock is waited
// for on a file that is no longer the mailbox), and faccessat2(AT_EACCESS)
// still granting the user read and write access, as step 3's open would.
// That is what steps 2 to 5 would have found at that instant, now under
// the lock. Anything else unlocks and closes
// it, and the append starts afresh from step 1; so does the append after
// a failed one. A held mailbox is never locked between appends. The
// caller keeps the directory handle itself valid (see Held).
//
// # Locking
//
// Locks are taken in this order, within one overall Options.LockTimeout
// (default 30s; then status.MailboxBusy, 450 4.2.0), and released in the
// reverse order on every path:
//
//   - DotLock: "<name>.lock" in the mailbox's directory, created with
//     O_CREAT|O_EXCL|O_NOFOLLOW 0600 beneath the same directory, so a
//     planted symlink or other file is never followed or written (Exim
//     CVE-2010-2024). It holds "<pid> <hostname>\n". Where the file system
//     allows, the lock is first made nameless (O_TMPFILE), its line
//     written, and only then linked to its name (linkat fails with EEXIST
//     on any existing name, symlinks included), so a process killed at any
//     moment never leaves an empty lock that only StaleLock can clear; the
//     O_EXCL creation is the fallback. A lock is stale, and
//     is removed with unlinkat (which removes a symlink, never its target)
//     and retried, when its mtime is older than Options.StaleLock (default
//     5m), or when it has our own format, our host name and a pid that no
//     longer exists (a killed worker: this lets Recover run at once). Our
//     own lock is touched while a long append runs, so it never looks
//     stale. It is removed at the end only if it is still the file we
//     created. If the directory is not writable (EACCES/EPERM), the result
//     is status.MailboxUnavail: we do not deliver without a lock we were
//     asked to take. There is an unavoidable window in dot-lock breaking
//     (two processes may both judge a lock stale); the kernel locks below
//     close it when they are also enabled.
//   - FcntlLock: an open file description lock (F_OFD_SETLK, whole file,
//     exclusive), polled until the deadline. Unlike classic POSIX locks it
//     belongs to the open file, so it also excludes other goroutines.
//   - Flock: flock(LOCK_EX|LOCK_NB), polled until the deadline.
//
// A lock found taken is tried again after a wait that starts at 25-75 us
// and doubles (randomised) up to 100 ms: the usual holder is another
// delivery, which lets go after one fsync. The wait is a nanosleep(2) on
// a thread held for it, with a timer slack of 10 us for the wait only,
// because the process's own may be far larger (lda's workers run with
// 10 ms) and the kernel adds it to every sleep.
//
// The package is pure: it does not change credentials. It compares the
// mailbox owner with Options.Owner, which the caller sets to its own uid
// after it has become the recipient.
package mbox
