package job

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"lda/internal/status"
	"lda/internal/xtext"
	"lda/policy"
)

// Request is what the unprivileged LMTP listener may ask of the root
// parent: deliver the message passed alongside (as a descriptor) for one
// recipient, start a direct worker for a user (OpWorker), or end one
// (OpEnd). It names the user only: root looks up uid, gid and home
// itself, so a compromised listener can do no more than a legitimate MTA.
type Request struct {
	ID        uint64
	Op        string // ModeDeliver, ModeFilter (XLDA-FILTER=only), ModeEnvelope (RCPT time), OpWorker or OpEnd
	Worker    uint64 // OpEnd: the worker to end
	User      string
	Kind      string // KindDefault, KindMbox, KindMaildir, KindProgram
	Path      string
	Folder    string
	Program   string
	Sender    string
	Recipient string
	Received  string // value of the Received line for this recipient
	Size      int64
}

// Operations of a request besides the job modes.
const (
	// OpWorker asks root for a direct worker: a warm worker running as
	// the user, bound to that user by root, whose socket root hands to the
	// listener in the reply.
	OpWorker = "worker"
	// OpEnd asks root to end a direct worker (a timeout, a bad answer, a
	// death); root answers once it has reaped the worker and cut off any
	// partial mbox append the worker recorded.
	OpEnd = "end"
)

var requestKeys = keySet{
	"id", "op", "worker", "user", "kind", "path", "folder", "program",
	"sender", "recipient", "received", "size",
}

// Validate checks r with the rules of a Job.
func (r *Request) Validate() error {
	switch r.Op {
	case ModeDeliver, ModeFilter, ModeEnvelope:
	case OpWorker, OpEnd:
		if (r.Op == OpEnd) != (r.Worker != 0) {
			return fmt.Errorf("job: %s request with worker %d", r.Op, r.Worker)
		}
		if r.Kind != KindDefault || r.Path != "" || r.Folder != "" || r.Program != "" || r.Sender != "" ||
			r.Recipient != "" || r.Received != "" || r.Size != 0 {
			return fmt.Errorf("job: a %s request names a user only", r.Op)
		}
		if err := policy.ValidUserName(r.User); err != nil {
			return fmt.Errorf("job: user: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("job: bad request op %q", r.Op)
	}
	if r.Worker != 0 {
		return errors.New("job: worker in a delivery request")
	}
	j := Job{Mode: r.Op, User: r.User, UID: 1, GID: 1, Home: "/", Kind: r.Kind, Path: r.Path,
		Folder: r.Folder, Program: r.Program, Sender: r.Sender, Recipient: r.Recipient, Received: r.Received, Policy: "embedded", Size: r.Size}
	return j.Validate()
}

// Encode returns the wire form of r ("lda-req 1").
func (r *Request) Encode() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "lda-req %d\n", Version)
	kv := func(k, v string) { fmt.Fprintf(&b, "%s %s\n", k, xtext.Encode(v)) }
	kv("id", strconv.FormatUint(r.ID, 10))
	kv("op", r.Op)
	kv("worker", strconv.FormatUint(r.Worker, 10))
	kv("user", r.User)
	kv("kind", r.Kind)
	kv("path", r.Path)
	kv("folder", r.Folder)
	kv("program", r.Program)
	kv("sender", r.Sender)
	kv("recipient", r.Recipient)
	kv("received", r.Received)
	kv("size", strconv.FormatInt(r.Size, 10))
	b.WriteString("end\n")
	return b.Bytes(), nil
}

// DecodeRequest parses and validates a request.
func DecodeRequest(data []byte) (*Request, error) {
	var rec record
	if err := parse(data, "lda-req", requestKeys, &rec); err != nil {
		return nil, err
	}
	f := &rec.fields
	if k := f.missing(); k != "" {
		return nil, fmt.Errorf("job: missing key %q", k)
	}
	id, err1 := parseUint(f.get("id"))
	size, err2 := parseUint(f.get("size"))
	worker, err3 := parseUint(f.get("worker"))
	if err := errors.Join(err1, err2, err3); err != nil || size > 1<<62 {
		return nil, fmt.Errorf("job: bad number in request: %v", err)
	}
	r := &Request{ID: id, Op: f.get("op"), Worker: worker, User: f.get("user"), Kind: f.get("kind"), Path: f.get("path"), Folder: f.get("folder"),
		Program: f.get("program"), Sender: f.get("sender"), Recipient: f.get("recipient"), Received: f.get("received"), Size: int64(size)}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reply answers one Request.
type Reply struct {
	ID      uint64
	Status  *status.Status
	Actions []string // Sieve actions, as in Result
	Decided bool     // ModeEnvelope: decided by the envelope alone
	// SkipRcpt: RCPT-time evaluation could decide nothing for the user
	// when the job ran (see Result.SkipRcpt); the listener then skips it
	// for a while.
	SkipRcpt bool
	// OpWorker: the worker's id and pid, and the bind record root gave
	// it (the worker's socket travels with the reply).
	Worker uint64
	Pid    int
	Bind   *Job
	// OpWorker: the system policy file as root opened it for the worker
	// (zero for the embedded policy), so that the listener keys the
	// worker by the very file it runs under.
	Stamp Stamp
}

// Stamp identifies one state of a file: what the warm worker pools key
// their workers' policy by.
type Stamp struct {
	Dev, Ino uint64
	Size     int64
	Mtime    int64 // nanoseconds
}

// Encode returns the wire form of r ("lda-rep 1").
func (r *Reply) Encode() []byte {
	st := r.Status
	b := []byte(fmt.Sprintf("lda-rep %d\nid %d\nstatus %s\nactions %s\ndecided %t\nnofilter %t\n", Version, r.ID,
		xtext.Encode(fmt.Sprintf("%d %s %s", st.Code, st.Enhanced, status.Sanitize(st.Text))),
		xtext.Encode(EncodeActions(r.Actions)), r.Decided, r.SkipRcpt))
	if r.Bind != nil {
		rec, err := r.Bind.Encode()
		if err == nil {
			b = fmt.Appendf(b, "worker %d\npid %d\nbind %s\n", r.Worker, r.Pid, xtext.Encode(string(rec)))
			if r.Stamp != (Stamp{}) {
				// The mtime as its 64 bits, so that one before 1970 round-trips.
				b = fmt.Appendf(b, "stamp %s\n", xtext.Encode(fmt.Sprintf("%d %d %d %d", r.Stamp.Dev, r.Stamp.Ino, r.Stamp.Size, uint64(r.Stamp.Mtime))))
			}
		}
	}
	return append(b, "end\n"...)
}

var replyKeys = keySet{"id", "status", "actions", "decided", "nofilter", "worker", "pid", "bind", "stamp"}

// DecodeReply parses a reply; its status is validated as in DecodeResult.
func DecodeReply(data []byte) (*Reply, error) {
	var rec record
	if err := parse(data, "lda-rep", replyKeys, &rec); err != nil {
		return nil, err
	}
	f := &rec.fields
	id, err := parseUint(f.get("id"))
	if err != nil {
		return nil, fmt.Errorf("job: reply id: %w", err)
	}
	st, err := parseStatus(f.get("status"))
	if err != nil {
		return nil, err
	}
	rep := &Reply{ID: id, Status: st, Actions: DecodeActions(f.get("actions"))}
	switch f.get("decided") {
	case "true":
		rep.Decided = true
	case "false", "":
	default:
		return nil, errors.New("job: bad decided flag")
	}
	switch f.get("nofilter") {
	case "true":
		rep.SkipRcpt = true
	case "false", "":
	default:
		return nil, errors.New("job: bad nofilter flag")
	}
	if b, ok := f.lookup("bind"); ok {
		w, err1 := parseUint(f.get("worker"))
		pid, err2 := parseUint(f.get("pid"))
		bind, err3 := Decode([]byte(b))
		if err := errors.Join(err1, err2, err3); err != nil || w == 0 || pid == 0 || pid > 1<<31-1 || bind.Mode != ModeBind {
			return nil, fmt.Errorf("job: bad worker in reply: %v", err)
		}
		rep.Worker, rep.Pid, rep.Bind = w, int(pid), bind
		if v, ok := f.lookup("stamp"); ok {
			if rep.Stamp, err = parseStamp(v); err != nil {
				return nil, err
			}
		}
	} else if _, stamped := f.lookup("stamp"); stamped || f.get("worker") != "" || f.get("pid") != "" {
		return nil, errors.New("job: worker in a reply without a bind record")
	}
	return rep, nil
}

// parseStatus parses "CODE ENHANCED TEXT" and validates it.
func parseStatus(line string) (*status.Status, error) {
	code, rest, _ := strings.Cut(line, " ")
	enh, text, _ := strings.Cut(rest, " ")
	n, err := parseUint(code)
	if err != nil || n > 999 {
		return nil, fmt.Errorf("job: bad status %q", status.Sanitize(line))
	}
	st := &status.Status{Code: int(n), Enhanced: enh, Text: status.Sanitize(text)}
	if st.Validate() != nil {
		return nil, fmt.Errorf("job: invalid status %q", status.Sanitize(line))
	}
	return st, nil
}

// parseStamp reads "DEV INO SIZE MTIME", all unsigned decimal (MTIME the
// bits of a signed one), SIZE at most the largest int64, and not all zero
// (the embedded policy's stamp is sent as no stamp at all).
func parseStamp(v string) (Stamp, error) {
	fs := strings.Split(v, " ")
	if len(fs) != 4 {
		return Stamp{}, errors.New("job: bad stamp in reply")
	}
	var n [4]uint64
	for i, x := range fs {
		u, err := parseUint(x)
		if err != nil || i == 2 && u > 1<<63-1 {
			return Stamp{}, errors.New("job: bad stamp in reply")
		}
		n[i] = u
	}
	st := Stamp{Dev: n[0], Ino: n[1], Size: int64(n[2]), Mtime: int64(n[3])}
	if st == (Stamp{}) {
		return Stamp{}, errors.New("job: empty stamp in reply")
	}
	return st, nil
}
