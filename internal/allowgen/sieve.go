package allowgen

import (
	"path/filepath"
	"sort"
	"strings"

	"lda/internal/aliases"
	"lda/policy"
)

// buildSieve converts a user's .forward to a Sieve script (RFC 5228):
// addresses become redirect, the user's own name (\user) keep, files that
// are the user's mail store or one of its Maildir++ folders keep or
// fileinto, :blackhole: discard and :fail: reject. Each action is preceded
// by a comment with the .forward's file:line. Programs, other files,
// :defer: and unqualified addresses without -domain are not convertible:
// the script says so in comments, and is shown but not written.
func (g *gen) buildSieve(u *userState) {
	usr := u.acct.User()
	store, _ := (&policy.Policy{Sys: g.finalSys}).Default(usr)
	requires := map[string]bool{}
	var body []string
	var missing []string
	noConv := func(h Hop, why string) {
		body = append(body, "# NOT CONVERTED: "+sanitizeComment(why))
		missing = append(missing, h.Pos()+": "+why)
	}
	for _, h := range u.routes {
		src := h.Pos() + ": " + h.Element.String()
		if h.Via != "" {
			src += " (via " + h.Via + ")"
		}
		body = append(body, "# "+sanitizeComment(src))
		switch {
		case h.Keep:
			body = append(body, "keep;")
		case h.Dest != nil:
			d := h.Dest
			switch {
			case d.kind == policy.Program:
				ok := d.rejected == "" && d.name != ""
				if ok && g.cfg.SievePipe {
					requires["vnd.dovecot.pipe"] = true
					body = append(body, "pipe "+quoteSieve(d.name)+";")
				} else if ok {
					noConv(h, "a program: lda's Sieve has no action that runs one (it stays allowed as program:"+d.name+"; -sieve-pipe writes Pigeonhole's pipe \""+d.name+"\")")
				} else {
					noConv(h, "a program that the policy does not allow")
				}
			default:
				if f, ok := storeFolder(d, store); ok && d.rejected == "" {
					if f == "" {
						body = append(body, "keep;")
					} else {
						requires["fileinto"] = true
						body = append(body, "fileinto "+quoteSieve(f)+";")
					}
				} else if d.rejected != "" {
					noConv(h, d.describe()+" is not in the policy: "+d.rejected)
				} else {
					noConv(h, d.describe()+" is not "+storeText(store)+" or one of its folders (fileinto takes folders); it stays allowed for lda deliver -dest")
				}
			}
		case h.NotConverted != "":
			noConv(h, h.NotConverted)
		case h.Kind == aliases.Special:
			switch h.Value {
			case ":blackhole:":
				body = append(body, "discard;")
			case ":fail:":
				requires["reject"] = true
				text := h.Text
				if text == "" {
					text = "rejected"
				}
				body = append(body, "reject "+quoteSieve(text)+";")
			default:
				noConv(h, h.Value+" has no Sieve equivalent")
			}
		default:
			addr := h.Value
			if h.Domain != "" {
				addr += "@" + h.Domain
			} else if g.cfg.Domain != "" {
				addr += "@" + g.cfg.Domain
			} else {
				noConv(h, "an unqualified address ("+h.Value+"): give -domain")
				continue
			}
			body = append(body, "redirect "+quoteSieve(addr)+";")
		}
	}
	var b strings.Builder
	b.WriteString(marker + " from " + sanitizeComment(u.file) + " (allowgen(8)).\n")
	b.WriteString("# Do not edit: change the .forward and run allowgen again, or remove this file.\n")
	if len(requires) > 0 {
		var rs []string
		for r := range requires {
			rs = append(rs, quoteSieve(r))
		}
		sort.Strings(rs)
		b.WriteString("require [" + strings.Join(rs, ", ") + "];\n")
	}
	for _, l := range body {
		b.WriteString(l + "\n")
	}
	path, h := g.userPath(u, g.cfg.SieveName, ".sieve")
	out := &Output{Path: path, Role: "Sieve script of " + u.acct.Name, Content: []byte(b.String()), UID: u.acct.UID, GID: u.acct.GID, Mode: 0o600, Whole: true, home: h}
	if len(missing) > 0 {
		out.Incomplete = strings.Join(missing, "; ")
		g.res.Summary.SieveIncomplete++
		g.warnAt(u.file, "the Sieve script for %s is not written: %d element(s) not convertible", u.acct.Name, len(missing))
		out.Old = readExisting(h, path, true)
		g.res.Outputs = append(g.res.Outputs, out)
		return
	}
	g.res.Summary.SieveScripts++
	g.place(out)
}

// storeFolder maps a file destination onto the user's mail store: ""
// for the store itself (keep), a folder name for one of its Maildir++
// folders; false if it is neither.
func storeFolder(d *dest, store policy.Destination) (string, bool) {
	switch {
	case store.Kind == policy.Maildir && d.kind == policy.Maildir:
		if d.path == store.Path {
			return d.folder, true
		}
		dir, last := filepath.Split(d.path)
		if f, ok := strings.CutPrefix(last, "."); ok && d.folder == "" && strings.TrimSuffix(dir, "/") == store.Path && policy.ValidFolder(f) == nil {
			return f, true
		}
	case store.Kind == policy.Mbox && d.kind == policy.Mbox:
		if d.path == store.Path {
			return "", true
		}
	}
	return "", false
}

func storeText(store policy.Destination) string {
	if store.Kind == 0 {
		return "the mail store"
	}
	return "the mail store (" + store.String() + ")"
}
