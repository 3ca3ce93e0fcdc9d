package userdb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"lda/policy"
)

// The virtual backend ("yaml:/etc/lda/virtual.yaml") maps mail users that
// have no account onto a system uid and gid and their own mail directory,
// which becomes their home (~) for the policy:
//
//	version: 1
//	uid: 5000                # defaults for every user below
//	gid: 5000
//	users:
//	  alice@example.org: {home: /srv/vmail/example.org/alice}
//	  bob@example.org:   {home: /srv/vmail/example.org/bob, uid: 5001, gid: 5001}
//
// Names are matched without regard to case. Unknown keys, a bad name, a
// home that is not an absolute clean path and a uid or gid of 0 are
// errors that name the file and line.
type virtualFile struct {
	Version int                    `yaml:"version"`
	UID     int                    `yaml:"uid"`
	GID     int                    `yaml:"gid"`
	Users   map[string]virtualUser `yaml:"users"`
}

type virtualUser struct {
	Home string `yaml:"home"`
	UID  int    `yaml:"uid"`
	GID  int    `yaml:"gid"`
}

// ParseVirtual reads a virtual user map.
func ParseVirtual(r io.Reader, name string) (map[string]*User, error) {
	data, err := io.ReadAll(io.LimitReader(r, 16<<20))
	if err != nil {
		return nil, err
	}
	var vf virtualFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&vf); err != nil {
		return nil, fmt.Errorf("%s: %v", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var root yaml.Node
	yaml.Unmarshal(data, &root)
	if vf.Version != 1 {
		return nil, fmt.Errorf("%s: version must be 1", name)
	}
	out := map[string]*User{}
	keys := make([]string, 0, len(vf.Users))
	for k := range vf.Users {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the first error deterministically
	for _, key := range keys {
		v := vf.Users[key]
		line := userLine(&root, key)
		lk := strings.ToLower(key)
		u := &User{Name: lk, UID: v.UID, GID: v.GID, Home: v.Home}
		if u.UID == 0 {
			u.UID = vf.UID
		}
		if u.GID == 0 {
			u.GID = vf.GID
		}
		switch {
		case policy.ValidUserName(lk) != nil:
			return nil, fmt.Errorf("%s:%d: %q is not a valid user name", name, line, key)
		case policy.ValidPath(u.Home) != nil || u.Home == "/":
			return nil, fmt.Errorf("%s:%d: %s: home must be an absolute clean path", name, line, key)
		case u.UID < 1 || u.GID < 1:
			return nil, fmt.Errorf("%s:%d: %s: uid and gid must be set and not 0", name, line, key)
		case out[lk] != nil:
			return nil, fmt.Errorf("%s:%d: %s: duplicate user (names ignore case)", name, line, key)
		}
		out[lk] = u
	}
	return out, nil
}

func userLine(root *yaml.Node, key string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "users" {
			m := n.Content[i+1]
			for j := 0; j+1 < len(m.Content); j += 2 {
				if m.Content[j].Value == key {
					return m.Content[j].Line
				}
			}
		}
	}
	return 1
}

func lookupVirtual(path, name string) (*User, error) {
	m, err := users(path, ParseVirtual)
	if err != nil {
		return nil, err
	}
	if u := m[strings.ToLower(name)]; u != nil {
		return copyOf(u), nil
	}
	return nil, ErrNotFound
}

// ValidBackend checks a backend name: "passwd", "getent" or
// "yaml:/absolute/path".
func ValidBackend(b string) error {
	if b == "passwd" || b == "getent" {
		return nil
	}
	if p, ok := strings.CutPrefix(b, "yaml:"); ok && policy.ValidPath(p) == nil {
		return nil
	}
	return errors.New(`must be passwd, getent or yaml:/absolute/path`)
}
