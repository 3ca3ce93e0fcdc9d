package policy

import (
	"errors"
	"fmt"
	"strings"
)

// ParseDestination parses the one textual form of a destination used on
// the command line (lda deliver -dest) and on the wire (XLDA-DEST):
//
//	mbox:PATH
//	maildir:PATH[#FOLDER]
//	program:NAME
//
// PATH must pass ValidPath and not be "/", FOLDER ValidFolder, NAME
// ValidProgramName. Nothing is looked up: this is lexical only.
func ParseDestination(s string) (Destination, error) {
	k, v, ok := strings.Cut(s, ":")
	if !ok {
		return Destination{}, errors.New("destination is not KIND:VALUE")
	}
	kind, err := ParseKind(k)
	if err != nil {
		return Destination{}, err
	}
	d := Destination{Kind: kind}
	switch kind {
	case Program:
		d.Program = v
		return d, ValidProgramName(v)
	case Maildir:
		d.Path, d.Folder, ok = strings.Cut(v, "#")
		if ok {
			if err := ValidFolder(d.Folder); err != nil {
				return d, err
			}
		}
	default:
		d.Path = v
	}
	if d.Path == "/" {
		return d, fmt.Errorf("destination path is the root directory")
	}
	return d, ValidPath(d.Path)
}
