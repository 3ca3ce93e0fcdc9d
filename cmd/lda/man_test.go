package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestManPagesRender formats every page under man/ with groff and all its
// warnings on: a stray escape (such as "\m", a colour) or a broken macro
// is a page that reads wrong, and nothing else would notice it.
// .ci/run installs groff; without it the test skips.
func TestManPagesRender(t *testing.T) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("no groff")
	}
	pages, err := filepath.Glob("../../man/*.[1-8]")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no man pages found: %v", err)
	}
	for _, p := range pages {
		t.Run(filepath.Base(p), func(t *testing.T) {
			var stderr bytes.Buffer
			cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", p)
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil || stderr.Len() > 0 {
				t.Fatalf("groff: %v\n%s", err, stderr.String())
			}
		})
	}
}
