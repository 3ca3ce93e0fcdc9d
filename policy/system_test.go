package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testSystem is the system file most tests use. Line numbers matter: the
// tests below refer to them.
const testSystem = `version: 1
min_uid: 500
user_file: .config/lda.yaml
default: {maildir: ~/Maildir}
allow:
  - {maildir: ~/Maildir}
  - {maildir: /srv/maildirs/%u, folders: false}
  - {mbox: /var/mail/%u}
  - {mbox: /home/a/Mail}
  - {mbox: ~/mail/**}
  - {mbox: /srv/spool/*/inbox}
  - {mbox: /srv/box/%u.mbox}
  - {mbox: /srv/deep/**/x.mbox}
  - {mbox: /srv/lit/a/b/c}
  - {mbox: /srv/pre/m-*}
  - {program: procmail}
deny:
  - {mbox: ~/mail/secret/**}
  - {program: nothing}
user_may_add:
  - {mbox: ~/**}
  - {maildir: ~/**}
  - {mbox: /srv/users/%u/**}
  - {maildir: /srv/nofolders/%u/*, folders: false}
  - {program: filter}
programs:
  procmail: {argv: [/usr/bin/procmail, -d, "%u"]}
  filter: {argv: [/usr/local/bin/filter, "--user=%u", "100%%"], timeout: 1m}
  nothing: {argv: [/bin/true]}
mbox: {locking: [flock], lock_timeout: 10s, stale_lock: 1m, quoting: mboxo, create: false}
maildir: {create: true, create_folders: false}
quota_tempfail: true
`

func mustSystem(t testing.TB, text string) *System {
	t.Helper()
	s, err := ParseSystem(strings.NewReader(text), "sys.yaml")
	if err != nil {
		t.Fatalf("ParseSystem: %v", err)
	}
	return s
}

func TestParseSystemGood(t *testing.T) {
	s := mustSystem(t, testSystem)
	if s.File != "sys.yaml" || s.MinUID != 500 || s.UserFile != ".config/lda.yaml" || !s.QuotaTempfail {
		t.Errorf("settings: %+v", s)
	}
	want := MboxOptions{Locking: []string{"flock"}, LockTimeout: 10 * time.Second, StaleLock: time.Minute, Quoting: "mboxo"}
	if !reflect.DeepEqual(s.Mbox, want) {
		t.Errorf("Mbox = %+v, want %+v", s.Mbox, want)
	}
	if s.mboxCreate || !s.maildirCreate || s.maildirCreateFolders {
		t.Errorf("create flags: %v %v %v", s.mboxCreate, s.maildirCreate, s.maildirCreateFolders)
	}
	if got := s.Programs(); !reflect.DeepEqual(got, []string{"filter", "nothing", "procmail"}) {
		t.Errorf("Programs = %v", got)
	}
	p := s.programs["filter"].spec("alice")
	if !reflect.DeepEqual(p.Argv, []string{"/usr/local/bin/filter", "--user=alice", "100%"}) || p.Timeout != time.Minute {
		t.Errorf("filter spec = %+v", p)
	}
	if s.programs["procmail"].timeout != DefaultProgramTimeout {
		t.Errorf("default timeout = %v", s.programs["procmail"].timeout)
	}
	rules := s.Rules()
	if len(rules) != 1+11+2+5 {
		t.Fatalf("%d rules", len(rules))
	}
	if got := rules[0].String(); got != "sys.yaml:4: default maildir ~/Maildir" {
		t.Errorf("default rule = %q", got)
	}
	if got := rules[3].String(); got != "sys.yaml:8: allow mbox /var/mail/%u" {
		t.Errorf("rule 3 = %q", got)
	}
}

func TestParseSystemDefaults(t *testing.T) {
	s := mustSystem(t, "version: 1\ndefault: {mbox: /var/mail/%u}\nallow: [{mbox: /var/mail/%u}]\n")
	if s.MinUID != 1000 || s.UserFile != ".lda.yaml" || s.QuotaTempfail {
		t.Errorf("defaults: %+v", s)
	}
	want := MboxOptions{Locking: []string{"dotlock", "fcntl"}, LockTimeout: 30 * time.Second, StaleLock: 5 * time.Minute, Quoting: "mboxrd"}
	if !reflect.DeepEqual(s.Mbox, want) {
		t.Errorf("Mbox = %+v", s.Mbox)
	}
	if !s.mboxCreate || !s.maildirCreate || !s.maildirCreateFolders {
		t.Error("create flags should default to true")
	}
	s = mustSystem(t, "version: 1\nuser_file: \"\"\ndefault: {mbox: /var/mail/%u}\nallow: [{mbox: /var/mail/%u}]\n")
	if s.UserFile != "" {
		t.Errorf("user_file \"\" gave %q", s.UserFile)
	}
}

func TestDefaultPolicy(t *testing.T) {
	s := Default()
	if s.File != DefaultFile || s.UserFile != ".lda.yaml" || s.MinUID != 1000 {
		t.Errorf("Default() = %+v", s)
	}
	if Default() == s {
		t.Error("Default must return a new System each time")
	}
	u := User{Name: "alice", Home: "/home/alice"}
	d, dec := (&Policy{Sys: s}).Default(u)
	if !dec.Allowed || d != (Destination{Kind: Maildir, Path: "/home/alice/Maildir"}) || dec.Root != "/home/alice" || dec.Rel != "Maildir" {
		t.Errorf("default = %v, %+v", d, dec)
	}
	if !strings.Contains(string(DefaultYAML()), "version: 1") {
		t.Error("DefaultYAML")
	}
}

// base is a minimal valid file; the error cases below append to it or
// replace it. Its lines: 1 version, 2 default, 3 allow, 4 the rule.
const base = "version: 1\ndefault: {mbox: /var/mail/%u}\nallow:\n  - {mbox: /var/mail/%u}\n"

func TestParseSystemErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"empty file", "", "sys.yaml:1: empty file"},
		{"comments only", "# nothing\n", "sys.yaml:1: empty file"},
		{"not a mapping", "- a\n- b\n", "sys.yaml:1: the file must be a YAML mapping"},
		{"syntax error", "version: 1\nallow: [\n", "sys.yaml:"},
		{"bad indentation", "version: 1\n  default: x\n", "sys.yaml:2:"},
		{"two documents", base + "---\nversion: 1\n", "sys.yaml:5: more than one YAML document"},
		{"unknown top key", base + "alow: []\n", `sys.yaml:5: unknown key "alow"`},
		{"duplicate top key", base + "version: 1\n", `sys.yaml:5: duplicate key "version"`},
		{"missing version", "default: {mbox: /var/mail/%u}\nallow: [{mbox: /var/mail/%u}]\n", "sys.yaml:1: version: missing"},
		{"version 2", strings.Replace(base, "version: 1", "version: 2", 1), "sys.yaml:1: version: 2 is not supported"},
		{"version string", strings.Replace(base, "version: 1", `version: "1"`, 1), "sys.yaml:1: version: expected an integer"},
		{"min_uid 0", base + "min_uid: 0\n", "sys.yaml:5: min_uid: 0 out of range"},
		{"min_uid negative", base + "min_uid: -5\n", "sys.yaml:5: min_uid: -5 out of range"},
		{"min_uid string", base + "min_uid: many\n", "sys.yaml:5: min_uid: expected an integer"},
		{"user_file absolute", base + "user_file: /etc/x\n", "sys.yaml:5: user_file \"/etc/x\" must be relative"},
		{"user_file dotdot", base + "user_file: ../x\n", "sys.yaml:5: user_file"},
		{"user_file null", base + "user_file:\n", "sys.yaml:5: user_file"},
		{"missing allow", "version: 1\ndefault: {mbox: /var/mail/%u}\n", "sys.yaml:1: allow: missing"},
		{"empty allow", "version: 1\ndefault: {mbox: /var/mail/%u}\nallow: []\n", "sys.yaml:3: allow: empty list"},
		{"null deny", base + "deny:\n", "sys.yaml:5: deny: expected a list, found nothing"},
		{"allow not a list", "version: 1\ndefault: {mbox: /var/mail/%u}\nallow: {mbox: /var/mail/%u}\n", "sys.yaml:3: allow: expected a list"},
		{"rule not a mapping", "version: 1\ndefault: {mbox: /var/mail/%u}\nallow:\n  - /var/mail/%u\n", "sys.yaml:4: allow rule: expected a mapping"},
		{"rule unknown key", base + "  - {mbox: /var/mail/x, create: true}\n", `sys.yaml:5: allow rule: unknown key "create"`},
		{"rule duplicate key", base + "  - {mbox: /var/mail/x, mbox: /var/mail/y}\n", `sys.yaml:5: allow rule: duplicate key "mbox"`},
		{"rule two kinds", base + "  - {mbox: /var/mail/x, maildir: /var/mail/y}\n", "sys.yaml:5: allow rule: names both mbox and maildir"},
		{"rule no kind", base + "  - {folders: true}\n", "sys.yaml:5: allow rule: names none of"},
		{"rule empty", base + "  - {}\n", "sys.yaml:5: allow rule: names none of"},
		{"folders on mbox", base + "  - {mbox: /var/mail/x, folders: false}\n", "sys.yaml:5: allow rule: folders applies to maildir rules only"},
		{"folders in deny", base + "deny:\n  - {maildir: ~/x, folders: false}\n", `sys.yaml:6: deny rule: unknown key "folders"`},
		{"folders not bool", base + "  - {maildir: ~/x, folders: maybe}\n", "sys.yaml:5: allow rule: folders: expected true or false"},
		{"pattern not string", base + "  - {mbox: [a]}\n", "sys.yaml:5: allow rule: mbox: expected a string"},
		{"pattern relative", base + "  - {mbox: var/mail}\n", "sys.yaml:5: allow rule: mbox: pattern \"var/mail\" must begin with / or ~/"},
		{"pattern ~user", base + "  - {mbox: ~bob/x}\n", "sys.yaml:5: allow rule: mbox: pattern \"~bob/x\": ~ must be the whole first component"},
		{"pattern ~ alone", base + "  - {mbox: \"~\"}\n", "sys.yaml:5: allow rule: mbox: pattern \"~\" names the home directory itself"},
		{"pattern /", base + "  - {mbox: /}\n", "sys.yaml:5: allow rule: mbox: pattern / names the whole file system"},
		{"pattern //", base + "  - {mbox: /var//mail}\n", "sys.yaml:5: allow rule: mbox: pattern \"/var//mail\": empty component"},
		{"pattern trailing /", base + "  - {mbox: /var/mail/}\n", "sys.yaml:5: allow rule: mbox: pattern \"/var/mail/\": empty component"},
		{"pattern /./", base + "  - {mbox: /var/./mail}\n", "sys.yaml:5: allow rule: mbox: pattern \"/var/./mail\": . component"},
		{"pattern ..", base + "  - {mbox: ~/../bob}\n", "sys.yaml:5: allow rule: mbox: pattern \"~/../bob\": .. component"},
		{"pattern %x", base + "  - {mbox: /var/mail/%x}\n", "sys.yaml:5: allow rule: mbox: pattern \"/var/mail/%x\": unknown escape %x"},
		{"pattern trailing %", base + "  - {mbox: /var/mail/x%}\n", "sys.yaml:5: allow rule: mbox: pattern \"/var/mail/x%\": \"%\" at the end"},
		{"pattern a**", base + "  - {mbox: /var/mail/a**}\n", "sys.yaml:5: allow rule: mbox: pattern \"/var/mail/a**\": ** must be a whole component"},
		{"pattern ?", base + "  - {mbox: \"/var/mail/a?\"}\n", "sys.yaml:5: allow rule: mbox: pattern \"/var/mail/a?\": \"?\", \"[\""},
		{"pattern [", base + "  - {mbox: \"/var/mail/[ab]\"}\n", "sys.yaml:5: allow rule: mbox: pattern \"/var/mail/[ab]\": \"?\", \"[\""},
		{"pattern backslash", base + "  - {mbox: '/var/mail/a\\b'}\n", "sys.yaml:5: allow rule: mbox: pattern"},
		{"pattern ** **", base + "  - {mbox: /var/**/**/x}\n", "sys.yaml:5: allow rule: mbox: pattern \"/var/**/**/x\": ** repeated"},
		{"pattern control", base + "  - {mbox: \"/var/mail/a\\tb\"}\n", "sys.yaml:5: allow rule: mbox: pattern \"/var/mail/a\\tb\": contains control character"},
		{"allow /*", base + "  - {mbox: /*}\n", "sys.yaml:5: allow rule: mbox: pattern \"/*\" has no literal directory"},
		{"allow /**", base + "  - {mbox: /**}\n", "sys.yaml:5: allow rule: mbox: pattern \"/**\" has no literal directory"},
		{"allow /%u/x", base + "  - {mbox: /%u/x}\n", "sys.yaml:5: allow rule: mbox: pattern \"/%u/x\" has no literal directory"},
		{"allow /x", base + "  - {mbox: /x}\n", "sys.yaml:5: allow rule: mbox: pattern \"/x\" has no literal directory"},
		{"user_may_add /**", base + "user_may_add: [{mbox: /**}]\n", "sys.yaml:5: user_may_add rule: mbox: pattern \"/**\" has no literal directory"},
		{"duplicate rule", base + "  - {mbox: /var/mail/%u}\n", "sys.yaml:5: allow: mbox /var/mail/%u repeats the rule at line 4"},
		{"allow and deny", base + "deny:\n  - {mbox: /var/mail/%u}\n", "sys.yaml:6: deny mbox /var/mail/%u contradicts the allow rule at line 4"},
		{"undefined program", base + "  - {program: procmail}\n", "sys.yaml:5: allow rule: program: program procmail is not defined under programs"},
		{"bad program name", base + "  - {program: \"prog;id\"}\n", "sys.yaml:5: allow rule: program: program name \"prog;id\""},
		{"program path name", base + "  - {program: ../../bin/sh}\n", "sys.yaml:5: allow rule: program: program name"},
		{"programs empty", base + "programs: {}\n", "sys.yaml:5: programs: empty mapping"},
		{"program no argv", base + "programs:\n  p: {timeout: 1m}\n", "sys.yaml:6: programs: p: argv is required"},
		{"program empty argv", base + "programs:\n  p: {argv: []}\n", "sys.yaml:6: programs: p: argv: empty list"},
		{"program relative argv0", base + "programs:\n  p: {argv: [procmail]}\n", "sys.yaml:6: programs: p: argv[0] must be an absolute clean path"},
		{"program argv0 %u", base + "programs:\n  p: {argv: [/bin/%u]}\n", "sys.yaml:6: programs: p: argv[0] must not contain %"},
		{"program bad escape", base + "programs:\n  p: {argv: [/bin/p, \"%d\"]}\n", "sys.yaml:6: programs: p: argv[1]: unknown escape %d"},
		{"program arg NUL", base + "programs:\n  p: {argv: [/bin/p, \"a\\0b\"]}\n", "sys.yaml:6: programs: p: argv[1]: contains NUL"},
		{"program timeout 0", base + "programs:\n  p: {argv: [/bin/p], timeout: 0s}\n", "sys.yaml:6: programs: p: timeout: duration must be positive"},
		{"program timeout number", base + "programs:\n  p: {argv: [/bin/p], timeout: 300}\n", "sys.yaml:6: programs: p: timeout: expected a positive duration"},
		{"program unknown key", base + "programs:\n  p: {argv: [/bin/p], shell: true}\n", `sys.yaml:6: programs: p: unknown key "shell"`},
		{"program invalid name", base + "programs:\n  \"-x\": {argv: [/bin/p]}\n", "sys.yaml:6: programs: program name \"-x\""},
		{"program duplicate", base + "programs:\n  p: {argv: [/bin/p]}\n  p: {argv: [/bin/q]}\n", `sys.yaml:7: programs: duplicate key "p" (first at line 6)`},
		{"mbox unknown key", base + "mbox: {lock: [flock]}\n", `sys.yaml:5: mbox: unknown key "lock"`},
		{"mbox duplicate key", base + "mbox:\n  quoting: mboxo\n  quoting: mboxrd\n", `sys.yaml:7: mbox: duplicate key "quoting" (first at line 6)`},
		{"unknown locking", base + "mbox: {locking: [dotlock, lockf]}\n", "sys.yaml:5: mbox: locking: unknown locking method lockf"},
		{"locking twice", base + "mbox: {locking: [flock, flock]}\n", "sys.yaml:5: mbox: locking: flock listed twice"},
		{"locking empty", base + "mbox: {locking: []}\n", "sys.yaml:5: mbox: locking: empty list"},
		{"lock_timeout negative", base + "mbox: {lock_timeout: -1s}\n", "sys.yaml:5: mbox: lock_timeout: duration must be positive"},
		{"stale_lock zero", base + "mbox:\n  stale_lock: 0s\n", "sys.yaml:6: mbox: stale_lock: duration must be positive"},
		{"stale_lock garbage", base + "mbox: {stale_lock: soon}\n", "sys.yaml:5: mbox: stale_lock: expected a positive duration"},
		{"quoting unknown", base + "mbox: {quoting: mboxcl2}\n", "sys.yaml:5: mbox: quoting: mboxcl2 is not mboxrd or mboxo"},
		{"mbox create string", base + "mbox: {create: \"yes\"}\n", "sys.yaml:5: mbox: create: expected true or false"},
		{"maildir unknown key", base + "maildir: {folders: true}\n", `sys.yaml:5: maildir: unknown key "folders"`},
		{"quota_tempfail string", base + "quota_tempfail: often\n", "sys.yaml:5: quota_tempfail: expected true or false"},
		{"missing default", "version: 1\nallow: [{mbox: /var/mail/%u}]\n", "sys.yaml:1: default: missing"},
		{"default pattern", "version: 1\ndefault: {mbox: ~/mail/*}\nallow: [{mbox: ~/mail/*}]\n", "sys.yaml:2: default: mbox: the default must name one destination"},
		{"default two kinds", "version: 1\ndefault: {mbox: /var/mail/%u, maildir: ~/M}\nallow: [{mbox: /var/mail/%u}]\n", "sys.yaml:2: default: names both"},
		{"default folders", "version: 1\ndefault: {maildir: ~/M, folders: true}\nallow: [{maildir: ~/M}]\n", `sys.yaml:2: default: unknown key "folders"`},
		{"default not allowed", "version: 1\ndefault: {maildir: ~/Maildir}\nallow: [{mbox: /var/mail/%u}]\n", "sys.yaml:2: default maildir ~/Maildir is not allowed by any allow rule"},
		{"default not provably allowed", "version: 1\ndefault: {maildir: ~/Maildir}\nallow: [{maildir: /home/*/Maildir}]\n", "sys.yaml:2: default maildir ~/Maildir is not allowed"},
		{"default other user", "version: 1\ndefault: {mbox: /var/mail/%u}\nallow: [{mbox: /var/mail/a*}]\n", "sys.yaml:2: default mbox /var/mail/%u is not allowed"},
		{"default denied", "version: 1\ndefault: {mbox: /var/mail/%u}\nallow: [{mbox: /var/mail/%u}]\ndeny: [{mbox: /var/mail/*}]\n", "sys.yaml:2: default mbox /var/mail/%u is denied by the deny rule at line 4"},
		{"default program undefined", "version: 1\ndefault: {program: p}\nallow: [{mbox: /var/mail/%u}]\n", "sys.yaml:2: default: program: program p is not defined"},
		{"default program not allowed", "version: 1\ndefault: {program: p}\nallow: [{mbox: /var/mail/%u}]\nprograms: {p: {argv: [/bin/p]}}\n", "sys.yaml:2: default program p is not allowed"},
		{"anchor and alias", "version: 1\ndefault: &d {mbox: /var/mail/%u}\nallow: [*d]\n", "sys.yaml:2: anchors and aliases are not allowed"},
		{"merge key", "version: 1\ndefault: {mbox: /var/mail/%u}\nallow: [{<<: {mbox: /var/mail/%u}}]\n", "sys.yaml:3: merge keys"},
		{"explicit tag", "version: 1\ndefault: {mbox: !!str /var/mail/%u}\nallow: [{mbox: /var/mail/%u}]\n", "sys.yaml:2: explicit tags are not allowed"},
		{"non-string key", base + "mbox: {1: x}\n", "sys.yaml:5: mbox: keys must be plain names"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSystem(strings.NewReader(tc.text), "sys.yaml")
			if err == nil {
				t.Fatalf("parsed, want error %q; rules %v", tc.want, s.Rules())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != "sys.yaml" {
				t.Fatalf("error %T %v is not a *ParseError for sys.yaml", err, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has more than one line: %q", err)
			}
		})
	}
}

func TestParseSystemTooLarge(t *testing.T) {
	text := base + "# " + strings.Repeat("x", MaxFileSize) + "\n"
	_, err := ParseSystem(strings.NewReader(text), "big.yaml")
	if err == nil || !strings.Contains(err.Error(), "big.yaml:1: file larger than") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadSystem(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(good, []byte(testSystem), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(good, 0o644)
	s, err := LoadSystem(good)
	if err != nil {
		t.Fatalf("LoadSystem: %v", err)
	}
	if s.File != good {
		t.Errorf("File = %q", s.File)
	}
	loose := filepath.Join(dir, "loose.yaml")
	os.WriteFile(loose, []byte(testSystem), 0o600)
	os.Chmod(loose, 0o666)
	if _, err := LoadSystem(loose); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("world-writable file: err = %v", err)
	}
	if _, err := LoadSystem(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: err = %v", err)
	}
	if _, err := LoadSystem(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}
