package allowgen

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"lda/policy"
)

// Account is one line of the passwd file.
type Account struct {
	Name     string
	UID, GID int
	Home     string
}

// User returns the policy's view of the account.
func (a *Account) User() policy.User { return policy.User{Name: a.Name, Home: a.Home} }

// Passwd is the user database allowgen reads (a passwd(5) file).
type Passwd struct {
	list   []*Account
	byName map[string]*Account
	byUID  map[int]*Account
}

// LoadPasswd reads a passwd(5) file. Lines that do not have seven fields,
// a valid user name (policy.ValidUserName), decimal ids and an absolute
// clean home directory are skipped; the first line for a name or uid wins.
func LoadPasswd(path string) (*Passwd, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parsePasswd(data), nil
}

func parsePasswd(data []byte) *Passwd {
	p := &Passwd{byName: map[string]*Account{}, byUID: map[int]*Account{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) != 7 || policy.ValidUserName(f[0]) != nil || policy.ValidPath(f[5]) != nil {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || uid < 0 || gid < 0 || strconv.Itoa(uid) != f[2] {
			continue
		}
		a := &Account{Name: f[0], UID: uid, GID: gid, Home: f[5]}
		if p.byName[a.Name] != nil {
			continue
		}
		p.byName[a.Name] = a
		if p.byUID[uid] == nil {
			p.byUID[uid] = a
		}
		p.list = append(p.list, a)
	}
	return p
}

// Lookup returns the account of name, or nil.
func (p *Passwd) Lookup(name string) *Account { return p.byName[name] }

// ByUID returns the first account with uid, or nil.
func (p *Passwd) ByUID(uid int) *Account { return p.byUID[uid] }

// Select returns the accounts to scan for .forward files: the named ones
// (each must exist), or else every account with a uid of at least minUID,
// sorted by name.
func (p *Passwd) Select(names []string, minUID int) ([]*Account, error) {
	var out []*Account
	if len(names) > 0 {
		seen := map[string]bool{}
		for _, n := range names {
			a := p.byName[n]
			if a == nil {
				return nil, fmt.Errorf("no such user %s in the passwd file", strconv.Quote(n))
			}
			if !seen[n] {
				out = append(out, a)
				seen[n] = true
			}
		}
	} else {
		for _, a := range p.list {
			if a.UID >= minUID {
				out = append(out, a)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func validUTF8(s string) bool { return utf8.ValidString(s) }
