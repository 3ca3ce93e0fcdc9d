package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// key identifies one delivery: a message (its bench id) to one recipient.
type key struct{ ID, Rcpt string }

// tally is what the acks say about one key and how often it was found.
type tally struct {
	ok, temp, perm, dropped int // replies: 2xx, 4xx, 5xx, DROPPED
	present                 int // intact copies in the mailboxes
}

// Report is the outcome of a check. Every field whose name says
// "violation" in Violations makes the check fail.
type Report struct {
	Acks        int            // ack lines read
	Codes       map[string]int // "250 2.0.0" -> n, "DROPPED -" -> n
	Messages    int            // messages found in the mailboxes
	Intact      int            // of them, with a matching X-Bench-Sum
	Delivered   int            // acked 2xx and present
	Missing     int            // acked 2xx, not present (violation)
	Corrupt     int            // sum mismatch, broken structure (violation)
	NoBenchID   int            // no X-Bench-Id or X-Bench-Sum (violation)
	Unknown     int            // intact, but in no ack file (violation)
	Unattrib    int            // no Delivered-To and the id has several recipients (violation)
	Despite5xx  int            // present although the only answer was 5xx (violation)
	DupAcked    int            // more copies than 2xx + 4xx + DROPPED answers (violation unless allowed)
	DupUnacked  int            // several copies of a key never answered 2xx (reported)
	ExtraTemp   int            // present although answered 4xx or DROPPED (allowed: never lose, may duplicate)
	TmpFiles    int            // files left in a Maildir's tmp/ (violation unless allowed)
	BadCodes    int            // replies outside -codes (violation)
	Examples    []string       // the first few problems, for the reader
	AllowDup    bool
	AllowTmp    bool
	AllowedCode func(code, enhanced string) bool
}

const maxExamples = 20

func (r *Report) example(format string, args ...any) {
	if len(r.Examples) < maxExamples {
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}

// Check compares the acks with the messages found and the tmp/ leftovers.
func Check(acks []Ack, msgs []Message, tmp []string, rep *Report) {
	if rep.Codes == nil {
		rep.Codes = map[string]int{}
	}
	keys := map[key]*tally{}
	rcptsOf := map[string][]string{}
	get := func(k key) *tally {
		t := keys[k]
		if t == nil {
			t = &tally{}
			keys[k] = t
			rcptsOf[k.ID] = append(rcptsOf[k.ID], k.Rcpt)
		}
		return t
	}
	for _, a := range acks {
		rep.Acks++
		rep.Codes[a.Code+" "+a.Enhanced]++
		if a.Code != "DROPPED" && rep.AllowedCode != nil && !rep.AllowedCode(a.Code, a.Enhanced) {
			rep.BadCodes++
			rep.example("unexpected reply %s %s for %s to %s", a.Code, a.Enhanced, a.ID, a.Rcpt)
		}
		k := key{a.ID, a.Rcpt}
		t := get(k)
		switch a.Class() {
		case 2:
			t.ok++
		case 4:
			t.temp++
		case 5:
			t.perm++
		default:
			t.dropped++
		}
	}
	for _, m := range msgs {
		rep.Messages++
		switch {
		case m.Bad != "":
			rep.Corrupt++
			rep.example("%s: %s", m.Where, m.Bad)
			continue
		case m.ID == "" || m.Sum == "":
			rep.NoBenchID++
			rep.example("%s: no X-Bench-Id or X-Bench-Sum", m.Where)
			continue
		case m.Sum != m.Computed:
			rep.Corrupt++
			rep.example("%s: %s body sum %.12s, header says %.12s (truncated or corrupt)", m.Where, m.ID, m.Computed, m.Sum)
			continue
		}
		rep.Intact++
		rcpt := m.Rcpt
		if rcpt == "" {
			if rs := rcptsOf[m.ID]; len(rs) == 1 {
				rcpt = rs[0]
			} else {
				rep.Unattrib++
				rep.example("%s: %s has no Delivered-To and %d recipients", m.Where, m.ID, len(rs))
				continue
			}
		}
		k := key{m.ID, rcpt}
		t, ok := keys[k]
		if !ok {
			rep.Unknown++
			rep.example("%s: %s to %s is in no ack file", m.Where, m.ID, rcpt)
			continue
		}
		t.present++
	}
	sorted := make([]key, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].ID != sorted[j].ID {
			return sorted[i].ID < sorted[j].ID
		}
		return sorted[i].Rcpt < sorted[j].Rcpt
	})
	for _, k := range sorted {
		t := keys[k]
		if t.present < t.ok {
			rep.Missing += t.ok - t.present
			rep.Delivered += t.present
			rep.example("%s to %s: acknowledged 2xx %d time(s), found %d", k.ID, k.Rcpt, t.ok, t.present)
			continue
		}
		rep.Delivered += t.ok
		extra := t.present - t.ok
		if extra == 0 {
			continue
		}
		allow := t.temp + t.dropped
		if extra <= allow {
			rep.ExtraTemp += extra
			continue
		}
		rep.ExtraTemp += allow
		over := extra - allow
		switch {
		case t.ok > 0:
			rep.DupAcked += over
			rep.example("%s to %s: %d copies, answered 2xx %d, 4xx %d, 5xx %d, dropped %d", k.ID, k.Rcpt, t.present, t.ok, t.temp, t.perm, t.dropped)
		case t.perm > 0:
			rep.Despite5xx += over
			rep.example("%s to %s: present %d time(s) despite a 5xx answer", k.ID, k.Rcpt, t.present)
		default:
			rep.DupUnacked += over
		}
	}
	rep.TmpFiles += len(tmp)
	for _, p := range tmp {
		rep.example("left in tmp/: %s", p)
	}
}

// Violations lists what makes the check fail.
func (r *Report) Violations() []string {
	var v []string
	add := func(n int, what string) {
		if n > 0 {
			v = append(v, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(r.Missing, "acknowledged 2xx but missing")
	add(r.Corrupt, "truncated or corrupt")
	add(r.NoBenchID, "without bench headers")
	add(r.Unknown, "in no ack file")
	add(r.Unattrib, "without Delivered-To")
	add(r.Despite5xx, "present despite a 5xx")
	if !r.AllowDup {
		add(r.DupAcked, "duplicates of acknowledged messages")
	}
	if !r.AllowTmp {
		add(r.TmpFiles, "files left in Maildir tmp/")
	}
	add(r.BadCodes, "replies outside the allowed codes")
	return v
}

// Print writes the counts, the reply tally and the examples.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "acks %d  messages %d  intact %d  delivered %d\n", r.Acks, r.Messages, r.Intact, r.Delivered)
	fmt.Fprintf(w, "missing %d  corrupt %d  no-bench-id %d  unknown %d  unattributed %d  despite-5xx %d\n",
		r.Missing, r.Corrupt, r.NoBenchID, r.Unknown, r.Unattrib, r.Despite5xx)
	fmt.Fprintf(w, "duplicates-of-2xx %d  duplicates-unacked %d  extra-after-4xx/dropped %d  tmp-files %d\n",
		r.DupAcked, r.DupUnacked, r.ExtraTemp, r.TmpFiles)
	codes := make([]string, 0, len(r.Codes))
	for c := range r.Codes {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%s=%d", strings.ReplaceAll(c, " ", "/"), r.Codes[c]))
	}
	fmt.Fprintf(w, "replies %s\n", strings.Join(parts, " "))
	for _, e := range r.Examples {
		fmt.Fprintf(w, "  %s\n", e)
	}
}
