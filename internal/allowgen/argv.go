package allowgen

import (
	"errors"
	"fmt"
	"strings"

	"lda/policy"
)

// ErrNeedsShell is wrapped by the errors of SplitCommand for command lines
// that only a shell could run.
var ErrNeedsShell = errors.New("needs a shell")

// SplitCommand turns a command line from an aliases or .forward file into
// an argument vector, without a shell, as sh(1) would split a simple
// command made of literal words: white space separates words; '...' is
// literal; "..." is literal except that \ escapes \, ", $ and `; outside
// quotes \ escapes any character. A leading "exec" is dropped (it only
// replaces the shell that lda does not start). Anything that only a shell
// could do is refused with an error wrapping ErrNeedsShell: unquoted
// | & ; < > ( ) $ ` * ? [ and newline, ~ or # at the start of a word, $
// or ` inside double quotes, a variable assignment before the command, a
// reserved word. argv[0] must be an absolute clean path (a shell would
// search $PATH for anything else), and every argument valid text.
func SplitCommand(cmd string) ([]string, error) {
	var (
		argv   []string
		cur    strings.Builder
		inWord bool
	)
	end := func() {
		if inWord {
			argv = append(argv, cur.String())
		}
		cur.Reset()
		inWord = false
	}
	shell := func(what string) error { return fmt.Errorf("%w: %s", ErrNeedsShell, what) }
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch c {
		case ' ', '\t':
			end()
			continue
		case '\'':
			j := strings.IndexByte(cmd[i+1:], '\'')
			if j < 0 {
				return nil, shell("unterminated '")
			}
			cur.WriteString(cmd[i+1 : i+1+j])
			i += j + 1
			inWord = true
			continue
		case '"':
			i++
			for ; i < len(cmd) && cmd[i] != '"'; i++ {
				switch cmd[i] {
				case '$', '`':
					return nil, shell(fmt.Sprintf("%q inside double quotes (an expansion)", cmd[i]))
				case '\\':
					if i+1 < len(cmd) && strings.IndexByte("\\\"$`", cmd[i+1]) >= 0 {
						i++
					}
				}
				cur.WriteByte(cmd[i])
			}
			if i >= len(cmd) {
				return nil, shell(`unterminated "`)
			}
			inWord = true
			continue
		case '\\':
			if i+1 >= len(cmd) {
				return nil, shell(`\ at the end`)
			}
			i++
			cur.WriteByte(cmd[i])
			inWord = true
			continue
		case '|', '&', ';', '<', '>', '(', ')', '$', '`', '*', '?', '[', '\n', '\r':
			return nil, shell(fmt.Sprintf("unquoted %q", c))
		case '~', '#':
			if !inWord {
				return nil, shell(fmt.Sprintf("%q at the start of a word", c))
			}
		case '=':
			if len(argv) == 0 && !inWord {
				return nil, shell("= at the start of the command")
			}
			if len(argv) == 0 && !strings.ContainsAny(cur.String(), "/") {
				return nil, shell("a variable assignment before the command")
			}
		}
		cur.WriteByte(c)
		inWord = true
	}
	end()
	if len(argv) > 0 && argv[0] == "exec" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	switch argv[0] {
	case "if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until", "do", "done", "function", "{", "}", "!":
		return nil, shell(fmt.Sprintf("the reserved word %q", argv[0]))
	}
	if err := policy.ValidPath(argv[0]); err != nil {
		return nil, fmt.Errorf("%w: %s is not an absolute clean path (a shell would search $PATH)", ErrNeedsShell, argv[0])
	}
	for _, a := range argv {
		if len(a) > policy.MaxPathLen {
			return nil, fmt.Errorf("an argument is longer than %d bytes", policy.MaxPathLen)
		}
		for _, r := range a {
			if r < 0x20 || r == 0x7f {
				return nil, fmt.Errorf("an argument contains the control character %U", r)
			}
		}
		if !validUTF8(a) {
			return nil, errors.New("an argument is not valid UTF-8")
		}
	}
	return argv, nil
}
