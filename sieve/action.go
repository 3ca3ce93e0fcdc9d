package sieve

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"lda/internal/status"
	"lda/policy"
)

// Kind is the kind of an Action.
type Kind int

// The kinds of actions.
const (
	Keep     Kind = iota + 1 // store into the default destination (INBOX)
	FileInto                 // store into Action.Folder, a Maildir++ folder name
	Redirect                 // send the message on to Action.Address
	Reject                   // refuse the message for this recipient: 550 5.7.1 Action.Reason
	Discard                  // deliver nothing, silently
)

func (k Kind) String() string {
	switch k {
	case Keep:
		return "keep"
	case FileInto:
		return "fileinto"
	case Redirect:
		return "redirect"
	case Reject:
		return "reject"
	case Discard:
		return "discard"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Action is one validated action.
type Action struct {
	Kind    Kind
	Folder  string   // FileInto: a name valid for policy.ValidFolder, e.g. "Lists.golang"
	Flags   []string // Keep, FileInto: IMAP flags and keywords, e.g. \Seen; sorted, no duplicates
	Address string   // Redirect: an RFC 5321 mailbox, domain in lower case
	Reason  string   // Reject: one sanitized line of at most 200 bytes
	Copy    bool     // FileInto, Redirect: :copy was given (the implicit keep was not cancelled)
	Ereject bool     // Reject: the script used ereject
}

// String formats a in the style of sieve-test's action list.
func (a Action) String() string {
	var b strings.Builder
	switch a.Kind {
	case Keep:
		b.WriteString("keep")
	case FileInto:
		b.WriteString("fileinto " + strconv.Quote(a.Folder))
	case Redirect:
		b.WriteString("redirect <" + a.Address + ">")
	case Reject:
		if a.Ereject {
			b.WriteString("ereject " + strconv.Quote(a.Reason))
		} else {
			b.WriteString("reject " + strconv.Quote(a.Reason))
		}
	case Discard:
		b.WriteString("discard")
	default:
		b.WriteString(a.Kind.String())
	}
	if a.Copy {
		b.WriteString(" :copy")
	}
	if len(a.Flags) > 0 {
		b.WriteString(" flags " + strings.Join(a.Flags, " "))
	}
	return b.String()
}

// systemFlags maps the lower-case IMAP system flags to their canonical
// spelling and Maildir letter.
var systemFlags = map[string]struct {
	canon  string
	letter byte
}{
	`\seen`:     {`\Seen`, 'S'},
	`\answered`: {`\Answered`, 'R'},
	`\flagged`:  {`\Flagged`, 'F'},
	`\deleted`:  {`\Deleted`, 'T'},
	`\draft`:    {`\Draft`, 'D'},
}

// MaildirFlags returns the Maildir info flags ("2," suffix letters) for the
// IMAP flags: \Seen->S, \Answered->R, \Flagged->F, \Deleted->T, \Draft->D,
// case-insensitively, sorted and without duplicates. Keywords and \Recent
// are dropped: Maildir has no portable place for them.
func MaildirFlags(flags []string) string {
	var set [256]bool
	for _, f := range flags {
		if sf, ok := systemFlags[strings.ToLower(f)]; ok {
			set[sf.letter] = true
		}
	}
	var b []byte
	for c := 'A'; c <= 'Z'; c++ {
		if set[c] {
			b = append(b, byte(c))
		}
	}
	return string(b)
}

// canonFlags splits space-separated flags, gives system flags their
// canonical spelling, drops empty and invalid ones (control characters,
// parentheses, "*", "%", quotes, "]" and "{" cannot be IMAP atoms), removes
// duplicates and sorts.
func canonFlags(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		for _, f := range strings.Fields(s) {
			if sf, ok := systemFlags[strings.ToLower(f)]; ok {
				f = sf.canon
			} else if !validKeyword(f) {
				continue
			}
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	sort.Strings(out)
	return out
}

// validKeyword reports an IMAP flag-keyword (RFC 3501 atom) or an
// unknown backslash flag, at most 64 bytes.
func validKeyword(f string) bool {
	if f == "" || len(f) > 64 {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"]`, c) >= 0 || (c == '\\' && i > 0) {
			return false
		}
	}
	return true
}

// folderName maps a fileinto argument to a Maildir++ folder name. It
// returns keep=true for "INBOX" in any case. "/" is accepted as hierarchy
// separator and mapped to ".", Maildir++'s.
func folderName(name string) (folder string, keep bool, err error) {
	q := strconv.Quote(name)
	switch {
	case name == "":
		return "", false, errors.New("fileinto: empty folder name")
	case len(name) > MaxFolderLen:
		return "", false, fmt.Errorf("fileinto: folder name longer than %d bytes", MaxFolderLen)
	case !utf8.ValidString(name):
		return "", false, fmt.Errorf("fileinto %s: invalid UTF-8", q)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return "", false, fmt.Errorf("fileinto %s: control character %U in folder name", q, r)
		}
	}
	if strings.EqualFold(name, "INBOX") {
		return "", true, nil
	}
	if strings.Contains(name, "..") {
		return "", false, fmt.Errorf("fileinto %s: \"..\" in folder name", q)
	}
	folder = strings.ReplaceAll(name, "/", ".")
	if err := policy.ValidFolder(folder); err != nil {
		return "", false, fmt.Errorf("fileinto %s: %v", q, err)
	}
	return folder, false, nil
}

// reason sanitizes a reject reason to one line of at most MaxReasonLen
// bytes.
func reason(s string) string {
	s = status.Sanitize(s)
	for len(s) > MaxReasonLen {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return strings.TrimSpace(s)
}

// ValidAddress checks a redirect address: an RFC 5321 Mailbox
// (Local-part "@" (Domain / address-literal)), where Local-part is a
// Dot-string or a Quoted-string, UTF-8 allowed as in RFC 6531, with no CR,
// LF, NUL, space or other control character, no leading "-" (it could pass
// for an option of a sendmail command), a local part of at most 64 and a
// whole of at most 320 bytes. It returns the address with the domain in
// lower case (ASCII only).
func ValidAddress(addr string) (string, error) {
	q := strconv.Quote(addr)
	switch {
	case addr == "":
		return "", errors.New("redirect: empty address")
	case len(addr) > MaxAddressLen:
		return "", fmt.Errorf("redirect: address longer than %d bytes", MaxAddressLen)
	case !utf8.ValidString(addr):
		return "", fmt.Errorf("redirect %s: invalid UTF-8", q)
	}
	for _, r := range addr {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || status.UnicodeLineBreak(r) {
			return "", fmt.Errorf("redirect %s: control character, line break or space in address", q)
		}
	}
	local, domain, err := splitMailbox(addr)
	if err != nil {
		return "", fmt.Errorf("redirect %s: %v", q, err)
	}
	if strings.HasPrefix(local, "-") {
		return "", fmt.Errorf("redirect %s: local part begins with -", q)
	}
	if len(local) > 64 {
		return "", fmt.Errorf("redirect %s: local part longer than 64 bytes", q)
	}
	if strings.HasPrefix(domain, "[") {
		if err := validAddressLiteral(domain); err != nil {
			return "", fmt.Errorf("redirect %s: %v", q, err)
		}
		return local + "@" + domain, nil
	}
	if err := validDomain(domain); err != nil {
		return "", fmt.Errorf("redirect %s: %v", q, err)
	}
	return local + "@" + asciiLower(domain), nil
}

// splitMailbox splits at the "@" after the local part, checking the local
// part's syntax.
func splitMailbox(addr string) (local, domain string, err error) {
	i := 0
	if strings.HasPrefix(addr, `"`) {
		// Quoted-string = DQUOTE *QcontentSMTP DQUOTE
		i = 1
		for {
			if i >= len(addr) {
				return "", "", errors.New("unterminated quoted local part")
			}
			c := addr[i]
			if c == '"' {
				i++
				break
			}
			if c == '\\' {
				// quoted-pairSMTP = %d92 %d32-126
				if i+1 >= len(addr) || addr[i+1] < 32 || addr[i+1] > 126 {
					return "", "", errors.New("bad quoted pair in local part")
				}
				i += 2
				continue
			}
			// qtextSMTP = %d32-33 / %d35-91 / %d93-126 / UTF8-non-ascii
			i++
		}
		if i == 2 {
			return "", "", errors.New("empty quoted local part")
		}
	} else {
		// Dot-string = Atom *("." Atom)
		start := i
		for i < len(addr) && addr[i] != '@' {
			i++
		}
		for _, atom := range strings.Split(addr[start:i], ".") {
			if atom == "" {
				return "", "", errors.New("empty atom in local part (leading, trailing or doubled .)")
			}
			for _, r := range atom {
				if r < 0x80 && !isAtext(byte(r)) {
					return "", "", fmt.Errorf("character %q not allowed in an unquoted local part", r)
				}
			}
		}
	}
	if i >= len(addr) || addr[i] != '@' {
		return "", "", errors.New("missing @ after the local part")
	}
	return addr[:i], addr[i+1:], nil
}

// isAtext reports RFC 5322 atext for ASCII.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// validDomain checks Domain = sub-domain *("." sub-domain),
// sub-domain = Let-dig [Ldh-str], with U-labels allowed (RFC 6531).
func validDomain(d string) error {
	if d == "" {
		return errors.New("empty domain")
	}
	if len(d) > 255 {
		return errors.New("domain longer than 255 bytes")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" {
			return errors.New("empty label in domain")
		}
		if len(label) > 63 {
			return errors.New("domain label longer than 63 bytes")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("domain label %q begins or ends with -", label)
		}
		for _, r := range label {
			ok := r >= 0x80 || r == '-' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9')
			if !ok {
				return fmt.Errorf("character %q not allowed in a domain", r)
			}
		}
	}
	return nil
}

// validAddressLiteral checks "[" IPv4 / "IPv6:" IPv6 / tag ":" dcontent "]".
func validAddressLiteral(d string) error {
	if len(d) < 3 || d[len(d)-1] != ']' {
		return errors.New("malformed address literal")
	}
	in := d[1 : len(d)-1]
	if tag, rest, ok := strings.Cut(in, ":"); ok {
		if strings.EqualFold(tag, "IPv6") {
			a, err := netip.ParseAddr(rest)
			if err != nil || !a.Is6() || a.Zone() != "" {
				return fmt.Errorf("bad IPv6 address literal %q", d)
			}
			return nil
		}
		// General-address-literal = Standardized-tag ":" 1*dcontent
		if err := validDomain(tag); err != nil || strings.Contains(tag, ".") || rest == "" {
			return fmt.Errorf("bad address literal %q", d)
		}
		for i := 0; i < len(rest); i++ {
			if c := rest[i]; c < 33 || c > 126 || c == '[' || c == '\\' || c == ']' {
				return fmt.Errorf("bad address literal %q", d)
			}
		}
		return nil
	}
	a, err := netip.ParseAddr(in)
	if err != nil || !a.Is4() {
		return fmt.Errorf("bad IPv4 address literal %q", d)
	}
	return nil
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
