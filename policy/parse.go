package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize is the largest policy file accepted (system or user).
const MaxFileSize = 1 << 20

// readLimited reads all of r, refusing more than MaxFileSize bytes.
func readLimited(r io.Reader, file string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, &ParseError{File: file, Msg: "read: " + err.Error()}
	}
	if len(data) > MaxFileSize {
		return nil, &ParseError{File: file, Line: 1, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)}
	}
	return data, nil
}

// decodeStrict decodes exactly one YAML document into out, a struct whose
// fields are yaml.Node. It decodes twice: once into a yaml.Node to refuse
// more than one document, anchors, aliases and merge keys, then with
// KnownFields(true) into out, which refuses unknown and duplicate keys of
// the top-level mapping. The nested values are then checked by walker,
// which is just as strict and keeps every line number.
func decodeStrict(data []byte, file string, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return &ParseError{File: file, Line: 1, Msg: "empty file (version: 1 is required)"}
		}
		return yamlError(file, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return &ParseError{File: file, Line: extra.Line, Msg: "more than one YAML document"}
	case !errors.Is(err, io.EOF):
		return yamlError(file, err)
	}
	if err := noAliases(file, &root); err != nil {
		return err
	}
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		return yamlError(file, err)
	}
	return nil
}

// noAliases refuses anchors, aliases, merge keys and explicit tags
// anywhere: a policy is plain data.
func noAliases(file string, n *yaml.Node) error {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return &ParseError{File: file, Line: n.Line, Msg: "anchors and aliases are not allowed"}
	}
	if n.ShortTag() == "!!merge" {
		return &ParseError{File: file, Line: n.Line, Msg: "merge keys (<<) are not allowed"}
	}
	if n.Style&yaml.TaggedStyle != 0 {
		return &ParseError{File: file, Line: n.Line, Msg: "explicit tags are not allowed"}
	}
	for _, c := range n.Content {
		if err := noAliases(file, c); err != nil {
			return err
		}
	}
	return nil
}

// yamlError turns an error of the YAML library into a ParseError.
func yamlError(file string, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 1
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, text
			}
		}
	}
	// Make the library's wording about Go types readable for admins.
	switch {
	case strings.HasPrefix(msg, "field ") && strings.Contains(msg, " not found in type "):
		name, _, _ := strings.Cut(strings.TrimPrefix(msg, "field "), " not found in type ")
		msg = fmt.Sprintf("unknown key %s", strconv.Quote(name))
	case strings.HasPrefix(msg, "field ") && strings.Contains(msg, " already set in type "):
		name, _, _ := strings.Cut(strings.TrimPrefix(msg, "field "), " already set in type ")
		msg = fmt.Sprintf("duplicate key %s", strconv.Quote(name))
	case strings.HasPrefix(msg, "mapping key ") && strings.Contains(msg, " already defined at line "):
		name, at, _ := strings.Cut(strings.TrimPrefix(msg, "mapping key "), " already defined at line ")
		msg = fmt.Sprintf("duplicate key %s (first at line %s)", name, at)
	case strings.HasPrefix(msg, "cannot unmarshal ") && strings.Contains(msg, " into policy."):
		msg = "the file must be a YAML mapping (key: value)"
	}
	return &ParseError{File: file, Line: line, Msg: msg}
}

// walker checks yaml.Nodes strictly and makes errors with file:line.
type walker struct {
	file string
	user *User // set for a user's file: rules are expanded for this user
}

func (w *walker) errf(n *yaml.Node, format string, args ...any) error {
	line := 1
	if n != nil && n.Line > 0 {
		line = n.Line
	}
	return &ParseError{File: w.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func present(n *yaml.Node) bool { return n != nil && n.Kind != 0 }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "something else"
}

type entry struct {
	key   string
	k, v  *yaml.Node
	index int
}

// mapping checks that n is a mapping with string keys out of known, each
// at most once, and returns its entries in file order.
func (w *walker) mapping(n *yaml.Node, what string, known ...string) ([]entry, error) {
	if n.Kind != yaml.MappingNode {
		return nil, w.errf(n, "%s: expected a mapping, found %s", what, kindName(n))
	}
	var out []entry
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return nil, w.errf(k, "%s: keys must be plain names", what)
		}
		if first, dup := seen[k.Value]; dup {
			return nil, w.errf(k, "%s: duplicate key %s (first at line %d)", what, strconv.Quote(k.Value), first)
		}
		seen[k.Value] = k.Line
		if known != nil && !contains(known, k.Value) {
			return nil, w.errf(k, "%s: unknown key %s (known: %s)", what, strconv.Quote(k.Value), strings.Join(known, ", "))
		}
		out = append(out, entry{key: k.Value, k: k, v: v, index: i / 2})
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// list checks that n is a non-empty list.
func (w *walker) list(n *yaml.Node, what string) ([]*yaml.Node, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, w.errf(n, "%s: expected a list, found %s", what, kindName(n))
	}
	if len(n.Content) == 0 {
		return nil, w.errf(n, "%s: empty list (leave the key out instead)", what)
	}
	return n.Content, nil
}

func (w *walker) str(n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return "", w.errf(n, "%s: expected a string, found %s", what, kindName(n))
	}
	return n.Value, nil
}

func (w *walker) boolean(n *yaml.Node, what string) (bool, error) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		switch n.Value {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, w.errf(n, "%s: expected true or false, found %s", what, kindName(n))
}

func (w *walker) integer(n *yaml.Node, what string) (int64, error) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		var v int64
		if err := n.Decode(&v); err == nil {
			return v, nil
		}
	}
	return 0, w.errf(n, "%s: expected an integer, found %s", what, kindName(n))
}

// duration parses a positive Go duration such as "30s" or "5m".
func (w *walker) duration(n *yaml.Node, what string) (time.Duration, error) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		d, err := time.ParseDuration(n.Value)
		if err == nil && d > 0 {
			return d, nil
		}
		if err == nil {
			return 0, w.errf(n, "%s: duration must be positive, found %s", what, strconv.Quote(n.Value))
		}
	}
	return 0, w.errf(n, "%s: expected a positive duration such as 30s or 5m, found %s", what, kindName(n))
}
