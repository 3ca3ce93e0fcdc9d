package daemon

import (
	"errors"
	"golang.org/x/sys/unix"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"lda/internal/delivery"
	"lda/internal/job"
	"lda/internal/status"
)

const goodConfig = `version: 1
policy: embedded
socket: /run/lda/lmtp.sock
listener_user: lda
peers: [postfix, "102"]
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(strings.NewReader(goodConfig), "lda.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.Connections != 64 || c.BareLF != "reject" || !c.Headers || c.Delimiter != "+" ||
		c.TimerSlack != nil || c.ListenerSlack() != time.Millisecond || c.WorkerSlack() != 10*time.Millisecond {
		t.Fatalf("defaults not applied: %+v", c)
	}
	for _, ok := range []struct {
		yaml string
		want time.Duration
	}{{"timer_slack: 0s\n", 0}, {"timer_slack: 5ms\n", 5 * time.Millisecond}, {"timer_slack: 10ms\n", 10 * time.Millisecond}, {"timer_slack: 1ms\n", time.Millisecond}, {"timer_slack: 250us\n", 250 * time.Microsecond}} {
		t.Run(strings.TrimSpace(ok.yaml), func(t *testing.T) {
			c, err := ParseConfig(strings.NewReader(goodConfig+ok.yaml), "lda.yaml")
			if err != nil {
				t.Fatalf("%q: %v", ok.yaml, err)
			}
			if c.ListenerSlack() != ok.want || c.WorkerSlack() != ok.want {
				t.Fatalf("%q: timer_slack %v (listener), %v (workers), want %v for both", ok.yaml, c.ListenerSlack(), c.WorkerSlack(), ok.want)
			}
		})
	}
	for _, g := range []struct {
		yaml string
		want bool
	}{{"", true}, {"workers: {max_idle: 8}\n", true}, {"workers: {gather: false}\n", false}, {"workers: {gather: true, max_idle: 3}\n", true}} {
		t.Run("gather "+strings.TrimSpace(g.yaml), func(t *testing.T) {
			c, err := ParseConfig(strings.NewReader(goodConfig+g.yaml), "lda.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if c.Workers.Gather != g.want || c.Workers.MaxDeliveries != 1000 {
				t.Fatalf("%q: workers %+v, want gather %v and the default max_deliveries", g.yaml, c.Workers, g.want)
			}
		})
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", goodConfig + "frobnicate: 1\n", "lda.yaml:6: field"},
		{"bad gather", goodConfig + "workers: {gather: sometimes}\n", "lda.yaml"},
		{"bad version", strings.Replace(goodConfig, "version: 1", "version: 2", 1), "lda.yaml:1: version"},
		{"root listener", strings.Replace(goodConfig, "listener_user: lda", "listener_user: root", 1), "lda.yaml:4: listener_user"},
		{"no peers", strings.Replace(goodConfig, `peers: [postfix, "102"]`, "peers: []", 1), "lda.yaml:5: peers"},
		{"bad peer", strings.Replace(goodConfig, `"102"`, `"-x"`, 1), "lda.yaml:5: peers"},
		{"relative socket", strings.Replace(goodConfig, "/run/lda/lmtp.sock", "lmtp.sock", 1), "lda.yaml:3: socket"},
		{"world-writable socket", goodConfig + "socket_mode: \"0666\"\n", "socket_mode"},
		{"non-loopback tcp", goodConfig + "tcp: 0.0.0.0:24\n", "lda.yaml:6: tcp"},
		{"bad hostname", goodConfig + "hostname: \"a b\\r\\nX\"\n", "lda.yaml:6: hostname"},
		{"bad bare_lf", goodConfig + "bare_lf: maybe\n", "bare_lf"},
		{"bad delimiter", goodConfig + "recipient_delimiter: \"@\"\n", "recipient_delimiter"},
		{"tiny message size", goodConfig + "limits: {message_size: 10}\n", "limits"},
		{"short line_length", goodConfig + "limits: {line_length: 511}\n", "line_length 512..1048576"},
		{"long line_length", goodConfig + "limits: {line_length: 1048577}\n", "line_length 512..1048576"},
		{"bad duration", goodConfig + "limits: {idle_timeout: soon}\n", "lda.yaml"},
		{"unknown limit", goodConfig + "limits: {sockets: 3}\n", "lda.yaml:6: field"},
		{"timer_slack too long", goodConfig + "timer_slack: 11ms\n", "lda.yaml:6: timer_slack"},
		{"negative timer_slack", goodConfig + "timer_slack: -1ms\n", "lda.yaml:6: timer_slack"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(tc.yaml), "lda.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestChannel passes records and a descriptor over the socketpair and
// refuses more than one descriptor per packet.
func TestChannel(t *testing.T) {
	ca, cb := channelPair(t)
	defer ca.close()
	defer cb.close()
	f, _ := os.CreateTemp(t.TempDir(), "spool")
	f.WriteString("hello")
	if err := ca.send([]byte("record one"), f); err != nil {
		t.Fatal(err)
	}
	msg, g, err := cb.recv()
	if err != nil || string(msg) != "record one" || g == nil {
		t.Fatalf("recv = %q, %v, %v", msg, g, err)
	}
	buf := make([]byte, 5)
	if _, err := g.ReadAt(buf, 0); err != nil || string(buf) != "hello" {
		t.Fatalf("passed descriptor reads %q, %v", buf, err)
	}
	g.Close()
	if err := ca.send([]byte("no fd"), nil); err != nil {
		t.Fatal(err)
	}
	if msg, g, err := cb.recv(); err != nil || g != nil || string(msg) != "no fd" {
		t.Fatalf("recv = %q, %v, %v", msg, g, err)
	}
	ca.close()
	if _, _, err := cb.recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want EOF", err)
	}
}

// TestHostileListener plays a compromised listener against the root side:
// it can ask only for deliveries, root looks users up itself, and anything
// malformed closes the channel.
func TestHostileListener(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := &Parent{Log: log}
	agent := &delivery.Agent{Exe: "/nonexistent/lda", MinUID: 1000, Timeout: time.Second, Log: log}
	cfg := &Config{UserDB: "passwd", Parallel: 1, Headers: true}
	spool, _ := os.CreateTemp(t.TempDir(), "spool")
	spool.WriteString("Subject: x\n\nbody\n")
	ds := &directSet{live: map[uint64]*delivery.DirectWorker{}, max: 4}
	handle := func(req *job.Request, f *os.File) *job.Reply {
		rep, sock := p.handle(agent, cfg, ds, req, f)
		if sock != nil {
			sock.Close()
			t.Errorf("request %d: root handed out a socket", req.ID)
		}
		return rep
	}

	t.Run("root is never a recipient", func(t *testing.T) {
		st := handle(&job.Request{ID: 1, Op: job.ModeDeliver, User: "root", Kind: job.KindDefault}, dup(t, spool)).Status
		if st.Code != 550 || st.Enhanced != "5.7.1" {
			t.Fatalf("root: %v, want 550 5.7.1", st)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		st := handle(&job.Request{ID: 2, Op: job.ModeDeliver, User: "no-such-user-q", Kind: job.KindDefault}, dup(t, spool)).Status
		if st.Enhanced != "5.1.1" {
			t.Fatalf("unknown: %v", st)
		}
	})
	t.Run("no descriptor", func(t *testing.T) {
		if st := handle(&job.Request{ID: 3, Op: job.ModeDeliver, User: "root", Kind: job.KindDefault}, nil).Status; !st.Temporary() {
			t.Fatalf("no fd: %v", st)
		}
	})
	t.Run("descriptor that is not a regular file", func(t *testing.T) {
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		r, w, _ := os.Pipe()
		defer w.Close()
		if st := handle(&job.Request{ID: 4, Op: job.ModeDeliver, User: "root", Kind: job.KindDefault}, r).Status; !st.Temporary() || st.Enhanced != status.Unknown.Enhanced {
			t.Fatalf("pipe fd: %v", st)
		}
	})
	t.Run("descriptor that is not read-only", func(t *testing.T) {
		rw, err := os.OpenFile(spool.Name(), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		opath, err := os.OpenFile(spool.Name(), unix.O_PATH, 0)
		if err != nil {
			t.Fatal(err)
		}
		mfd, err := unix.MemfdCreate("msg", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		// Sealed against changes of size, not of content.
		if _, err := unix.FcntlInt(uintptr(mfd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
			t.Fatal(err)
		}
		memfd := os.NewFile(uintptr(mfd), "msg")
		// Read-only, but a memfd is 0777: a worker could reopen it for
		// writing through /proc.
		memfdRO, err := os.Open("/proc/self/fd/" + strconv.Itoa(mfd))
		if err != nil {
			t.Fatal(err)
		}
		for name, f := range map[string]*os.File{"O_RDWR": rw, "O_PATH": opath, "memfd not sealed against writes": memfd,
			"memfd without seals, reopened read-only": memfdRO} {
			t.Run(name, func(t *testing.T) {
				if st := handle(&job.Request{ID: 5, Op: job.ModeDeliver, User: "root", Kind: job.KindDefault}, f).Status; !st.Temporary() || st.Enhanced != status.Unknown.Enhanced {
					t.Errorf("%s descriptor: %v, want 451 4.3.0", name, st)
				}
			})
		}
	})
	t.Run("direct workers", func(t *testing.T) {
		wcfg := *cfg
		wcfg.Workers.MaxIdle = 1
		for _, c := range []struct {
			name string
			req  *job.Request
			f    *os.File
			ds   *directSet
			want string
		}{
			{"for root", &job.Request{ID: 10, Op: job.OpWorker, User: "root", Kind: job.KindDefault}, nil, ds, "5.7.1"},
			{"for an unknown user", &job.Request{ID: 11, Op: job.OpWorker, User: "no-such-user-q", Kind: job.KindDefault}, nil, ds, "5.1.1"},
			{"with a descriptor", &job.Request{ID: 12, Op: job.OpWorker, User: "nobody", Kind: job.KindDefault}, dup(t, spool), ds, "4.3.0"},
			{"over the limit", &job.Request{ID: 13, Op: job.OpWorker, User: "nobody", Kind: job.KindDefault}, nil,
				&directSet{live: map[uint64]*delivery.DirectWorker{}}, "4.3.2"},
			{"end of a worker that is not live", &job.Request{ID: 14, Op: job.OpEnd, Worker: 99, User: "nobody", Kind: job.KindDefault}, nil, ds, "2.0.0"},
		} {
			t.Run(c.name, func(t *testing.T) {
				rep, sock := p.handle(agent, &wcfg, c.ds, c.req, c.f)
				if sock != nil {
					sock.Close()
					t.Fatal("root handed out a socket")
				}
				if rep.Status.Enhanced != c.want || rep.Bind != nil {
					t.Fatalf("%+v, want %s and no worker", rep, c.want)
				}
			})
		}
		if len(ds.live) != 0 {
			t.Fatalf("%d workers left registered", len(ds.live))
		}
	})
	t.Run("malformed request closes the channel", func(t *testing.T) {
		mine, theirs := channelPair(t)
		done := make(chan struct{})
		go func() { p.serveRequests(mine, agent, cfg); close(done) }()
		bad := []byte("lda-req 1\nid 1\nuser root\nkind default\npath \nfolder \nprogram \nsender \nrecipient \nsize 1\nuid 0\nend\n")
		theirs.send(bad, nil)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("root kept serving a listener that sent a malformed request")
		}
		if _, _, err := theirs.recv(); !errors.Is(err, io.EOF) {
			t.Fatalf("channel still open: %v", err)
		}
	})
	t.Run("valid request gets exactly one reply", func(t *testing.T) {
		mine, theirs := channelPair(t)
		go p.serveRequests(mine, agent, cfg)
		req := &job.Request{ID: 77, Op: job.ModeDeliver, User: "root", Kind: job.KindDefault, Size: 3}
		rec, _ := req.Encode()
		theirs.send(rec, dup(t, spool))
		msg, _, err := theirs.recv()
		if err != nil {
			t.Fatal(err)
		}
		rep, err := job.DecodeReply(msg)
		if err != nil || rep.ID != 77 || rep.Status.Enhanced != "5.7.1" {
			t.Fatalf("reply %+v, %v", rep, err)
		}
		theirs.close()
	})
}

func dup(t *testing.T, f *os.File) *os.File {
	g, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// channelPair returns both ends of a new control channel.
func channelPair(t *testing.T) (*channel, *channel) {
	t.Helper()
	a, b, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := newChannel(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := newChannel(b)
	if err != nil {
		t.Fatal(err)
	}
	return ca, cb
}

func TestKeepRestartOnly(t *testing.T) {
	base := func() *Config {
		return &Config{Socket: "/run/lda/lmtp.sock", SocketMode: "0660", SocketGroup: "mail", TCP: "", PolicySocket: "",
			ListenerUser: "lda", SpoolDir: "/var/spool/lda", Log: "syslog", Hostname: "a.test", Parallel: 4}
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		kept   string
	}{
		{"nothing", func(*Config) {}, ""},
		{"only reloadable", func(c *Config) { c.Hostname, c.Parallel = "b.test", 8 }, ""},
		{"socket", func(c *Config) { c.Socket = "/run/other.sock" }, "socket"},
		{"socket mode and group", func(c *Config) { c.SocketMode, c.SocketGroup = "0600", "postfix" }, "socket_mode,socket_group"},
		{"tcp and policy socket", func(c *Config) { c.TCP, c.PolicySocket = "127.0.0.1:24", "/run/p.sock" }, "tcp,policy_socket"},
		{"listener user, spool and log", func(c *Config) { c.ListenerUser, c.SpoolDir, c.Log = "x", "/tmp/s", "stderr" }, "listener_user,spool_dir,log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			running, next := base(), base()
			tc.change(next)
			want := *next // what a reload applies: next, with the running restart-only values
			r := base()
			want.Socket, want.SocketMode, want.SocketGroup, want.TCP, want.PolicySocket = r.Socket, r.SocketMode, r.SocketGroup, r.TCP, r.PolicySocket
			want.ListenerUser, want.SpoolDir, want.Log = r.ListenerUser, r.SpoolDir, r.Log
			kept := keepRestartOnly(running, next)
			if got := strings.Join(kept, ","); got != tc.kept {
				t.Fatalf("kept %q, want %q", got, tc.kept)
			}
			if !reflect.DeepEqual(*next, want) {
				t.Fatalf("after the reload:\n got %+v\nwant %+v", *next, want)
			}
		})
	}
	if kept := keepRestartOnly(nil, base()); kept != nil {
		t.Fatalf("no running configuration: kept %v", kept)
	}
}

// TestRedirectCommand runs the redirect command as the listener does: what
// it reads, its exit status, and a child that keeps its output open after
// it exited (which must not keep the session waiting).
func TestRedirectCommand(t *testing.T) {
	redirectWaitDelay = 200 * time.Millisecond
	t.Cleanup(func() { redirectWaitDelay = 5 * time.Second })
	dir := t.TempDir()
	msg, err := os.CreateTemp(dir, "msg")
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: x\n\nbody\n"
	msg.WriteString(body)
	got := filepath.Join(dir, "got")
	for _, tc := range []struct {
		name, script string
		ok           bool
		want         string // what the command read, when ok
	}{
		{"submits", `cat >"$GOT"; echo "$@" >>"$GOT"`, true, "Delivered-To: bob@example.org\n" + body + "-f alice@example.org -- carol@example.org\n"},
		{"fails", `cat >/dev/null; echo "no such user" >&2; exit 67`, false, ""},
		{"leaves a child holding its output", `cat >"$GOT"; (sleep 30 &); exit 0`, true, "Delivered-To: bob@example.org\n" + body},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(got)
			script := strings.ReplaceAll(tc.script, "$GOT", got)
			l := &Listener{cfg: &Config{RedirectCmd: []string{"/bin/sh", "-c", script, "sh"}}}
			done := make(chan error, 1)
			go func() {
				done <- l.redirect(msg, int64(len(body)), "alice@example.org", "bob@example.org", []string{"carol@example.org"})
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("redirect did not return: it waits for the command's leftover child")
			}
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if !tc.ok {
				if !strings.Contains(err.Error(), "no such user") {
					t.Fatalf("err = %v, want the command's output in it", err)
				}
				return
			}
			b, _ := os.ReadFile(got)
			if !strings.HasPrefix(string(b), tc.want) {
				t.Fatalf("the command read %q, want %q", b, tc.want)
			}
		})
	}
}
