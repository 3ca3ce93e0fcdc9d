package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"lda/internal/affinity"
	"lda/internal/job"
	"lda/internal/spawn"
	"lda/internal/status"
	"lda/maildir"
	"lda/mbox"
	"lda/policy"
)

// Main runs one job and returns the process exit code. The outcome of the
// delivery is in the result record, not in the exit code.
func Main() int {
	if _, err := os.Stdout.Write(job.ResultHeader()); err != nil {
		return 1
	}
	if err := harden(); err != nil {
		return report(&job.Result{Status: status.Unknown.Wrapf("worker: harden: %v", err)})
	}
	return report(run())
}

func report(r *job.Result) int {
	if _, err := os.Stdout.Write(resultBody(r)); err != nil {
		return 1
	}
	return 0
}

// resultBody completes r (no status is 451 4.3.0; the cause becomes the
// detail, for the log) and encodes it, as every kind of worker answers.
func resultBody(r *job.Result) []byte { return appendResult(make([]byte, 0, 256), r) }

// appendResult appends resultBody's output to b.
func appendResult(b []byte, r *job.Result) []byte {
	if r.Status == nil {
		r.Status = status.Unknown
	}
	if r.Detail == "" && r.Status.Cause != nil {
		r.Detail = r.Status.Cause.Error()
	}
	return job.AppendResultBody(b, r)
}

// harden applies the process-wide restrictions listed in the package
// documentation. The credentials themselves were set by spawn.
func harden() error {
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("no_new_privs: %w", e)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("dumpable: %w", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("rlimit_core: %w", err)
	}
	syscall.Umask(0o077)
	// fds 3 (message or socket), 4 (policy or recovery record) and 5
	// (a direct worker's policy) were inherited; a delivery program must
	// not inherit them again.
	for fd := 3; fd <= 5; fd++ {
		unix.CloseOnExec(fd)
	}
	return nil
}

// maxPolicy bounds the system and user policy files.
const maxPolicy = 1 << 20

// task is one job being run: the decoded record, the message (read by
// offset only; nil for an envelope evaluation) and where an mbox append
// announces itself before its first byte.
type task struct {
	*job.Job
	msg      *os.File
	progress func(p job.Progress)
	// creating, if set, is told the tmp/ name a Maildir delivery (into
	// folder, "" for INBOX) is about to create; an error stops it.
	creating func(folder, tmp string) error
	// retire is set when the job left work behind in this process: a
	// Sieve run past its time limit, which the sieve package abandons
	// still running. A warm worker then serves no other job and exits
	// after its answer, so that a script cannot pile up runaway runs in
	// its user's worker.
	retire bool
	// home is what the job knows of the user's per-user files (homeProbe).
	home *homeProbe
	// answer, if set, sends the job's result at once (a direct worker):
	// an mbox delivery answers as soon as its message is on stable
	// storage, before it unlocks and closes the mailbox.
	answer func(*job.Result)
}

// retiring reports whether a warm worker must serve no other job after
// t, and says why on stderr (root logs it).
func (t *task) retiring() bool {
	if t.retire {
		os.Stderr.WriteString("worker: a Sieve run failed or passed its time limit; serving no other job\n")
	}
	return t.retire
}

// rootCredentials reports whether any of the process's ids is root.
func rootCredentials() bool {
	return os.Getuid() == 0 || os.Geteuid() == 0 || os.Getgid() == 0 || os.Getegid() == 0
}

// myUID and myGID are the uid and gid this process runs as, looked up
// once: a worker never changes its credentials, and os.Getuid and
// os.Getgid are a system call each time.
var (
	myUID = sync.OnceValue(os.Getuid)
	myGID = sync.OnceValue(os.Getgid)
)

// mine checks that j is for the uid and gid this process runs as.
func mine(j *job.Job) *status.Status {
	if j.UID != myUID() || j.GID != myGID() {
		return status.Unknown.Wrapf("worker: job for uid %d/%d given to uid %d/%d", j.UID, j.GID, myUID(), myGID())
	}
	return nil
}

// run is the one-shot worker: one job on standard input, the message on
// fd 3, the policy on fd 4.
func run() *job.Result {
	if rootCredentials() {
		return &job.Result{Status: status.Unknown.Wrapf("worker refuses to run with root credentials")}
	}
	data, err := io.ReadAll(io.LimitReader(os.Stdin, job.MaxRecord+1))
	if err != nil {
		return &job.Result{Status: status.Unknown.Wrapf("worker: read job: %v", err)}
	}
	j, err := job.Decode(data)
	if err != nil {
		return &job.Result{Status: status.Unknown.Wrap(err)}
	}
	if st := mine(j); st != nil {
		return &job.Result{Status: st}
	}
	sys, err := loadSystem(j.Policy)
	if err != nil {
		return &job.Result{Status: status.ConfigError.Wrap(err)}
	}
	t := &task{Job: j, msg: os.NewFile(3, "message"), progress: func(p job.Progress) {
		if _, err := os.Stdout.Write(job.EncodeProgress(p)); err != nil {
			progressLost(err)
		}
	}}
	return execute(sys, t)
}

// execute runs one admitted job under the system policy sys.
func execute(sys *policy.System, t *task) *job.Result {
	j := t.Job
	status.QuotaTempfail = sys.QuotaTempfail
	u := policy.User{Name: j.User, Home: j.Home}
	res := &job.Result{}
	t.home = probeHome(u.Home, sys.UserFile)
	defer t.home.record()
	up, warn, err := loadUser(sys, u, t.home)
	res.Warning = warn
	if err != nil {
		res.Status = status.ConfigError.Wrap(err)
		return res
	}
	p := &policy.Policy{Sys: sys, User: up, X: expansionFor(sys, u)}

	var d policy.Destination
	var dec policy.Decision
	if j.Kind == job.KindDefault {
		d, dec = p.Default(u)
		if j.Folder != "" && d.Kind == policy.Maildir {
			d.Folder = j.Folder
			dec = p.Check(u, d)
		}
	} else {
		d = policy.Destination{Path: j.Path, Folder: j.Folder, Program: j.Program}
		d.Kind, _ = policy.ParseKind(j.Kind)
		dec = p.Check(u, d)
	}
	res.Where = d.String()
	if dec.Rule != nil {
		res.Rule = dec.Rule.String()
	}
	if !dec.Allowed {
		res.Status = refusal(dec)
		return res
	}
	if j.Kind == job.KindDefault && j.Mode != job.ModeExplain && j.Mode != job.ModeRecover {
		if handled := filter(p, u, t, res); handled {
			return res
		}
	}
	switch j.Mode {
	case job.ModeExplain:
		res.Status = status.New(250, "2.0.0", "allowed")
		res.Detail = dec.Reason
		return res
	case job.ModeRecover:
		if j.RecoverTmp != "" {
			res.Status = recoverMaildir(dec, d, j.RecoverTmp)
		} else {
			res.Status = recoverMbox(sys, dec, j)
		}
		return res
	}

	msg := messageReader(t)
	switch d.Kind {
	case policy.Mbox:
		var durable func()
		if t.answer != nil {
			durable = func() {
				res.Status = status.Delivered
				t.answer(res)
			}
		}
		res.Status = deliverMbox(sys, dec, t, msg, durable)
	case policy.Maildir:
		var where string
		where, res.Status = deliverMaildir(t, dec, d.Folder, msg)
		if where != "" {
			res.Where = filepath.Join(d.Path, where)
		}
	case policy.Program:
		res.Status, res.Detail = runProgram(dec.Program, j, msg)
	default:
		res.Status = status.Unknown.Wrapf("worker: unknown destination kind")
	}
	return res
}

func loadSystem(src string) (*policy.System, error) { return loadSystemFrom(src, 4) }

// loadSystemFrom parses the system policy src from descriptor fd.
func loadSystemFrom(src string, fd uintptr) (*policy.System, error) {
	if src == "embedded" {
		return policy.Default(), nil
	}
	f := os.NewFile(fd, src)
	if f == nil {
		return nil, errors.New("worker: no policy descriptor")
	}
	defer f.Close()
	return policy.ParseSystem(io.LimitReader(f, maxPolicy), src)
}

// expansion is the system policy expanded for the last user checked: a
// warm worker serves one user, whose every job used to expand every rule
// again (policy.Expansion, which is used only for the System and user it
// was made for).
var expansion struct {
	mu sync.Mutex
	x  *policy.Expansion
}

func expansionFor(sys *policy.System, u policy.User) *policy.Expansion {
	expansion.mu.Lock()
	defer expansion.mu.Unlock()
	if !expansion.x.For(sys, u) {
		expansion.x = sys.Expand(u)
	}
	return expansion.x
}

// refusal is the reply for a destination the policy did not allow: 550
// 5.7.1, or 451 4.3.0 when the refusal came from lda's own inconsistency.
func refusal(dec policy.Decision) *status.Status {
	if dec.Internal {
		return status.Unknown.Wrap(errors.New(dec.Reason))
	}
	return status.PolicyRefused.Wrap(errors.New(dec.Reason))
}

// loadUser reads the user's own policy file as the user. A file that is
// missing is no policy; one that is a symlink or otherwise not a regular
// file, not owned by the user, or writable by group or others is ignored
// with a warning; one that cannot be read (EACCES, EIO, no descriptors
// left) or does not parse defers delivery (the user's stated wishes are
// unknown).
//
// hp, if not nil, may say that the file is known not to exist (see
// homeProbe), and is told what this lookup found.
func loadUser(sys *policy.System, u policy.User, hp *homeProbe) (*policy.UserPolicy, string, error) {
	if hp != nil {
		hp.policyLooked = true
	}
	if sys.UserFile == "" || hp.skip() {
		if hp != nil {
			hp.noPolicy = true
		}
		return nil, "", nil
	}
	name := filepath.Join(u.Home, sys.UserFile)
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		// O_NOFOLLOW: ENOENT is no entry (a symlink is ELOOP).
		if hp != nil && errors.Is(err, unix.ENOENT) {
			hp.noPolicy = true
		}
		return nil, "", nil
	}
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Sprintf("user policy %s ignored: a symlink", name), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, "", fmt.Errorf("stat %s: %w", name, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, fmt.Sprintf("user policy %s ignored: not a regular file", name), nil
	case int(st.Uid) != myUID():
		return nil, fmt.Sprintf("user policy %s ignored: owned by uid %d, not the user", name, st.Uid), nil
	case st.Mode&0o022 != 0:
		return nil, fmt.Sprintf("user policy %s ignored: writable by group or others", name), nil
	}
	key := userPolicyKey{sys, u}
	if up, ok := userPolicyCache.get(name, &st, key); ok {
		return up, "", nil
	}
	readAt := cacheClock()
	up, err := policy.ParseUser(io.LimitReader(f, maxPolicy), name, sys, u)
	if err != nil {
		return nil, "", err
	}
	userPolicyCache.put(name, &st, readAt, key, up)
	return up, "", nil
}

// userPolicyCache keeps the user's parsed policy file, for the system
// policy and the user it was parsed against.
var userPolicyCache fileCache[userPolicyKey, *policy.UserPolicy]

type userPolicyKey struct {
	sys *policy.System
	u   policy.User
}

// messageReader returns the message on fd 3, read by offset so that workers
// that share one spool file cannot disturb each other, behind the
// per-recipient trace headers. Their values were validated by job.Decode:
// no CR, LF, NUL or space can be in them.
func messageReader(t *task) io.Reader {
	if t.msg == nil {
		return errReader{errors.New("worker: no message descriptor")}
	}
	j := t.Job
	body := io.NewSectionReader(t.msg, 0, j.Size)
	if !j.Headers {
		return body
	}
	rcpt := j.Recipient
	if rcpt == "" {
		rcpt = j.User
	}
	var hdr string // one concatenation: this is on every job
	if j.Received == "" {
		hdr = "Return-Path: <" + j.Sender + ">\nDelivered-To: " + rcpt + "\n"
	} else {
		hdr = "Return-Path: <" + j.Sender + ">\nDelivered-To: " + rcpt + "\nReceived: " + j.Received + "\n"
	}
	return io.MultiReader(strings.NewReader(hdr), body)
}

// openRoot opens the decision's trusted root directory. unix.Open, not
// os.OpenFile: a directory needs no poller registration, which costs
// os.OpenFile four more system calls per delivery.
func openRoot(dec policy.Decision) (*os.File, error) {
	fd, err := unix.Open(dec.Root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dec.Root, Err: err}
	}
	return os.NewFile(uintptr(fd), dec.Root), nil
}

func mboxOptions(sys *policy.System, dec policy.Decision, j *job.Job) (mbox.Options, error) {
	locks, err := mbox.ParseLocking(sys.Mbox.Locking)
	if err != nil {
		return mbox.Options{}, err
	}
	q, err := mbox.ParseQuoting(sys.Mbox.Quoting)
	if err != nil {
		return mbox.Options{}, err
	}
	return mbox.Options{
		Owner:       myUID(),
		Create:      dec.Create,
		Locks:       locks,
		LockTimeout: sys.Mbox.LockTimeout,
		StaleLock:   sys.Mbox.StaleLock,
		Quoting:     q,
		Sender:      j.Sender,
	}, nil
}

// deliverMbox appends msg to the mailbox dec names. durable, if set, is
// called once the message is on stable storage (mbox.Options.Durable).
func deliverMbox(sys *policy.System, dec policy.Decision, t *task, msg io.Reader, durable func()) *status.Status {
	opt, err := mboxOptions(sys, dec, t.Job)
	if err != nil {
		return status.ConfigError.Wrap(err)
	}
	opt.Held = &held
	opt.Durable = durable
	opt.Progress = func(p mbox.Progress) {
		// Written unbuffered, before the first byte of the message, so the
		// parent knows what to cut off if this process dies.
		t.progress(job.Progress{Offset: p.Offset, Dev: p.Dev, Ino: p.Ino, FromLine: p.FromLine})
	}
	dir, err := roots.open(dec.Root, t.home.seenDir(dec.Root))
	if err != nil {
		return status.From(fmt.Errorf("open mailbox root: %w", err))
	}
	if _, err := mbox.Append(dir, dec.Rel, msg, opt); err != nil {
		return status.From(err)
	}
	return status.Delivered
}

// recoverMaildir removes the tmp/ file a dead worker may have left in the
// Maildir the job names (as the user, after the same policy check).
func recoverMaildir(dec policy.Decision, d policy.Destination, tmp string) *status.Status {
	if d.Kind != policy.Maildir {
		return status.Usage.Wrapf("worker: a tmp/ file to remove, but the destination is %s", d.Kind)
	}
	dir, err := openRoot(dec)
	if err != nil {
		return status.From(err)
	}
	defer dir.Close()
	gone, err := maildir.RemoveTmp(dir, dec.Rel, d.Folder, tmp)
	if err != nil {
		return status.From(err)
	}
	if gone {
		return status.New(250, "2.0.0", "partial message removed")
	}
	return status.New(250, "2.0.0", "nothing to remove")
}

func recoverMbox(sys *policy.System, dec policy.Decision, j *job.Job) *status.Status {
	opt, err := mboxOptions(sys, dec, j)
	if err != nil {
		return status.ConfigError.Wrap(err)
	}
	dir, err := openRoot(dec)
	if err != nil {
		return status.From(err)
	}
	defer dir.Close()
	p := j.Recover
	cut, err := mbox.Recover(dir, dec.Rel, mbox.Progress{Offset: p.Offset, Dev: p.Dev, Ino: p.Ino, FromLine: p.FromLine}, opt)
	if err != nil {
		return status.From(err)
	}
	if cut {
		return status.New(250, "2.0.0", "partial message removed")
	}
	return status.New(250, "2.0.0", "nothing to remove")
}

func deliverMaildir(t *task, dec policy.Decision, folder string, msg io.Reader) (string, *status.Status) {
	return deliverMaildirFlags(t, dec, folder, "", msg)
}

func deliverMaildirFlags(t *task, dec policy.Decision, folder, flags string, msg io.Reader) (string, *status.Status) {
	dir, err := roots.open(dec.Root, t.home.seenDir(dec.Root))
	if err != nil {
		return "", status.From(fmt.Errorf("open maildir root: %w", err))
	}
	opt := maildir.Options{CheckOwner: true, Owner: myUID(), Create: dec.Create, CreateFolders: dec.CreateFolders, Flags: flags,
		Dirs: &inbox}
	if t.creating != nil {
		opt.Creating = func(tmp string) error { return t.creating(folder, tmp) }
	}
	r, err := maildir.Deliver(dir, dec.Rel, folder, msg, opt)
	if err != nil {
		return "", status.From(err)
	}
	return r.Path, status.Delivered
}

// runProgram runs an allowed program with argv (never a shell), the message
// on its standard input and a small fixed environment.
func runProgram(spec *policy.ProgramSpec, j *job.Job, msg io.Reader) (*status.Status, string) {
	if spec == nil || len(spec.Argv) == 0 {
		return status.ConfigError.Wrapf("program without argv"), ""
	}
	exe, err := trustedProgram(spec.Argv[0])
	if err != nil {
		return status.ConfigError.Wrap(err), ""
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, spec.Argv[1:]...)
	cmd.Args[0] = spec.Argv[0]
	cmd.Env = []string{
		"PATH=/usr/bin:/bin",
		"HOME=" + j.Home,
		"USER=" + j.User,
		"LOGNAME=" + j.User,
		"SENDER=" + j.Sender,
		"RECIPIENT=" + j.Recipient,
	}
	cmd.Dir = j.Home
	if fi, err := os.Stat(j.Home); err != nil || !fi.IsDir() {
		cmd.Dir = "/" // system accounts such as nobody have no home
	}
	cmd.Stdin = msg
	out := &spawn.LimitedBuffer{Max: 4096}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	// Started spread even from a gathered worker (affinity.Spawn).
	if err = affinity.Spawn(cmd.Start); err == nil {
		err = cmd.Wait()
	}
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	detail := fmt.Sprintf("program %s: %s", spec.Name, strings.TrimSpace(out.String()))
	if ctx.Err() == context.DeadlineExceeded {
		return status.Timeout.Wrapf("program %s timed out after %s", spec.Name, timeout), detail
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return status.Delivered, detail
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return status.Unknown.Wrapf("program %s killed by %v", spec.Name, ws.Signal()), detail
		}
		return status.FromExit(ee.ExitCode()).Wrapf("program %s exited %d", spec.Name, ee.ExitCode()), detail
	}
	return status.From(fmt.Errorf("program %s: %w", spec.Name, err)), detail
}

// trustedProgram resolves path and checks that the program and every
// directory above it are owned by root and cannot be changed by anyone
// else (a sticky directory such as /tmp is accepted, since its other users
// cannot replace root's entries). Then nobody but root can swap the
// program between this check and exec.
func trustedProgram(path string) (string, error) {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return "", fmt.Errorf("program %q is not an absolute clean path", path)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("program %q: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(real, &st); err != nil {
		return "", fmt.Errorf("program %q: %w", real, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 || st.Mode&0o022 != 0 || st.Mode&0o111 == 0 {
		return "", fmt.Errorf("program %q is not a root-owned executable writable only by root", real)
	}
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		if err := unix.Lstat(dir, &st); err != nil {
			return "", fmt.Errorf("program directory %q: %w", dir, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || (st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0) {
			return "", fmt.Errorf("program directory %q is not owned and controlled by root", dir)
		}
		if dir == "/" {
			return real, nil
		}
	}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
