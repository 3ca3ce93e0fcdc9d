package status

import (
	"errors"
	"syscall"
)

// The statuses every part of lda uses. Texts are generic on purpose: the
// details (paths, errno text) travel in Cause and go to the log only.
var (
	Delivered      = New(250, "2.0.0", "delivered")
	Discarded      = New(250, "2.0.0", "discarded")
	UnknownUser    = New(550, "5.1.1", "no such user")
	PolicyRefused  = New(550, "5.7.1", "delivery not permitted by policy")
	MailboxBusy    = New(450, "4.2.0", "mailbox busy, try again later")
	MailboxUnavail = New(450, "4.2.0", "mailbox temporarily unavailable")
	NotRegular     = New(550, "5.2.0", "mailbox is not a regular file")
	NoSpace        = New(452, "4.3.1", "insufficient system storage")
	QuotaExceeded  = New(552, "5.2.2", "mailbox full")
	QuotaTemp      = New(452, "4.2.2", "mailbox full, try again later")
	Unknown        = New(451, "4.3.0", "temporary local error")
	ConfigError    = New(451, "4.3.5", "local configuration error")
	BadMessage     = New(554, "5.6.0", "message format error")
	Usage          = New(501, "5.5.4", "invalid arguments")
	ProgramFailed  = New(554, "5.3.0", "delivery program failed")
	Timeout        = New(451, "4.4.7", "delivery timed out")
	// Busy: root has as many direct workers running as it allows; the
	// listener then delivers through root instead (never sent to a peer
	// by itself).
	Busy = New(451, "4.3.2", "system busy, try again later")
)

// SpoolTooBig is a message that lda's own spool could not hold because of
// the file size limit (RLIMIT_FSIZE): permanent, as Postfix answers.
var SpoolTooBig = New(552, "5.3.4", "message too big for system")

// FromSpool maps an error writing lda's own spool (the message before any
// mailbox is involved): a full or over-quota file system is temporary
// (452 4.3.1), the file size limit is not (552 5.3.4); anything else is
// 451 4.3.0. Not errnoTable: there EDQUOT means the recipient's mailbox.
func FromSpool(err error) *Status {
	switch {
	case errors.Is(err, syscall.EFBIG):
		return SpoolTooBig.Wrap(err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return NoSpace.Wrap(err)
	}
	return Unknown.Wrap(err)
}

// QuotaTempfail selects whether EDQUOT and EFBIG are temporary (452 4.2.2)
// instead of the default permanent 552 5.2.2. It is set once at start-up
// from the configuration.
var QuotaTempfail = false

// errnoTable maps the errors that a delivery meets on a file system to
// replies. Anything not listed here is 451 4.3.0.
var errnoTable = map[syscall.Errno]*Status{
	syscall.ENOSPC:  NoSpace,
	syscall.EDQUOT:  QuotaExceeded,
	syscall.EFBIG:   QuotaExceeded,
	syscall.EACCES:  MailboxUnavail,
	syscall.EPERM:   MailboxUnavail,
	syscall.ENOENT:  MailboxUnavail,
	syscall.ENOTDIR: MailboxUnavail,
	syscall.EISDIR:  NotRegular,     // the mailbox is a directory
	syscall.ELOOP:   MailboxUnavail, // a symlink where none may be
	syscall.EXDEV:   MailboxUnavail, // openat2 RESOLVE_BENEATH escape
	syscall.EMLINK:  MailboxUnavail, // hard link count check
	syscall.EEXIST:  MailboxUnavail,
	syscall.EAGAIN:  MailboxBusy,
	syscall.EROFS:   Unknown,
	syscall.EIO:     Unknown,
	syscall.EMFILE:  Unknown,
	syscall.ENFILE:  Unknown,
	syscall.ENOMEM:  Unknown,
}

func fromErrno(err error) (*Status, bool) {
	var e syscall.Errno
	if !errors.As(err, &e) {
		return nil, false
	}
	st, ok := errnoTable[e]
	if !ok {
		return nil, false
	}
	if st == QuotaExceeded && QuotaTempfail {
		st = QuotaTemp
	}
	return st, true
}

// Sysexits codes (sysexits.h), the exit statuses of `lda deliver`.
const (
	ExOK          = 0
	ExUsage       = 64
	ExDataErr     = 65
	ExNoInput     = 66
	ExNoUser      = 67
	ExUnavailable = 69
	ExSoftware    = 70
	ExOSErr       = 71
	ExCantCreat   = 73
	ExIOErr       = 74
	ExTempFail    = 75
	ExProtocol    = 76
	ExNoPerm      = 77
	ExConfig      = 78
)

// sysexitTable maps the exit status of a delivery program to a reply. The
// soft ones (75, 71, 74, 78) are temporary, as in sendmail and Postfix.
var sysexitTable = map[int]*Status{
	ExOK:          Delivered,
	ExUsage:       New(554, "5.3.0", "delivery program usage error"),
	ExDataErr:     BadMessage,
	ExNoInput:     New(554, "5.3.0", "delivery program input error"),
	ExNoUser:      UnknownUser,
	ExUnavailable: New(554, "5.3.0", "delivery program unavailable"),
	ExSoftware:    ProgramFailed,
	ExOSErr:       Unknown,
	ExCantCreat:   New(550, "5.2.0", "cannot create mailbox"),
	ExIOErr:       Unknown,
	ExTempFail:    Unknown,
	ExProtocol:    ProgramFailed,
	ExNoPerm:      PolicyRefused,
	ExConfig:      ConfigError,
}

// FromExit maps a delivery program's exit status to a Status. Unknown
// non-zero statuses and death by signal are temporary (451 4.3.0): the
// program may have been killed, and retrying can succeed.
func FromExit(code int) *Status {
	if st, ok := sysexitTable[code]; ok {
		return st
	}
	return Unknown
}

// Exit maps a Status to the sysexits code that `lda deliver` exits with.
func (s *Status) Exit() int {
	switch {
	case s.OK():
		return ExOK
	case s.Temporary():
		return ExTempFail
	}
	switch {
	case s.Enhanced == "5.1.1":
		return ExNoUser
	case s.Enhanced == "5.7.1":
		return ExNoPerm
	case s.Enhanced == "5.5.4" || s.Enhanced == "5.5.2":
		return ExUsage
	case s.Enhanced == "5.6.0" || s.Enhanced == "5.3.4":
		return ExDataErr
	case s.Enhanced == "5.3.5":
		return ExConfig
	case s.Enhanced[:3] == "5.2":
		return ExCantCreat
	}
	return ExUnavailable
}
