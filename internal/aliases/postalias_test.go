package aliases

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// postaliasDifferences lists every key of the corpus for which this
// parser's expansion differs from what Postfix makes of postalias's
// answer, with the reason. man/allowgen.8 (DIFFERENCES FROM POSTALIAS)
// lists the same classes. The test fails on a difference that is not
// listed here, and on a listed one that no longer occurs.
var postaliasDifferences = map[string]string{
	"02-comments/(leading comment) delta": "a comment before the key is an error; postalias makes it part of the key",
	"05-quoted-keys/":                     "an empty quoted key is an error; postalias stores it",
	"05-quoted-keys/plain quoted":         "a key is one name; postalias joins the words of an unquoted key",
	"06-quoted-entries/q5":                `"" is an error (an empty address); Postfix passes an empty address to its resolver`,
	"06-quoted-entries/q7":                `text right after a quoted string is an error; Postfix reads "a"b as two addresses`,
	"07-programs-quoted/p6":               `"|" (an empty command) is an error; Postfix runs an empty command`,
	"08-programs-unquoted/u2":             "an unquoted command runs to the next comma (with a warning); Postfix splits it at white space into several addresses",
	"08-programs-unquoted/u4":             "an unquoted command runs to the next comma (with a warning); Postfix splits it at white space into several addresses",
	"08-programs-unquoted/u6":             "| alone (an empty command) is an error",
	"10-includes/i4":                      "a relative :include: path is an error; Postfix bounces it at delivery",
	"11-noexpand/n3":                      `\"alice" is the user alice; Postfix's tokenizer reads \" as a literal quote`,
	"11-noexpand/n4":                      `\ alone is an error`,
	"11-noexpand/n5":                      `\user@domain is an error (the backslash means a local user)`,
	"11-noexpand/n6":                      `\|/bin/x is an error (not a user name)`,
	"12-remote/r4":                        "user@ without a domain is an error",
	"12-remote/r5":                        "@domain without a local part is an error",
	"12-remote/r6":                        "a second @ is an error",
	"16-empty-elements/e5":                "a value with no destinations is an error; postalias stores it",
	"17-inline-hash/h1":                   "# after text is an error, not a comment; Postfix reads # and the words after it as addresses",
	"18-route-addresses/ra1":              "route addresses <...> are an error",
	"18-route-addresses/ra2":              "phrases and route addresses are an error",
	"18-route-addresses/ra3":              "route addresses <...> are an error",
	"19-groups/g1":                        "; (a group) is an error",
	"19-groups/g2":                        "groups are an error",
	"20-unterminated/t1":                  "an unterminated quote is an error; postalias closes it at the end of the line",
	"20-unterminated/t3":                  "an unterminated comment is an error; postalias closes it at the end of the line",
	"21-escapes/x3":                       `\\x is an error (a user name cannot begin with a backslash); Postfix reads the address \x`,
	"24-control/ctl":                      "control characters are an error",
	"24-control/nul":                      "NUL is an error; postalias silently truncates the line at the NUL",
	"25-no-value/nv3":                     "a value of only a comment has no destinations: an error; postalias stores the comment",
	"26-not-local-keys/a@b":               "an escaped @ in a key is still refused as not local; postalias stores it",
	"27-colons/c1":                        "a second colon is an error; Postfix reads x:y as one address",
	"27-colons/c2":                        "a colon inside an address is an error; Postfix reads a:b as one address",
	"28-exim-specials/sp2":                ":fail: text is Exim's item with its message; Postfix reads :fail:No and the other words as addresses",
	"28-exim-specials/sp3":                ":defer: text is Exim's item with its message; Postfix reads :defer:try and later as addresses",
	"28-exim-specials/sp5":                "an unknown :item: is an error",
	"29-home-paths/hp1":                   "~/ in an aliases file is an error (there is no home directory); Postfix bounces it at delivery",
	"29-home-paths/hp2":                   "~user/ is an error; Postfix bounces it at delivery",
	"29-home-paths/hp3":                   "~/ in an aliases file is an error (there is no home directory); Postfix bounces it at delivery",
	"35-whitespace-keys/two words":        "a key is one name; postalias joins the words of an unquoted key",
}

// TestPostaliasDifferential builds a Postfix alias database of every
// testdata/*.aliases file with the real postalias(1) (in a private
// configuration directory) and compares, key by key, what Postfix's
// local(8) would make of postalias's answer with this parser's expansion.
func TestPostaliasDifferential(t *testing.T) {
	postalias, err := exec.LookPath("postalias")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/postalias"); err2 != nil {
			t.Skip("postalias is not installed (Postfix; .ci/run installs it)")
		}
		postalias = "/usr/sbin/postalias"
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "*.aliases"))
	if len(files) < 30 {
		t.Fatalf("corpus has %d files, want at least 30", len(files))
	}
	cfg := t.TempDir()
	if err := os.WriteFile(filepath.Join(cfg, "main.cf"), []byte("compatibility_level = 3.6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, file := range files {
		base := strings.TrimSuffix(filepath.Base(file), ".aliases")
		t.Run(base, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			db := filepath.Join(dir, "aliases")
			if err := os.WriteFile(db, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(postalias, "-c", cfg, "hash:"+db).CombinedOutput(); err != nil {
				t.Fatalf("postalias: %v\n%s", err, out)
			}
			out, err := exec.Command(postalias, "-c", cfg, "-s", "hash:"+db).Output()
			if err != nil {
				t.Fatalf("postalias -s: %v", err)
			}
			// The keys of the database (postalias -s), then the answer for
			// every key, ours and theirs, from postalias -q (all keys in
			// one run: -q - reads them from standard input).
			keys := map[string]bool{}
			for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
				k, _, ok := strings.Cut(line, ":\t")
				if !ok || k == "@" || k == "YP_LAST_MODIFIED" || k == "YP_MASTER_NAME" {
					continue
				}
				keys[k] = true
			}
			a := Parse(data, file)
			for _, e := range a.Entries {
				keys[e.Key] = true
			}
			var sorted []string
			for k := range keys {
				sorted = append(sorted, k)
			}
			sort.Strings(sorted)
			q := exec.Command(postalias, "-c", cfg, "-q", "-", "hash:"+db)
			q.Stdin = strings.NewReader(strings.Join(sorted, "\n") + "\n")
			answers, err := q.Output()
			if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
				t.Fatalf("postalias -q -: %v", err)
			}
			theirs := map[string][]string{}
			for _, line := range strings.Split(strings.TrimSuffix(string(answers), "\n"), "\n") {
				k, v, ok := strings.Cut(line, ":\t")
				if !ok {
					continue
				}
				// Postfix's local(8) compares ":include:" without regard
				// to case.
				exp := postfixExpansion(v)
				for i, x := range exp {
					if len(x) >= 9 && strings.EqualFold(x[:9], ":include:") {
						exp[i] = ":include:" + x[9:]
					}
				}
				theirs[k] = exp
			}
			for k := range theirs {
				if !keys[k] {
					t.Errorf("postalias -q answered for %q, which it was not asked", k)
				}
			}
			ours := map[string][]string{}
			for _, e := range a.Entries {
				var v []string
				for _, el := range e.Elements {
					v = append(v, el.Internal())
				}
				ours[e.Key] = v
			}
			for _, k := range sorted {
				id := base + "/" + k
				o, oOK := ours[k]
				p, pOK := theirs[k]
				same := oOK == pOK && strings.Join(o, "\x00") == strings.Join(p, "\x00")
				reason, listed := postaliasDifferences[id]
				if same {
					if listed {
						seen[id] = true
						t.Errorf("%s: listed as a difference (%s) but both read %q", id, reason, o)
					}
					continue
				}
				seen[id] = true
				if !listed {
					t.Errorf("%s: allowgen reads %q (present %v), Postfix reads postalias's answer as %q (present %v): not listed in postaliasDifferences", id, o, oOK, p, pOK)
				}
			}
		})
	}
	for id := range postaliasDifferences {
		if !seen[id] {
			t.Errorf("%s is listed in postaliasDifferences but is not a key of the corpus", id)
		}
	}
}

// postfixExpansion is what Postfix's local(8) does with an alias value
// (deliver_token_string): tokenize it like tok822_scan, cut it into
// addresses like tok822_parse (a comma, or two words with no operator
// between them, ends an address; comments are dropped), and internalize
// each address (quotes removed, operators joined without spaces). It is a
// port of the parts of Postfix's tok822 that aliases use, written for
// this test; it does not handle route addresses (<...>) and groups (;),
// which allowgen refuses.
func postfixExpansion(v string) []string {
	const specials = "|%!()<>@,;:\\\".[]"
	type tok struct {
		word bool // atom, quoted string or domain literal
		op   byte
		s    string
	}
	var toks []tok
	collect := func(i int, stop func(byte) bool) (string, int) {
		var b strings.Builder
		for i < len(v) {
			c := v[i]
			if c == '\\' {
				i++
				if i >= len(v) {
					break
				}
				c = v[i]
			} else if stop(c) {
				break
			}
			if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				c = ' '
			}
			b.WriteByte(c)
			i++
		}
		return b.String(), i
	}
	isSp := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case isSp(c):
			i++
		case c == '(':
			depth := 0
			for i < len(v) {
				c := v[i]
				i++
				if c == '\\' {
					i++
					continue
				}
				if c == '(' {
					depth++
				} else if c == ')' {
					if depth--; depth == 0 {
						break
					}
				}
			}
		case c == '[':
			s, j := collect(i+1, func(c byte) bool { return c == ']' })
			if j < len(v) {
				j++
			}
			toks, i = append(toks, tok{word: true, s: "[" + s + "]"}), j
		case c == '"':
			s, j := collect(i+1, func(c byte) bool { return c == '"' })
			if j < len(v) {
				j++
			}
			toks, i = append(toks, tok{word: true, s: s}), j
		case c != '\\' && strings.IndexByte(specials, c) >= 0:
			toks, i = append(toks, tok{op: c, s: string(c)}), i+1
		default:
			s, j := collect(i, func(c byte) bool { return isSp(c) || strings.IndexByte(specials, c) >= 0 })
			toks, i = append(toks, tok{word: true, s: s}), j
		}
	}
	var out []string
	var cur strings.Builder
	has, lastWord := false, false
	flush := func() {
		if has {
			out = append(out, cur.String())
		}
		cur.Reset()
		has, lastWord = false, false
	}
	for _, tk := range toks {
		switch {
		case tk.op == ',':
			flush()
		case tk.word && lastWord:
			flush()
			fallthrough
		default:
			cur.WriteString(tk.s)
			has, lastWord = true, tk.word
		}
	}
	flush()
	return out
}
