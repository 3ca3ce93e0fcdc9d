package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"lda/internal/lmtp"
	"lda/internal/spawn"
	"lda/internal/userdb"
	"lda/policy"
)

// DefaultConfigFile is where `lda serve` looks without -config.
const DefaultConfigFile = "/etc/lda/lda.yaml"

// Config is lda.yaml (see lda.8, CONFIGURATION).
type Config struct {
	File         string        `yaml:"-"`
	Version      int           `yaml:"version"`
	Policy       string        `yaml:"policy"`        // system policy file, or "embedded"
	UserDB       string        `yaml:"userdb"`        // "passwd", "getent" or "yaml:PATH" (virtual users)
	Socket       string        `yaml:"socket"`        // Unix socket path
	SocketMode   string        `yaml:"socket_mode"`   // octal, e.g. "0660"
	SocketGroup  string        `yaml:"socket_group"`  // group name or number owning the socket
	TCP          string        `yaml:"tcp"`           // optional loopback address:port, unauthenticated
	PolicySocket string        `yaml:"policy_socket"` // optional Postfix policy delegation socket
	ListenerUser string        `yaml:"listener_user"` // unprivileged user the LMTP listener runs as
	Peers        []string      `yaml:"peers"`         // users or uids allowed to connect
	Hostname     string        `yaml:"hostname"`
	SpoolDir     string        `yaml:"spool_dir"` // the listener's spool, created 0700 for it
	Delimiter    string        `yaml:"recipient_delimiter"`
	DetailFolder bool          `yaml:"detail_to_folder"` // +detail selects a Maildir++ folder of the default Maildir
	BareLF       string        `yaml:"bare_lf"`          // "reject" or "accept"
	Headers      bool          `yaml:"headers"`          // add Return-Path and Delivered-To
	Chunking     bool          `yaml:"chunking"`         // offer CHUNKING (BDAT, RFC 3030)
	Limits       Limits        `yaml:"limits"`
	Log          string        `yaml:"log"` // "stderr", "syslog" or a file
	Parallel     int           `yaml:"parallel"`
	SieveDir     string        `yaml:"sieve_dir"`        // system before.sieve and after.sieve; "" for none
	RcptSieve    bool          `yaml:"rcpt_sieve"`       // evaluate users' filters at RCPT time
	RedirectCmd  []string      `yaml:"redirect_command"` // argv of a sendmail-compatible submission command
	DeliveryTime time.Duration `yaml:"delivery_timeout"`
	// TimerSlack, if set, is the listener's and the workers' timer slack
	// (0: root's); unset (nil), each gets its default. ListenerSlack and
	// WorkerSlack say which applies.
	TimerSlack *time.Duration `yaml:"timer_slack"`
	Workers    Workers        `yaml:"workers"`
}

// ListenerSlack is the listener's timer slack: timer_slack, or
// spawn.DefaultListenerSlack.
func (c *Config) ListenerSlack() time.Duration {
	if c.TimerSlack != nil {
		return *c.TimerSlack
	}
	return spawn.DefaultListenerSlack
}

// WorkerSlack is every worker's timer slack: timer_slack, or
// spawn.DefaultTimerSlack.
func (c *Config) WorkerSlack() time.Duration {
	if c.TimerSlack != nil {
		return *c.TimerSlack
	}
	return spawn.DefaultTimerSlack
}

// Workers bounds the warm per-user workers of the root parent.
type Workers struct {
	MaxIdle       int           `yaml:"max_idle"`       // idle workers kept over all users; 0: one worker per job
	IdleTime      time.Duration `yaml:"idle_time"`      // an idle worker is stopped after this
	MaxDeliveries int           `yaml:"max_deliveries"` // a worker is replaced after this many jobs
	Gather        bool          `yaml:"gather"`         // gather the listener and its workers on one CPU while deliveries come one at a time
}

// Limits bound what one peer can make the daemon hold.
type Limits struct {
	Connections int           `yaml:"connections"`
	Recipients  int           `yaml:"recipients"`
	MessageSize int64         `yaml:"message_size"`
	SpoolMemory int64         `yaml:"spool_memory"` // a message up to this size is spooled in memory, a larger one in spool_dir
	LineLength  int           `yaml:"line_length"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	DataTimeout time.Duration `yaml:"data_timeout"`
}

func defaults() Config {
	return Config{
		Version: 1, Policy: "/etc/lda/policy.yaml", UserDB: "passwd",
		Socket: "/run/lda/lmtp.sock", SocketMode: "0660", ListenerUser: "lda",
		SpoolDir: "/var/spool/lda", Delimiter: "+", BareLF: "reject", Headers: true, Chunking: true,
		Log: "syslog", Parallel: 4, DeliveryTime: 10 * time.Minute,
		SieveDir: "/etc/lda/sieve", RcptSieve: true, RedirectCmd: []string{"/usr/sbin/sendmail", "-i"},
		Workers: Workers{MaxIdle: 32, IdleTime: 10 * time.Second, MaxDeliveries: 1000, Gather: true},
		Limits: Limits{Connections: 64, Recipients: 1000, MessageSize: 100 << 20, SpoolMemory: 1 << 20, LineLength: 4096,
			IdleTimeout: 5 * time.Minute, DataTimeout: 10 * time.Minute},
	}
}

// ParseConfig reads lda.yaml. Unknown keys and bad values are errors that
// name the file and line.
func ParseConfig(r io.Reader, name string) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, err
	}
	c := defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	c.File = name
	var root yaml.Node
	yaml.Unmarshal(data, &root)
	line := func(key string) int { return keyLine(&root, key) }
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s: %s", name, line(key), key, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Version != 1:
		return nil, bad("version", "must be 1")
	case c.Policy != "embedded" && policy.ValidPath(c.Policy) != nil:
		return nil, bad("policy", "must be an absolute clean path or \"embedded\"")
	case userdb.ValidBackend(c.UserDB) != nil:
		return nil, bad("userdb", "must be passwd, getent or yaml:/absolute/path")
	case c.Socket == "" && c.TCP == "":
		return nil, bad("socket", "a socket or a tcp address is required")
	case c.Socket != "" && policy.ValidPath(c.Socket) != nil:
		return nil, bad("socket", "must be an absolute clean path")
	case c.PolicySocket != "" && (policy.ValidPath(c.PolicySocket) != nil || c.PolicySocket == c.Socket):
		return nil, bad("policy_socket", "must be an absolute clean path, not the LMTP socket")
	case policy.ValidPath(c.SpoolDir) != nil:
		return nil, bad("spool_dir", "must be an absolute clean path")
	case c.ListenerUser == "" || c.ListenerUser == "root" || c.ListenerUser == "0":
		return nil, bad("listener_user", "must name an unprivileged user")
	case len(c.Peers) == 0:
		return nil, bad("peers", "list the users or uids allowed to connect")
	case c.BareLF != "reject" && c.BareLF != "accept":
		return nil, bad("bare_lf", "must be reject or accept")
	case len(c.Delimiter) > 1 || (c.Delimiter != "" && strings.ContainsAny(c.Delimiter, "@/.\\ \t\"")):
		return nil, bad("recipient_delimiter", "must be empty or one character other than @ / . \\ and space")
	case c.Parallel < 1 || c.Parallel > 64:
		return nil, bad("parallel", "must be 1..64")
	case c.DeliveryTime <= 0:
		return nil, bad("delivery_timeout", "must be positive")
	case c.TimerSlack != nil && (*c.TimerSlack < 0 || *c.TimerSlack > spawn.MaxTimerSlack):
		return nil, bad("timer_slack", "must be 0 (keep root's) up to %s", spawn.MaxTimerSlack)
	case c.Workers.MaxIdle < 0 || c.Workers.MaxIdle > 1024 || c.Workers.IdleTime <= 0 || c.Workers.MaxDeliveries < 1:
		return nil, bad("workers", "max_idle 0..1024, idle_time > 0, max_deliveries >= 1")
	case c.Limits.Connections < 1 || c.Limits.Recipients < 1 || c.Limits.MessageSize < 1024 ||
		c.Limits.LineLength < lmtp.MinMaxLine || c.Limits.LineLength > lmtp.MaxMaxLine || c.Limits.IdleTimeout <= 0 || c.Limits.DataTimeout <= 0:
		return nil, bad("limits", "connections and recipients >= 1, message_size >= 1024, line_length %d..%d, timeouts > 0", lmtp.MinMaxLine, lmtp.MaxMaxLine)
	case c.Limits.SpoolMemory < 0 || c.Limits.SpoolMemory > 64<<20:
		return nil, bad("limits", "spool_memory 0..67108864 bytes")
	}
	if !validHostname(c.Hostname) {
		return nil, bad("hostname", "must be a domain name (letters, digits, '-' and '.')")
	}
	if c.SieveDir != "" && policy.ValidPath(c.SieveDir) != nil {
		return nil, bad("sieve_dir", "must be an absolute clean path or empty")
	}
	if len(c.RedirectCmd) > 0 && (policy.ValidPath(c.RedirectCmd[0]) != nil || len(c.RedirectCmd) > 32) {
		return nil, bad("redirect_command", "argv[0] must be an absolute clean path")
	}
	if _, err := c.Mode(); err != nil {
		return nil, bad("socket_mode", "%v", err)
	}
	if c.TCP != "" {
		ap, err := netip.ParseAddrPort(c.TCP)
		if err != nil || !ap.Addr().IsLoopback() {
			return nil, bad("tcp", "must be a loopback address:port")
		}
	}
	for _, p := range c.Peers {
		if policy.ValidUserName(p) != nil {
			return nil, bad("peers", "%q is not a user name or uid", p)
		}
	}
	return &c, nil
}

// SystemDB is the backend for system accounts (listener_user, peers):
// the virtual map holds mail users only.
func (c *Config) SystemDB() string {
	if c.UserDB == "getent" {
		return "getent"
	}
	return "passwd"
}

// LoadConfig reads the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseConfig(f, path)
}

// Mode is the socket's permission bits.
func (c *Config) Mode() (os.FileMode, error) {
	m, err := strconv.ParseUint(c.SocketMode, 8, 32)
	if err != nil || m > 0o777 || m&0o002 != 0 {
		return 0, errors.New("must be octal permission bits, not world-writable")
	}
	return os.FileMode(m), nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError turns yaml's "line N: text" into "FILE:N: text" (the first
// error only, like the policy's).
func yamlError(name string, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", name, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", name, strings.TrimPrefix(msg, "yaml: "))
}

// validHostname accepts "" (use the system's) or a domain name.
func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func keyLine(n *yaml.Node, key string) int {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return 1
}
