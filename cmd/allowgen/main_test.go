package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestModesAndExitStatus runs the command in every mode over a small
// site and checks output and exit status (allowgen(8), EXIT STATUS).
func TestModesAndExitStatus(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	os.MkdirAll(filepath.Join(home, "mail"), 0o700)
	me := os.Getuid()
	if me == 0 {
		me = 4242
		os.Chown(home, me, me)
		os.Chown(filepath.Join(home, "mail"), me, me)
	} else if me < 1000 {
		t.Skip("needs root or a uid of at least 1000")
	}
	passwd := filepath.Join(dir, "passwd")
	os.WriteFile(passwd, []byte(fmt.Sprintf("root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\nme:x:%d:%d::%s:/bin/sh\n", me, me, home)), 0o644)
	aliases := filepath.Join(dir, "aliases")
	os.WriteFile(aliases, []byte("postmaster: me\narchive: "+dir+"/archive\n"), 0o644)
	fwd := filepath.Join(home, ".forward")
	os.WriteFile(fwd, []byte("\\me, ~/box\n"), 0o644)
	os.Chown(fwd, me, me)
	pol := filepath.Join(dir, "policy.yaml")
	base := []string{"-aliases", aliases, "-policy", pol, "-passwd", passwd, "-users", "me"}
	run1 := func(args ...string) (int, string, string) {
		var o, e bytes.Buffer
		code := run(append(append([]string{}, base...), args...), &o, &e)
		return code, o.String(), e.String()
	}
	steps := []struct {
		name   string
		args   []string
		setup  func()
		exit   int
		stdout []string
	}{
		{"usage: two modes", []string{"-write", "-check"}, nil, 64, nil},
		{"usage: operand", []string{"x"}, nil, 64, nil},
		{"usage: bad table", []string{"-table", "nope"}, nil, 78, nil},
		{"root as default user", []string{"-default-user", "root"}, nil, 78, nil},
		{"bad base", []string{"-base", aliases}, nil, 78, nil},
		{"dry run", nil, nil, 0, []string{"# allowgen: dry run", "==> " + pol + " (system policy) <==", "  - {mbox: " + dir + "/archive}  # allowgen: " + aliases + ":2 (alias archive), runs as ", "== routing", "== summary"}},
		{"check before writing", []string{"-check"}, nil, 1, []string{pol + " (system policy) is missing"}},
		{"diff", []string{"-diff"}, nil, 0, []string{"--- " + pol, "+++ " + pol + " (from the sources)"}},
		{"write", []string{"-write"}, nil, 0, []string{"wrote " + pol, "wrote " + home + "/.lda.yaml"}},
		{"check after writing", []string{"-check"}, nil, 0, nil},
		{"diff after writing", []string{"-diff"}, nil, 0, []string{"no changes"}},
		{"check after a change", []string{"-check"}, func() {
			os.WriteFile(aliases, []byte("postmaster: me\narchive: "+dir+"/archive2\n"), 0o644)
		}, 1, []string{pol + " (system policy) differs from the sources", "+  - {mbox: " + dir + "/archive2}"}},
		{"errors in the sources", []string{"-write"}, func() {
			os.WriteFile(aliases, []byte("postmaster: me\nbroken: <x@y>\n"), 0o644)
		}, 2, []string{"wrote " + pol}},
		{"table", []string{"-table", "aliases"}, nil, 2, []string{"== Postfix aliases table", "postmaster: me"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.setup != nil {
				s.setup()
			}
			code, out, errs := run1(s.args...)
			if code != s.exit {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, s.exit, out, errs)
			}
			for _, w := range s.stdout {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestManPage: allowgen(8) documents every flag and has the sections the
// issue asks for.
func TestManPage(t *testing.T) {
	page, err := os.ReadFile("../../man/allowgen.8")
	if err != nil {
		t.Fatal(err)
	}
	var o, e bytes.Buffer
	if code := run([]string{"-h"}, &o, &e); code != 64 {
		t.Fatalf("-h: exit %d", code)
	}
	var flags []string
	for _, l := range strings.Split(e.String(), "\n") {
		if f, ok := strings.CutPrefix(l, "  -"); ok {
			flags = append(flags, strings.Fields(f)[0])
		}
	}
	if len(flags) < 15 {
		t.Fatalf("found only %d flags in the usage: %q", len(flags), e.String())
	}
	options := string(page)
	if i := strings.Index(options, ".SH OPTIONS"); i >= 0 {
		options = options[i:]
	}
	if i := strings.Index(options, "\n.SH \""); i >= 0 {
		options = options[:i]
	}
	for _, f := range flags {
		man := `\-` + strings.ReplaceAll(f, "-", `\-`)
		if !strings.Contains(options, ".BI "+man+" ") && !strings.Contains(options, ".B "+man+"\n") && !strings.Contains(options, ".BR "+man+" ") {
			t.Errorf("flag -%s is not described under OPTIONS", f)
		}
	}
	for _, sec := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", `"ALIASES FILE GRAMMAR"`, `".FORWARD GRAMMAR"`, "OUTPUT", `"EXIT STATUS"`, "EXAMPLES", `"DIFFERENCES FROM POSTALIAS"`, "SECURITY", `"SEE ALSO"`} {
		if !strings.Contains(string(page), "\n.SH "+sec+"\n") {
			t.Errorf("section %s is missing", sec)
		}
	}
}
