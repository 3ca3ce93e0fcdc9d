package sieve

import "time"

// Limits bounds the resources a script may use. A zero field takes its
// default.
type Limits struct {
	MaxScriptSize  int64         // default 1 MiB; larger -> load error
	MaxRedirects   int           // default 4 distinct addresses; more -> runtime error (implicit keep); negative: redirect forbidden
	MaxActions     int           // default 32 distinct actions; more -> runtime error (implicit keep)
	Timeout        time.Duration // default 2s per script run (context deadline) -> temporary failure
	MaxHeaderBytes int64         // default 1 MiB of header parsed
	MaxBodyBytes   int64         // default 1 MiB inspected by the body test
}

// Defaults of Limits.
const (
	DefaultMaxScriptSize  = 1 << 20
	DefaultMaxRedirects   = 4
	DefaultMaxActions     = 32
	DefaultTimeout        = 2 * time.Second
	DefaultMaxHeaderBytes = 1 << 20
	DefaultMaxBodyBytes   = 1 << 20
)

// Fixed limits of the language, not configurable.
const (
	MaxTokens          = 50000 // lexical tokens in one script
	MaxNesting         = 15    // nested blocks, and nested tests
	MaxVariables       = 128   // distinct variable names set by one script
	MaxVariableNameLen = 32    // bytes in a variable name
	MaxVariableLen     = 4096  // bytes in a variable value (longer values are truncated, as Pigeonhole does)
	MaxFolderLen       = 255   // bytes in a fileinto name
	MaxAddressLen      = 320   // bytes in a redirect address
	MaxReasonLen       = 200   // bytes in a reject reason, after sanitizing
)

// WithDefaults returns l with every zero or negative field set to its
// default, except a negative MaxRedirects, which stays: no redirect is
// allowed. It is idempotent.
func (l Limits) WithDefaults() Limits {
	if l.MaxScriptSize <= 0 {
		l.MaxScriptSize = DefaultMaxScriptSize
	}
	if l.MaxRedirects == 0 {
		l.MaxRedirects = DefaultMaxRedirects
	}
	if l.MaxActions <= 0 {
		l.MaxActions = DefaultMaxActions
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return l
}

// redirectCap is the number of distinct redirect addresses allowed.
func (l Limits) redirectCap() int {
	if l.MaxRedirects < 0 {
		return 0
	}
	return l.MaxRedirects
}
