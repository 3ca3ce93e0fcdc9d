// Package worker is `lda worker`: the process that performs one delivery
// as the destination user. The spawn package starts it with the user's uid
// and gid, no supplementary groups, an empty environment and only these
// descriptors: 0 the job record, 1 the result record, 2 diagnostics,
// 3 the message (read with pread only, so that workers sharing one spool
// file never disturb each other's offsets) and 4 the system policy file.
//
// A warm worker (`lda worker warm`, started by the daemon's pool) has the
// same credentials and restrictions but gets a SOCK_SEQPACKET socket as
// descriptor 3: each job arrives as one packet carrying a message
// descriptor (close-on-exec) that no one can change through: a memfd
// sealed against writing, shrinking and growing, or a read-only one
// (job.CheckMessage), and the answer goes back as progress packets
// and one result packet, on the reply socket that the first packet
// carries (seqpacket.AcceptReply: it must be a connected Unix
// SOCK_SEQPACKET socket; a worker never writes on descriptor 3). It binds
// itself to the user, home and policy of its first job and refuses, then
// exits on, a job for anyone else.
//
// A direct worker (`lda worker direct`) is a warm worker whose socket root
// hands to the listener after writing a bind record (job.ModeBind) on it:
// the first record it reads is root's, and it takes its user, uid, gid,
// home, policy (fd 5) and Sieve directory from it. The second, the
// listener's, carries the reply socket. It serves deliver, filter and
// envelope jobs of that identity only, checks every message descriptor as
// above, and before an mbox
// append (or before creating a Maildir file in tmp/) writes the recover job
// that would undo it into the memfd on fd 4, which root reads after the
// worker's death (job.Recovery: the memfd mapped shared, two slots and a
// header stored last, so a death at any instruction leaves a whole
// record); it clears the record before it answers. A plain mbox delivery
// answers as soon as its message is on stable storage
// (mbox.Options.Durable), with the mailbox still locked; the unlock and
// the closes follow the answer. A direct job may say on which CPU the
// listener is gathered (job.Job.Gather, "cpu N"): the worker moves its
// own threads there before the job runs, and back to the mask it started
// with for a job that says nothing (package affinity; never outside that
// mask); a program it runs gets that starting mask (affinity.Spawn).
// Where a worker runs changes how soon it answers, never what.
//
// # Security
//
// It trusts nothing it is given. In order it:
//
//  1. makes itself harmless: PR_SET_NO_NEW_PRIVS on all threads, not
//     dumpable, RLIMIT_CORE 0, umask 077;
//  2. refuses to run as uid or euid 0, and refuses a job whose uid and gid
//     are not its own;
//  3. decodes the job strictly (package job);
//  4. reads the system policy from fd 4 and the user's own policy file as
//     the user, ignoring (with a warning) a file not owned by the user or
//     writable by group or others; a warm worker that found none of the
//     user's files (policy, Sieve scripts) in a home it had seen unchanged
//     for a while looks again only when a stat of the home shows it
//     changed in any way (device, inode, size, times), since creating any
//     name in it changes its change time (home.go);
//  5. checks the destination with policy.Check, which refuses bad paths
//     lexically before any file system call; a warm worker gives it the
//     system's rules already expanded for its user (policy.Expansion,
//     used only for that System and user);
//  6. opens the decision's trusted Root and lets mbox.Append or
//     maildir.Deliver open Rel beneath it without following any symlink;
//     a warm worker keeps its last two Roots and its Maildir INBOX's
//     directories open between jobs, and reuses one only after finding,
//     on this job, that its path still leads to that very directory
//     (stat of the Root's path; fstatat without following symlinks for
//     each directory beneath it; device, inode, type and owner), which is
//     what opening it again would give (roots.go, maildir.Dirs);
//     runs an allowed program only if it and every directory above it are
//     owned by root and not writable by others, with argv and never a shell;
//  7. reports exactly one Status; for mbox it first reports where the append
//     starts, so that the parent can have a dead worker's partial message
//     cut off again (mbox.Recover).
package worker
