package policy

import (
	"bytes"
	_ "embed"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultFile is the name the embedded default policy has in messages and
// in Rule.File.
const DefaultFile = "<builtin>/default.yaml"

// Default returns the embedded default policy (default.yaml in this
// package). Each call returns a new System. It panics if the embedded file
// does not parse, which the tests rule out.
func Default() *System {
	s, err := ParseSystem(bytes.NewReader(defaultYAML), DefaultFile)
	if err != nil {
		panic("policy: embedded default policy: " + err.Error())
	}
	return s
}

// DefaultYAML returns the text of the embedded default policy.
func DefaultYAML() []byte {
	return bytes.Clone(defaultYAML)
}
