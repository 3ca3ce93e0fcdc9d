// Package lmtp is the server side of lda's LMTP daemon (RFC 2033): a pure
// protocol engine with no privileges and no delivery. A Session reads
// commands from one connection, checks them, and hands sender, recipients
// and the spooled message to a Backend, which does the work and answers
// with a *status.Status per step and one Reply per recipient after DATA.
// The daemon runs it in an unprivileged listener process on a Unix socket:
//
//	s := lmtp.NewSession(conn, cfg, backend, spool)
//	go func() { <-sigterm; s.Shutdown() }()
//	err := s.Serve() // closes conn
//
// # Protocol
//
// The greeting is "220 <host> LMTP lda ready". LHLO is answered with
// PIPELINING (RFC 2920), ENHANCEDSTATUSCODES (RFC 2034, codes of RFC 3463),
// 8BITMIME (RFC 6152), CHUNKING (RFC 3030) when Config.Chunking is set,
// SIZE (RFC 1870), SMTPUTF8 (RFC 6531) and, when Config.Extensions is set,
// "XLDA 1". HELO and EHLO get "500 5.5.1 use LHLO" (RFC 2033 section 4.1).
// Also understood: MAIL, RCPT, DATA, BDAT (with CHUNKING), RSET, NOOP, VRFY
// (always 252 2.5.0), HELP and QUIT; anything else is "500 5.5.1 command
// unrecognized". Verbs are case-insensitive.
//
// MAIL FROM takes SIZE=, BODY=7BIT|8BITMIME, SMTPUTF8, RET=FULL|HDRS and
// ENVID= (RFC 3461); RCPT TO takes NOTIFY= and ORCPT= (RFC 3461) and the
// XLDA parameters below. ENVID and the address of ORCPT are passed on
// xtext-decoded (RFC 6533 "utf-8" ORCPT encodings are passed on as they
// are). A source route ("<@a,@b:u@d>", RFC 5321 section 4.1.2) is checked
// and dropped. <> is accepted for MAIL only, and "Postmaster" without a
// domain for RCPT only.
//
// After DATA there is exactly one reply per accepted recipient, in order,
// duplicates included (RFC 2033 section 4.2); DATA without an accepted
// recipient is "503 5.5.1 no valid recipients" and gets no 354. A Reply's
// Lines make a multi-line reply whose every line carries the codes.
// Replies are flushed when no complete command line is buffered and before
// the DATA content is read, so a pipelined group is answered in one write.
//
// BDAT (RFC 3030; RFC 2033 section 4.3) carries the body in chunks of a
// stated size, without 354, dot-stuffing or end marker, so a pipelining
// client waits once per message instead of twice. Each chunk but the LAST
// gets one reply: "250 2.0.0 N octets received", or the size or spool
// failure, which fails the transaction; after that, every chunk but the
// LAST gets 503, and the LAST gets the failure once per accepted
// recipient and ends the transaction. The LAST chunk of a sound
// transaction gets one reply per accepted recipient, as after DATA. A
// BDAT out of sequence (no LHLO, no MAIL, no accepted recipient) gets one
// 503, LAST or not, and changes nothing: so Dovecot answers, where RFC
// 2033 would give a LAST chunk without a successful RCPT no reply at all.
// DATA and RCPT after BDAT are 503 and change nothing. The content is
// converted as DATA's (Chunks): CRLF to LF, the same bare-LF policy and
// size count.
//
// # The lda extension: XLDA 1
//
// RCPT TO accepts, when Config.Extensions is set:
//
//	XLDA-USER=xtext    decoded: a user name (policy.ValidUserName: 1-64 bytes,
//	                   no control, white space, "/", "*", "%", "..", no
//	                   leading "-" or ".")
//	XLDA-DEST=xtext    decoded: "mbox:" PATH / "maildir:" PATH ["#" FOLDER] /
//	                   "program:" NAME (see ValidDest); lower-case kinds
//	XLDA-FILTER=xtext  decoded: "deliver" or "only", case-insensitive, passed
//	                   lower-case
//
// A missing parameter leaves its field empty. The checks are lexical only;
// whether the user may deliver there is decided by the policy, behind the
// Backend.
//
// # Limits and policies
//
// Command lines are limited to Config.MaxLine bytes with the CRLF
// (at least 512, RFC 5321 section 4.5.3.1.4); a longer line is read to its
// end and refused with 500 5.5.2. Addresses are limited to 512 bytes
// between the brackets, parameters to 16 per command. Accepted recipients
// are limited to MaxRecipients (452 4.5.3). The message limit MaxSize
// counts the bytes as spooled (LF line ends, dot-unstuffed); a larger
// SIZE= is refused at MAIL, a larger message after DATA with 552 5.3.4 per
// recipient. A spool failure is 452 4.3.1 per recipient when the spool's
// file system is full or over quota (ENOSPC, EDQUOT), 552 5.3.4 when the
// daemon's file size limit stops it (EFBIG), and 451 4.3.0 otherwise (the
// 354 is sent first, and the body read, either way); for BDAT these come once for
// the chunk that meets them, and once per recipient at the LAST chunk.
// IdleTimeout bounds the arrival of each whole command line and each reply
// write, DataTimeout each read during DATA or a BDAT chunk; both end the
// session with 421 4.4.2. Shutdown lets an open
// transaction finish and then ends the session with 421 4.3.2.
//
// Bare LF policy (Config.BareLF): "reject" (default) refuses a message
// containing an LF not preceded by CR with 550 5.6.0 for every recipient,
// after reading it to its end, and a command line ending in a bare LF with
// 500 5.5.2; "accept" keeps such an LF as data (in the LF-terminated spool
// it reads as a line end) and lets it end a command line. Under both, a
// bare LF never ends a wire line of DATA, so it neither starts the end
// marker nor a dot-stuffed line. A bare CR is always data.
//
// # Security
//
// Trusted: the Config, the Backend (its statuses are still validated and
// sanitized) and the spool function. Untrusted: every byte from the
// client, which may be any local process allowed to connect.
//
// Checked, in this order:
//
//  1. Framing. Lines are read with a bounded buffer, ended by LF, and must
//     end in CRLF unless BareLF is "accept". Over-long lines are consumed
//     and refused, never split into two commands (qmail CVE-2005-1513).
//     The whole line must arrive within IdleTimeout, so trickling clients
//     cannot hold a session; every write has a deadline as well.
//  2. Verb: letters only, known set; otherwise 500 5.5.1 (empty: 500 5.5.2).
//  3. Sequence: LHLO before MAIL, MAIL before RCPT, an accepted RCPT before
//     DATA, no nested MAIL (503 5.5.1); checked before the arguments.
//  4. Address syntax (RFC 5321 section 4.1.2): angle brackets required and
//     balanced, at most 512 bytes, Dot-string or non-empty Quoted-string
//     local part not beginning with "-", LDH domain or address literal,
//     valid UTF-8 without C0/C1 controls or DEL, so no CR, LF, NUL or TAB
//     (Dovecot CVE-2020-10967 and CVE-2019-11500; the leading "-" stops
//     option injection, OpenSMTPD CVE-2020-7247), and without U+2028 or
//     U+2029, which with U+0085 end a line for Unicode-aware readers of
//     the header lines an address goes into: 501 5.1.3. The LHLO domain,
//     which goes into Received, is held to the same.
//  5. Parameter syntax (esmtp-keyword, esmtp-value without controls or
//     "="), at most 16, no duplicates: 501 5.5.4. Then, in the order given,
//     an unknown parameter is 555 5.5.4 and a bad value 501 5.5.4. xtext
//     (RFC 3461 section 4) is decoded strictly, and a decoded value with any
//     control character (CR, LF and NUL included) is refused, so nothing
//     the client sends can inject a line into a header, a job record or a
//     log (CVE-2020-8794). XLDA-DEST paths must be absolute and clean: no
//     "..", "//", "/./", trailing "/", or "/" alone.
//  6. SMTPUTF8: a non-ASCII address without SMTPUTF8 on MAIL is 553 5.6.7
//     (RFC 6531). SIZE= above MaxSize is 552 5.3.4 (RFC 1870). The
//     recipient limit is 452 4.5.3.
//  7. The Backend decides. A status failing status.Validate becomes 451
//     4.3.0 before its class is looked at; a missing per-recipient Reply or
//     Status is 451 4.3.0, never a false 250.
//  8. BDAT framing: the size is 1 to 18 digits and LAST the only word
//     after it, or 501 5.5.4 and the session ends. So does any line that
//     is a BDAT command but cannot be read as one (too long, a bare LF,
//     a tab or a leading space, BDAT while CHUNKING is off): where its
//     chunk ends is unknown, and its bytes must never be read as
//     commands. Before closing, the session shuts its sending side and
//     reads and drops for up to a second what the client sent, so that a
//     TCP connection is not reset and the reply lost. A chunk is
//     otherwise read in full whatever its reply, within DataTimeout per
//     read.
//  9. DATA and BDAT: the body goes to the spool: a memfd up to
//     SpoolMemory bytes, beyond that the spool function's file (the
//     memfd's content is copied there once), never to the heap. The
//     Backend gets it frozen: the memfd sealed against writing,
//     shrinking and growing (F_ADD_SEALS), the file reopened read-only.
//     A memfd that cannot be sealed moves to the file: its inode is
//     0777, so a read-only descriptor of it could be reopened for
//     writing through /proc by anyone who holds one. Only
//     CRLF "." CRLF ends DATA: LF.LF, LF.CRLF, CRLF.LF and CR.CR are data or
//     bare-LF errors (SMTP smuggling, CVE-2023-51764, CVE-2023-51765,
//     CVE-2023-51766). Dot-unstuffing follows RFC 5321 section 4.5.2 and is
//     byte-exact across read-buffer boundaries (mail.local CVE-2000-0319).
//     On a size, bare-LF or spool error the body is still read to its end,
//     so the next command is read in step.
//  10. Replies never contain client input: every text is a constant or
//     the Backend's, passed through status.Sanitize (one printable line,
//     at most 200 bytes), so no CR or LF can forge a reply; a chunk's size
//     is echoed only as the number it parsed to.
//
// Memory per session is bounded: a 64 KiB read buffer, a line buffer of at
// most MaxLine bytes, at most 16 parameters, MaxRecipients recipients, a
// 64 KiB spool write buffer, at most 64 extra lines per reply and, outside
// the heap, a memfd of at most SpoolMemory bytes.
//
// Not done here: TLS and AUTH (the daemon listens on a Unix socket and
// checks peer credentials), BINARYMIME (not advertised),
// connection limits, DSN generation, and any decision on users, paths or
// programs beyond the lexical checks above.
package lmtp
