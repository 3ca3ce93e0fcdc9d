// Package daemon is `lda serve`: the privilege-separated LMTP daemon.
//
// Three kinds of process, visible in the process tree:
//
//   - the root parent (Serve): it binds the sockets, starts the listener
//     and the workers, and accepts from the listener only request records
//     ("lda-req 1", package job) over a SOCK_SEQPACKET socketpair: deliver
//     (or filter, or evaluate the envelope) for one user, with one spool
//     descriptor attached; start a direct worker for one user ("worker"),
//     whose socket comes back with the reply; end one of those ("end").
//     It never parses LMTP.
//   - the listener (ListenerMain), running as an unprivileged service user
//     (never root): it authenticates every peer by SO_PEERCRED, speaks LMTP
//     (package lmtp), spools each message (a memfd up to
//     limits.spool_memory, sealed once the body is in; else an unlinked
//     file in spool_dir, reopened read-only) and has it delivered
//     recipient by recipient, by a direct worker or the parent.
//   - the workers (package worker), as the recipient: one per delivery,
//     or warm ones serving one user's jobs in turn. A direct worker is a
//     warm worker root started and bound to its user and whose socket it
//     handed to the listener, so that root is out of the delivery path.
//
// # Security
//
// The parent trusts the listener no more than an MTA. A request names a
// user, never a uid or a home: the parent looks the user up itself, refuses
// uid 0 and uids below the policy's min_uid, checks that the passed
// descriptor is a regular file that no one can change through (a memfd
// sealed against writing, shrinking and growing, or a read-only
// descriptor: job.CheckMessage), and leaves the authoritative policy check
// to the worker running as the user. So a compromised listener can deliver
// only to a user's allowed destinations. For a direct worker root writes
// the bind record (user, uid, gid, home, policy) before the listener holds
// the socket, and the worker refuses any job that names anything else; the
// worker, not root, then checks the message descriptor. Root caps the
// direct workers per listener, kills them when that listener's channel
// closes, and alone reaps them and reads their recovery records, so the
// listener cannot have a mailbox truncated or a file removed. A request that does not decode is
// a broken or hostile listener: the parent logs it and closes the channel,
// which ends that listener; the parent starts no new one for it.
//
// The listener refuses to run as root, reads its configuration and the
// system policy from descriptors the parent opened, refuses at RCPT time
// what the system policy can never allow (policy.Precheck), and never sends
// a peer internal detail: paths and errno text go to the log.
package daemon
