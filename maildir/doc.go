// Package maildir delivers one message into a Maildir
// (https://cr.yp.to/proto/maildir.html) or into a Maildir++ folder of one
// (Courier's Maildir++: a folder "A.B" is the maildir ".A.B" inside the
// root maildir, marked by an empty "maildirfolder" file), durably and
// without following symlinks.
//
// The package is pure: it takes an open directory and names relative to it,
// and knows nothing of users, uids or configuration. The caller runs it with
// the recipient's credentials, in a process that may write only what that
// user may write.
//
// # Delivery order
//
// Deliver does exactly this, in this order:
//
//  1. Validate the maildir name lexically (relative, clean, no "..", no NUL
//     or control character, valid UTF-8), the folder with ValidFolder, the
//     flags with ParseFlags and the host name, before any system call.
//  2. Open the maildir beneath dir with openat2(O_RDONLY|O_DIRECTORY|
//     O_CLOEXEC, RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS).
//     If it is missing and Options.Create is set, walk it one component at a
//     time, mkdirat'ing each missing one with mode 0700, opening it the same
//     way and fchmod'ing it to 0700 (so a umask of 000 or a default ACL
//     cannot loosen it), fsync'ing each parent; a new maildir gets tmp/
//     new/ cur/. Then the folder "."+folder beneath the maildir the same way
//     (Options.CreateFolders; a new folder also gets tmp/ new/ cur/ and
//     "maildirfolder", 0600). Then tmp/ and new/ (cur/ when flags are given)
//     the same way. Each opened directory is fstat'ed to be a directory.
//  3. Create "<unique>" in tmp/ with openat(O_WRONLY|O_CREAT|O_EXCL|
//     O_NOFOLLOW|O_CLOEXEC, 0600), then fchmod it to 0600. On EEXIST a new
//     unique name is drawn: a planted name is never opened or overwritten.
//     Options.Creating, if set, hears each name first, so that a caller
//     that may be killed mid-write can have the file removed afterwards
//     (RemoveTmp: the same walk, nothing created, a regular file only).
//  4. Copy the message (kernel copy from an *os.File, else a 256 KiB
//     buffer), fsync the file and close it, checking the close error.
//  5. Link it into new/ (or cur/) as "<unix seconds>.M<microseconds>P<pid>
//     Q<counter>R<16 hex random>.<host>,S=<size>" (plus ":2,<sorted flags>"
//     in cur/) with renameat2(RENAME_NOREPLACE), which never replaces an
//     existing name (EEXIST: a new unique name, up to 8 tries). Where the
//     file system has no RENAME_NOREPLACE (EINVAL) linkat is used, which
//     never replaces either, and the tmp name is then unlinked.
//  6. fsync new/ (or cur/). If that fails, the new entry is unlinked, the
//     directory fsync'ed again and the error returned: success is never
//     reported for a message that may not survive a crash.
//  7. On any failure the tmp file is unlinked and nothing is left in new/
//     or cur/.
//
// # Security
//
// Trusted: the directory dir given by the caller (it is where the caller's
// policy put the mailbox; it may be reached through any path), and the
// kernel's openat2 resolution. Everything beneath dir is untrusted: the
// user, or anyone able to write there, may have planted symlinks, files or
// names.
//
// Checked, in this order: (1) names, lexically, before any system call, so
// "../x", "/etc", "a//b", "a/./b", a trailing "/", NUL and control
// characters never reach the kernel, and folder names such as "../x",
// "a/b", ".", "..", "a..b" or longer than 254 bytes are refused; (2) every
// directory (each component of the maildir path, the folder, tmp/, new/,
// cur/) is resolved beneath its parent with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS, so a symlink anywhere, including one planted where
// Create would make a directory, fails with ELOOP or EXDEV (450 4.2.0 via
// status.From) and nothing is written through it; kernels without openat2
// get the equivalent walk of single components opened with O_NOFOLLOW;
// (3) each directory is fstat'ed once, as it is opened, to be a directory
// (and, with Options.CheckOwner, below, the recipient's); (4) the message
// file is created O_EXCL|O_NOFOLLOW, so a planted name in tmp/ (file,
// symlink, FIFO) is never opened, and is 0600 whatever the umask;
// (5) the final name is made with RENAME_NOREPLACE or linkat, never with a
// rename that could replace a planted name in new/ or cur/; (6) nothing is
// visible in new/ or cur/ before the file is fsync'ed, and success is
// returned only after new/ or cur/ is fsync'ed (the order of qmail-local,
// with fsync added).
//
// With Options.CheckOwner (the worker always sets it), the maildir, the
// folder, tmp/ and new/ (or cur/) must be owned by the recipient: a maildir
// pre-created by another user is refused with 450 4.2.0, since that user
// could remove mail after it was acknowledged. Each is checked before
// anything is made inside it, so Create never adds tmp/ new/ cur/ to a
// maildir of another user. Not checked: the modes of those directories.
//
// With Options.Dirs (lda's warm worker), step 2 for a delivery into the
// INBOX's new/ of a one-component maildir name may reuse the root, tmp/ and
// new/ of the last delivery instead of opening them again, but only after
// looking each up afresh beneath its parent with fstatat(AT_SYMLINK_NOFOLLOW)
// and finding the very directory held open (device and inode; a held
// directory's inode number cannot be taken by another), still a directory
// and, with CheckOwner, still the recipient's: what step 2 would open at
// that instant. Any difference, and any failed delivery, closes them and
// the delivery opens and checks everything as above. The caller keeps dir
// itself valid the same way (see Dirs).
//
// Errors carry a *status.Status for the package's own conditions (invalid
// name: 451 4.3.5; invalid folder: 550 5.7.1; invalid flags: 501 5.5.4; not
// a directory: 450 4.2.0) and wrap the errno otherwise, so status.From maps
// ENOSPC to 452 4.3.1, EDQUOT to 552 5.2.2, ENOENT, ELOOP and EXDEV to
// 450 4.2.0 and EIO to 451 4.3.0.
package maildir
