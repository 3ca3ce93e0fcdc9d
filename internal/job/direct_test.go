package job

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"

	"lda/internal/status"
)

// TestWorkerRequests: the two requests about direct workers name a user
// and nothing else, and only an end request names a worker.
func TestWorkerRequests(t *testing.T) {
	for _, c := range []struct {
		name string
		r    Request
		ok   bool
	}{
		{"worker", Request{Op: OpWorker, User: "alice", Kind: KindDefault}, true},
		{"end", Request{Op: OpEnd, Worker: 7, User: "alice", Kind: KindDefault}, true},
		{"worker naming a worker", Request{Op: OpWorker, Worker: 7, User: "alice", Kind: KindDefault}, false},
		{"end without a worker", Request{Op: OpEnd, User: "alice", Kind: KindDefault}, false},
		{"worker with a path", Request{Op: OpWorker, User: "alice", Kind: KindMbox, Path: "/var/mail/alice"}, false},
		{"worker with a size", Request{Op: OpWorker, User: "alice", Kind: KindDefault, Size: 10}, false},
		{"worker for a bad name", Request{Op: OpWorker, User: "../alice", Kind: KindDefault}, false},
		{"delivery naming a worker", Request{Op: ModeDeliver, Worker: 7, User: "alice", Kind: KindDefault}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec, err := c.r.Encode()
			if (err == nil) != c.ok {
				t.Fatalf("Encode: %v, want ok=%v", err, c.ok)
			}
			if !c.ok {
				// Root must refuse it even from a listener that skips Encode.
				raw := strings.Replace(string(mustEncode(t, Request{Op: ModeDeliver, User: "alice", Kind: KindDefault})), "op deliver", "op "+c.r.Op, 1)
				if c.r.Worker != 0 {
					raw = strings.Replace(raw, "worker 0", "worker 7", 1)
				}
				if c.r.Path != "" {
					raw = strings.Replace(raw, "kind default\npath \n", "kind mbox\npath /var/mail/alice\n", 1)
				}
				if c.r.Size != 0 {
					raw = strings.Replace(raw, "size 0", "size 10", 1)
				}
				if c.r.User != "alice" {
					raw = strings.Replace(raw, "user alice", "user ../alice", 1)
				}
				if r, err := DecodeRequest([]byte(raw)); err == nil {
					t.Fatalf("DecodeRequest accepted %+v from\n%s", r, raw)
				}
				return
			}
			got, err := DecodeRequest(rec)
			if err != nil || *got != c.r {
				t.Fatalf("round trip: %+v, %v; want %+v", got, err, c.r)
			}
		})
	}
}

func mustEncode(t *testing.T, r Request) []byte {
	t.Helper()
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWorkerReply: a reply that starts a worker carries its id, pid,
// bind record and policy stamp through the wire; anything less, or a
// stamp that is not four numbers, is refused.
func TestWorkerReply(t *testing.T) {
	bind := &Job{Mode: ModeBind, User: "alice", UID: 1001, GID: 1001, Home: "/home/alice", Kind: KindDefault, Policy: "/etc/lda/policy.yaml", SieveDir: "/etc/lda/sieve"}
	rep := &Reply{ID: 3, Status: status.New(250, "2.0.0", "worker started"), Worker: 9, Pid: 4242, Bind: bind}
	got, err := DecodeReply(rep.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.Worker != 9 || got.Pid != 4242 || got.Bind == nil || *got.Bind != *bind || got.Stamp != (Stamp{}) {
		t.Fatalf("round trip: %+v (bind %+v)", got, got.Bind)
	}
	for _, st := range []Stamp{
		{Dev: 64769, Ino: 131074, Size: 114, Mtime: 1796601600123456789},
		{Dev: 1, Ino: 2, Size: 0, Mtime: -315619200000000000}, // 1960
		{Dev: 1<<64 - 1, Ino: 1<<64 - 1, Size: 1<<63 - 1, Mtime: -1 << 63},
	} {
		r := *rep
		r.Stamp = st
		got, err := DecodeReply(r.Encode())
		if err != nil || got.Stamp != st {
			t.Fatalf("stamp %+v: round trip %+v, %v", st, got, err)
		}
	}
	plain := string((&Reply{ID: 3, Status: status.Delivered}).Encode())
	stamped := *rep
	stamped.Stamp = Stamp{Dev: 1, Ino: 2, Size: 3, Mtime: 4}
	withStamp := string(stamped.Encode())
	for name, raw := range map[string]string{
		"worker without bind":     strings.Replace(plain, "end\n", "worker 9\npid 4242\nend\n", 1),
		"bind that is a delivery": strings.Replace(string(rep.Encode()), "mode+20bind", "mode+20deliver", 1),
		"worker 0":                strings.Replace(string(rep.Encode()), "worker 9", "worker 0", 1),
		"stamp without a worker":  strings.Replace(plain, "end\n", "stamp 1+202+203+204\nend\n", 1),
		"empty stamp, no worker":  strings.Replace(plain, "end\n", "stamp \nend\n", 1),
		"empty stamp":             strings.Replace(withStamp, "stamp 1+202+203+204", "stamp ", 1),
		"stamp of three numbers":  strings.Replace(withStamp, "stamp 1+202+203+204", "stamp 1+202+203", 1),
		"stamp of five numbers":   strings.Replace(withStamp, "stamp 1+202+203+204", "stamp 1+202+203+204+205", 1),
		"stamp all zero":          strings.Replace(withStamp, "stamp 1+202+203+204", "stamp 0+200+200+200", 1),
		"stamp with a sign":       strings.Replace(withStamp, "stamp 1+202+203+204", "stamp 1+202+20-3+204", 1),
		"stamp size over int64":   strings.Replace(withStamp, "stamp 1+202+203+204", "stamp 1+202+209223372036854775808+204", 1),
		"stamp twice":             strings.Replace(withStamp, "stamp 1+202+203+204", "stamp 1+202+203+204\nstamp 1+202+203+204", 1),
	} {
		t.Run(name, func(t *testing.T) {
			if r, err := DecodeReply([]byte(raw)); err == nil {
				t.Fatalf("accepted %+v from\n%s", r, raw)
			}
		})
	}
	// A bind record names a user and nothing to deliver.
	b := *bind
	b.Path, b.Kind = "/var/mail/alice", KindMbox
	if _, err := b.Encode(); err == nil {
		t.Fatal("a bind record with a path encoded")
	}
}

// recoveryFile returns a recovery file with no record, as root makes it,
// and its mapping.
func recoveryFile(t *testing.T) (*os.File, *Recovery) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "rec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(RecoverySize); err != nil {
		t.Fatal(err)
	}
	w, err := MapRecovery(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Unmap() })
	return f, w
}

// header builds a recovery header: a record's length and slot.
func header(size, slot uint64) []byte {
	return binary.NativeEndian.AppendUint64(nil, size|slot<<32)
}

// TestRecoveryRecord: what a worker writes is what root reads; a cleared
// record reads as none; only a recover job can be written; a record that
// is too long, in no slot, or not a recover job is refused on reading; a
// file of the wrong size is not mapped.
func TestRecoveryRecord(t *testing.T) {
	f, w := recoveryFile(t)
	if j, err := ReadRecovery(f); j != nil || err != nil {
		t.Fatalf("empty record: %+v, %v", j, err)
	}
	rj := &Job{Mode: ModeRecover, User: "alice", UID: 1001, GID: 1001, Home: "/home/alice", Kind: KindMbox,
		Path: "/var/mail/alice", Sender: "s@example.org", Policy: "embedded",
		Recover: &Progress{Offset: 4096, Dev: 2049, Ino: 77, FromLine: "From s@example.org Sun Dec  6 00:00:00 2026\n"}}
	if err := w.Set(rj); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRecovery(f)
	if err != nil || got == nil || got.Recover == nil || *got.Recover != *rj.Recover || got.Path != rj.Path || got.User != rj.User {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	w.Clear()
	if j, err := ReadRecovery(f); j != nil || err != nil {
		t.Fatalf("cleared record: %+v, %v", j, err)
	}
	d := *rj
	d.Mode, d.Recover = ModeDeliver, nil
	if err := w.Set(&d); err == nil {
		t.Fatal("wrote a deliver job as a recovery record")
	}
	// What a lying worker could leave.
	rec, _ := d.Encode()
	good, _ := rj.Encode()
	for name, data := range map[string][]byte{
		"a deliver job":   append(header(uint64(len(rec)), 0), rec...),
		"too long":        header(MaxRecord+1, 0),
		"length 0":        header(0, 1),
		"no such slot":    append(header(uint64(len(good)), 2), good...),
		"garbage":         append(header(5, 0), "hello"...),
		"a short header":  {1, 0, 0},
		"slot 1 is empty": append(header(uint64(len(good)), 1), good...),
	} {
		t.Run(name, func(t *testing.T) {
			g, _ := os.CreateTemp(t.TempDir(), "rec")
			defer g.Close()
			g.Write(data)
			if j, err := ReadRecovery(g); err == nil {
				t.Fatalf("read %+v", j)
			}
		})
	}
	if !bytes.HasPrefix(rec, []byte("lda-job 1\n")) {
		t.Fatalf("job record %q", rec)
	}
	for _, size := range []int64{8, RecoverySize - 1, RecoverySize + 1} {
		g, _ := os.CreateTemp(t.TempDir(), "rec")
		g.Truncate(size)
		if m, err := MapRecovery(g); err == nil {
			m.Unmap()
			t.Fatalf("mapped a recovery file of %d bytes", size)
		}
		g.Close()
	}
}

// TestRecoveryReused: a Recovery writes each record through the same
// buffer, and a shorter record after a longer one reads back as itself;
// a refused record leaves the last one in place.
func TestRecoveryReused(t *testing.T) {
	f, w := recoveryFile(t)
	long := &Job{Mode: ModeRecover, User: "alice", UID: 1001, GID: 1001, Home: "/home/alice", Kind: KindMbox,
		Path: "/var/mail/alice", Sender: strings.Repeat("s", 200) + "@example.org", Policy: "embedded",
		Recover: &Progress{Offset: 4096, Dev: 2049, Ino: 77, FromLine: "From s@example.org Sun Dec  6 00:00:00 2026\n"}}
	short := &Job{Mode: ModeRecover, User: "alice", UID: 1001, GID: 1001, Home: "/home/alice", Kind: KindDefault,
		Policy: "embedded", RecoverTmp: "1700000000.M1P2Q3R0123456789abcdef.host"}
	for i, j := range []*Job{long, short, long, nil, short, short} {
		if err := w.Set(j); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		got, err := ReadRecovery(f)
		if j == nil {
			if got != nil || err != nil {
				t.Fatalf("record %d, cleared: %+v, %v", i, got, err)
			}
			continue
		}
		want, _ := j.Encode()
		if err != nil || got == nil {
			t.Fatalf("record %d: %+v, %v", i, got, err)
		}
		if again, _ := got.Encode(); !bytes.Equal(again, want) {
			t.Fatalf("record %d: read %q, wrote %q", i, again, want)
		}
	}
	bad := *short
	bad.Mode = ModeDeliver
	if err := w.Set(&bad); err == nil {
		t.Fatal("wrote a deliver job as a recovery record")
	}
	if got, err := ReadRecovery(f); err != nil || got == nil || got.RecoverTmp != short.RecoverTmp {
		t.Fatalf("after a refused record: %+v, %v", got, err)
	}
}

// setRecords sets r n times in a new recovery file, and returns the file,
// its Recovery and the header it holds then.
func setRecords(t *testing.T, r *Job, n int) (*os.File, *Recovery, [8]byte) {
	t.Helper()
	f, w := recoveryFile(t)
	for range n {
		if err := w.Set(r); err != nil {
			t.Fatal(err)
		}
	}
	var h [8]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		t.Fatal(err)
	}
	return f, w, h
}

// TestRecoveryTorn: a worker killed while it writes a record leaves any
// bytes at all in the slot the header does not name; root still reads
// the last complete record, whole.
func TestRecoveryTorn(t *testing.T) {
	first := &Job{Mode: ModeRecover, User: "alice", UID: 1001, GID: 1001, Home: "/home/alice", Kind: KindMbox,
		Path: "/var/mail/alice", Policy: "embedded",
		Recover: &Progress{Offset: 4096, Dev: 2049, Ino: 77, FromLine: "From s@example.org Sun Dec  6 00:00:00 2026\n"}}
	next := *first
	next.Recover = &Progress{Offset: 8192, Dev: 2049, Ino: 77, FromLine: first.Recover.FromLine}
	nextRec, _ := next.Encode()
	for _, records := range []int{1, 2, 3} { // the last record in slot 1, 0, 1
		for name, torn := range map[string][]byte{
			"half the next record": nextRec[:len(nextRec)/2],
			"all of it":            nextRec,
			"zeros":                make([]byte, MaxRecord),
			"garbage":              bytes.Repeat([]byte("\xff\n"), MaxRecord/2),
		} {
			t.Run(fmt.Sprintf("%d records, %s", records, name), func(t *testing.T) {
				f, _, h := setRecords(t, first, records)
				other := 1 - binary.NativeEndian.Uint64(h[:])>>32
				if _, err := f.WriteAt(torn, int64(8+other*MaxRecord)); err != nil {
					t.Fatal(err)
				}
				got, err := ReadRecovery(f)
				if err != nil || got == nil || got.Recover == nil || *got.Recover != *first.Recover {
					t.Fatalf("read %+v, %v; want the first record", got, err)
				}
			})
		}
		// The writer's half: a new record never overwrites the slot the
		// header names, so the old record is whole until the header moves.
		t.Run(fmt.Sprintf("%d records, then the next", records), func(t *testing.T) {
			f, w, h := setRecords(t, first, records)
			if err := w.Set(&next); err != nil {
				t.Fatal(err)
			}
			f.WriteAt(h[:], 0) // as if the header's store had not happened
			got, err := ReadRecovery(f)
			if err != nil || got == nil || got.Recover == nil || *got.Recover != *first.Recover {
				t.Fatalf("read %+v, %v; the next record overwrote the first", got, err)
			}
		})
	}
}

// TestRecoverTmp: a Maildir recover job names one tmp/ file, for a
// Maildir or the default destination, and never goes with an mbox record
// or outside ModeRecover.
func TestRecoverTmp(t *testing.T) {
	base := Job{Mode: ModeRecover, User: "alice", UID: 1001, GID: 1001, Home: "/home/alice", Kind: KindDefault,
		Folder: "Work", Policy: "embedded", RecoverTmp: "1700000000.M1P2Q3R0123456789abcdef.host"}
	rec, err := base.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(rec)
	if err != nil || got.RecoverTmp != base.RecoverTmp || got.Folder != "Work" || got.Recover != nil {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for name, mutate := range map[string]func(j *Job){
		"with an mbox record too": func(j *Job) { j.Recover = &Progress{FromLine: "From a Sun Dec  6 00:00:00 2026\n"} },
		"for an mbox":             func(j *Job) { j.Kind, j.Path, j.Folder = KindMbox, "/var/mail/alice", "" },
		"a path in the name":      func(j *Job) { j.RecoverTmp = "../new/x" },
		"a dot name":              func(j *Job) { j.RecoverTmp = ".." },
		"a space in the name":     func(j *Job) { j.RecoverTmp = "a b" },
		"in a delivery":           func(j *Job) { j.Mode = ModeDeliver },
	} {
		t.Run(name, func(t *testing.T) {
			j := base
			mutate(&j)
			if _, err := j.Encode(); err == nil {
				t.Fatal("encoded")
			}
		})
	}
	// The decoder refuses what the encoder would not write.
	raw := strings.Replace(string(rec), "recovertmp "+base.RecoverTmp, "recovertmp ../new/x", 1)
	if j, err := Decode([]byte(raw)); err == nil {
		t.Fatalf("decoded %+v from\n%s", j, raw)
	}
}
