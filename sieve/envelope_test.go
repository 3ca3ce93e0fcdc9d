package sieve

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestRunEnvelope(t *testing.T) {
	for _, tc := range []struct {
		name    string
		script  string
		env     *Envelope
		decided bool
		want    string // actions when decided
		errSub  string
	}{
		{name: "envelope reject", script: `if envelope :domain "from" "example.org" { reject "go away"; stop; } if header :contains "subject" "x" { discard; }`,
			decided: true, want: `reject "go away"`},
		{name: "envelope fileinto", script: `if envelope :detail "to" "lists" { fileinto "Lists"; }`, decided: true, want: `fileinto "Lists"`},
		{name: "no tests", script: `keep;`, decided: true, want: "keep"},
		{name: "empty script", script: ``, decided: true, want: "keep"},
		{name: "discard", script: `discard;`, decided: true, want: "discard"},
		{name: "header", script: `if header :contains "subject" "x" { discard; }`},
		{name: "header under not", script: `if not header :contains "subject" "x" { discard; }`},
		{name: "address", script: `if address :domain "from" "example.org" { discard; }`},
		{name: "exists", script: `if exists "x-spam" { discard; }`},
		{name: "size over (go-sieve sees 0)", script: `if size :over 1M { reject "too big"; }`},
		{name: "size under (go-sieve sees 0)", script: `if size :under 1M { keep; } else { reject "too big"; }`},
		{name: "body (go-sieve says false)", script: `if body :contains "viagra" { reject "spam"; }`},
		{name: "body raw", script: `if not body :raw :contains "x" { reject "no"; }`},
		{name: "header after decision", script: `if envelope :is "from" "nobody@example.org" { reject "no"; } elsif header :is "x" "y" { discard; }`},
		{name: "anyof short-circuit", script: `if anyof (envelope :domain "from" "example.org", header :is "x" "y") { reject "no"; }`, decided: true, want: `reject "no"`},
		{name: "allof short-circuit", script: `if allof (envelope :domain "from" "other.example", header :is "x" "y") { reject "no"; }`, decided: true, want: "keep"},
		{name: "allof reaches header", script: `if allof (envelope :domain "from" "example.org", header :is "x" "y") { reject "no"; }`},
		{name: "header-derived variable", script: `if header :matches "subject" "*" { set "s" "${1}"; } if string :is "${s}" "" { reject "no"; }`},
		{name: "envelope variable", script: `if envelope :matches "to" "*+*@*" { set "d" "${2}"; } if string :is "${d}" "lists" { fileinto "L"; }`, decided: true, want: `fileinto "L"`},
		{name: "address on a non-address header", script: `if address :is "x-custom" "a@b.c" { discard; }`, decided: true, want: "keep"},
		{name: "stop before header", script: `reject "no"; stop; if header :is "x" "y" { discard; }`, decided: true, want: `reject "no"`},
		{name: "script error before message", script: `fileinto "../x"; if header :is "x" "y" { discard; }`, decided: true, want: "keep", errSub: `".."`},
		{name: "environment is constant", script: `if environment :is "phase" "during" { reject "no"; }`, decided: true, want: `reject "no"`},
		{name: "hasflag", script: `addflag "\\Seen"; if hasflag "\\Seen" { fileinto "Read"; }`, decided: true, want: `fileinto "Read" flags \Seen`},
		{name: "null sender", env: &Envelope{From: "", To: "user@example.com"}, script: `if envelope :is "from" "" { discard; }`, decided: true, want: "discard"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := testEnv
			if tc.env != nil {
				env = *tc.env
			}
			s := mustLoad(t, "test", allExt+tc.script)
			out, decided, err := RunEnvelope(context.Background(), []*Script{s}, env, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if decided != tc.decided {
				t.Fatalf("decided = %v, want %v (outcome %v)", decided, tc.decided, out.Actions)
			}
			if !decided {
				if out.Actions != nil || out.ScriptError != nil || out.EnvelopeOnly {
					t.Errorf("undecided outcome is not zero: %+v", out)
				}
				return
			}
			if !out.EnvelopeOnly {
				t.Error("EnvelopeOnly not set")
			}
			if got := actionsString(out.Actions); got != tc.want {
				t.Errorf("actions = %s, want %s", got, tc.want)
			}
			if (out.ScriptError != nil) != (tc.errSub != "") || (tc.errSub != "" && !strings.Contains(out.ScriptError.Error(), tc.errSub)) {
				t.Errorf("script error %v, want %q", out.ScriptError, tc.errSub)
			}
			// And Run agrees, whatever the message.
			for _, raw := range []string{testMessage, "", "X: y\r\n\r\n" + strings.Repeat("z", 2<<20)} {
				full, err := Run(context.Background(), []*Script{s}, env, mustParse(t, raw), Limits{})
				if err != nil {
					t.Fatal(err)
				}
				if !sameOutcome(out, full) {
					t.Errorf("RunEnvelope %v / %v but Run %v / %v", out.Actions, out.ScriptError, full.Actions, full.ScriptError)
				}
			}
		})
	}
	t.Run("sequence", func(t *testing.T) {
		before := mustLoad(t, "before", `require "fileinto"; if header :is "x-spam-flag" "YES" { fileinto "Junk"; }`)
		user := mustLoad(t, "user", `require ["envelope", "reject"]; if envelope :domain "from" "example.org" { reject "no"; }`)
		if _, decided, _ := RunEnvelope(context.Background(), []*Script{before, user}, testEnv, Limits{}); decided {
			t.Error("a before script reading the message was ignored")
		}
		if out, decided, _ := RunEnvelope(context.Background(), []*Script{nil, user, nil}, testEnv, Limits{}); !decided || actionsString(out.Actions) != `reject "no"` {
			t.Errorf("user script alone: decided=%v %v", decided, out.Actions)
		}
	})
}

func sameOutcome(a, b Outcome) bool {
	if !reflect.DeepEqual(a.Actions, b.Actions) {
		return false
	}
	if (a.ScriptError == nil) != (b.ScriptError == nil) {
		return false
	}
	return a.ScriptError == nil || a.ScriptError.Error() == b.ScriptError.Error()
}

// gen generates random scripts and messages for the property test.
type gen struct{ r *rand.Rand }

func (g gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

var (
	genKeys    = []string{"lists", "spam", "user", "example.com", "example.org", "", "*", "*@example.org", "a*", "meeting", "YES", "10", "golang"}
	genFolders = []string{"Work", "Junk", "INBOX", "Lists.go", "../bad", "a/b", "${v}", "Tags.${1}"}
	genAddrs   = []string{"a@example.org", "b@example.org", "c@example.org", "d@example.org", "e@example.org", "bad address", "${v}@example.org"}
	genFlags   = []string{`\\Seen`, `\\Flagged`, `\\Answered`, `\\seen`, "$label1"}
)

func (g gen) key() string { return `"` + g.pick(genKeys...) + `"` }

func (g gen) test(depth int) string {
	n := 12
	if depth <= 0 {
		n = 9
	}
	switch g.r.IntN(n) {
	case 0:
		return fmt.Sprintf(`envelope %s %s %q %s`, g.pick(":localpart", ":domain", ":detail", ":user", ":all"), g.pick(":is", ":contains", ":matches"), g.pick("from", "to"), g.key())
	case 1:
		return fmt.Sprintf(`address %s %s %q %s`, g.pick(":localpart", ":domain", ":all", ":detail"), g.pick(":is", ":contains"), g.pick("from", "to", "cc"), g.key())
	case 2:
		return fmt.Sprintf(`header %s %q %s`, g.pick(":is", ":contains", ":matches"), g.pick("subject", "x-spam", "list-id"), g.key())
	case 3:
		return fmt.Sprintf(`exists %q`, g.pick("x-spam", "list-id", "subject"))
	case 4:
		return fmt.Sprintf(`size %s %d`, g.pick(":over", ":under"), g.r.IntN(400))
	case 5:
		return fmt.Sprintf(`body %s :contains %s`, g.pick("", ":raw", ":text"), g.key())
	case 6:
		return fmt.Sprintf(`string %s "${v}" %s`, g.pick(":is", ":contains", ":matches"), g.key())
	case 7:
		return g.pick("true", "false", `hasflag "\\Seen"`, `header :count "ge" :comparator "i;ascii-numeric" "received" "2"`, `envelope :count "eq" :comparator "i;ascii-numeric" "to" "1"`)
	case 8:
		return `environment :is "phase" "during"`
	case 9:
		return "not " + g.test(depth-1)
	case 10:
		return fmt.Sprintf("anyof (%s, %s)", g.test(depth-1), g.test(depth-1))
	default:
		return fmt.Sprintf("allof (%s, %s)", g.test(depth-1), g.test(depth-1))
	}
}

func (g gen) action() string {
	switch g.r.IntN(14) {
	case 0:
		return "keep;"
	case 1:
		return "discard;"
	case 2:
		return "stop;"
	case 3, 4:
		return fmt.Sprintf(`fileinto %s%s%q;`, g.pick("", ":copy "), g.pick("", `:flags "\\Flagged" `), g.pick(genFolders...))
	case 5, 6:
		return fmt.Sprintf(`redirect %s%q;`, g.pick("", ":copy "), g.pick(genAddrs...))
	case 7:
		return fmt.Sprintf(`reject %q;`, g.pick("no", "go away", "${v}"))
	case 8:
		return fmt.Sprintf(`%s %q;`, g.pick("addflag", "setflag", "removeflag"), g.pick(genFlags...))
	case 9, 10:
		return fmt.Sprintf(`set %s"v" %q;`, g.pick("", ":lower ", ":length "), g.pick("lists", "${1}", "${v}x", "Work", ""))
	case 11:
		return `ereject "no";`
	default:
		return `keep :flags "\\Seen";`
	}
}

func (g gen) block(depth, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if depth > 0 && g.r.IntN(3) == 0 {
			fmt.Fprintf(&b, "if %s {\n%s}\n", g.test(2), g.block(depth-1, 1+g.r.IntN(3)))
			if g.r.IntN(2) == 0 {
				fmt.Fprintf(&b, "elsif %s {\n%s}\n", g.test(2), g.block(depth-1, 1+g.r.IntN(2)))
			}
			if g.r.IntN(2) == 0 {
				fmt.Fprintf(&b, "else {\n%s}\n", g.block(depth-1, 1+g.r.IntN(2)))
			}
		} else {
			b.WriteString(g.action() + "\n")
		}
	}
	return b.String()
}

func (g gen) script() string { return allExt + g.block(2, 1+g.r.IntN(5)) }

func (g gen) envelope() Envelope {
	return Envelope{
		From: g.pick("sender@example.org", "spammer@bad.example", "", "a+b@example.net", "<>"),
		To:   g.pick("user@example.com", "user+lists@example.com", "user+spam@example.com", "User+@Example.COM"),
	}
}

func (g gen) message() string {
	var b strings.Builder
	for i := g.r.IntN(4); i > 0; i-- {
		b.WriteString("Received: from x by y\r\n")
	}
	if g.r.IntN(4) > 0 {
		fmt.Fprintf(&b, "Subject: %s %s\r\n", g.pick(genKeys...), g.pick("meeting", "=?utf-8?q?caf=C3=A9?=", "lists"))
	}
	if g.r.IntN(2) == 0 {
		fmt.Fprintf(&b, "X-Spam: %s\r\n", g.pick("YES", "NO", "10"))
	}
	if g.r.IntN(2) == 0 {
		b.WriteString("List-Id: <golang.example.org>\r\n")
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\n", g.pick("a@example.org", "Spam <spam@example.com>", "broken"), g.pick("user@example.com", "user+golang@example.com"))
	if g.r.IntN(5) > 0 {
		b.WriteString("\r\n")
		for i := g.r.IntN(8); i > 0; i-- {
			b.WriteString(g.pick(genKeys...) + " text\r\n")
		}
	}
	return b.String()
}

// checkInvariant runs the scripts at RCPT time and, if that decides,
// compares with Run on every message. It returns whether it decided.
func checkInvariant(t *testing.T, scripts []*Script, env Envelope, msgs []string) bool {
	t.Helper()
	ctx := context.Background()
	envOut, decided, err := RunEnvelope(ctx, scripts, env, Limits{})
	if err != nil {
		t.Fatalf("RunEnvelope: %v", err)
	}
	if !decided {
		return false
	}
	for _, raw := range msgs {
		full := runOn(t, scripts, env, raw)
		if !sameOutcome(envOut, full) {
			t.Fatalf("RCPT-time decision differs from Run:\nenvelope %+v\nRCPT: %v / %v\nRun:  %v / %v\nmessage:\n%s",
				env, envOut.Actions, envOut.ScriptError, full.Actions, full.ScriptError, raw)
		}
	}
	return true
}

// runOn runs the scripts on the message raw.
func runOn(t *testing.T, scripts []*Script, env Envelope, raw string) Outcome {
	t.Helper()
	m, err := ParseMessage(strings.NewReader(raw), int64(len(raw)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Run(context.Background(), scripts, env, m, Limits{})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return out
}

// allEnvelopes are every envelope gen.envelope can make, and a few more.
var allEnvelopes = func() []Envelope {
	var out []Envelope
	for _, from := range []string{"sender@example.org", "spammer@bad.example", "", "a+b@example.net", "<>", "x@example.com"} {
		for _, to := range []string{"user@example.com", "user+lists@example.com", "user+spam@example.com", "User+@Example.COM", "other@example.org"} {
			out = append(out, Envelope{From: from, To: to})
		}
	}
	return out
}()

// checkMessageFirst is the property behind MessageFirst: when a run reads
// the message before the envelope, RunEnvelope decides nothing for any
// envelope; and Run, on any message, says MessageFirst exactly when
// RunEnvelope does. It returns whether env's run read the message first.
func checkMessageFirst(t *testing.T, scripts []*Script, env Envelope, msgs []string) bool {
	t.Helper()
	ctx := context.Background()
	out, _, err := RunEnvelope(ctx, scripts, env, Limits{})
	if err != nil {
		t.Fatalf("RunEnvelope: %v", err)
	}
	for _, raw := range msgs {
		full := runOn(t, scripts, env, raw)
		if full.MessageFirst != out.MessageFirst {
			t.Fatalf("MessageFirst: %v at RCPT time, %v from Run (envelope %+v)\nmessage:\n%s", out.MessageFirst, full.MessageFirst, env, raw)
		}
	}
	if !out.MessageFirst {
		return false
	}
	for _, other := range allEnvelopes {
		o, decided, err := RunEnvelope(ctx, scripts, other, Limits{})
		if err != nil {
			t.Fatalf("RunEnvelope: %v", err)
		}
		if decided || !o.MessageFirst {
			t.Fatalf("the run for %+v read the message first, but the one for %+v decided %v (MessageFirst %v)", env, other, decided, o.MessageFirst)
		}
	}
	return true
}

// TestEnvelopeInvariant is the property: whenever RunEnvelope decides, its
// outcome equals Run's for every message. 2000 generated scripts (a third
// of them after a generated "before" script), each against 20 generated
// messages; the seed is fixed so that CI is deterministic.
func TestEnvelopeInvariant(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 300
	}
	g := gen{rand.New(rand.NewPCG(4, 2026))}
	decided, messageFree, messageFirst := 0, 0, 0
	for i := 0; i < n; i++ {
		srcs := []string{g.script()}
		if g.r.IntN(3) == 0 {
			srcs = append([]string{g.script()}, srcs...)
		}
		var scripts []*Script
		for j, src := range srcs {
			s, err := Load(strings.NewReader(src), fmt.Sprintf("gen%d.%d", i, j), Limits{})
			if err != nil {
				t.Fatalf("generated script does not load: %v\n%s", err, src)
			}
			scripts = append(scripts, s)
		}
		msgs := make([]string, 20)
		for j := range msgs {
			msgs[j] = g.message()
		}
		env := g.envelope()
		if checkInvariant(t, scripts, env, msgs) {
			decided++
		}
		if checkMessageFirst(t, scripts, env, msgs) {
			messageFirst++
		}
		free := true
		for _, s := range scripts {
			free = free && !s.MayReadMessage()
		}
		if free {
			messageFree++
			// A script without message tests must always decide.
			if _, d, _ := RunEnvelope(context.Background(), scripts, env, Limits{}); !d {
				t.Fatalf("a script without message tests did not decide:\n%s", strings.Join(srcs, "\n----\n"))
			}
		}
	}
	t.Logf("%d of %d generated script sequences decided at RCPT time (%d without message tests); %d read the message first", decided, n, messageFree, messageFirst)
	if decided < n/10 || decided == n {
		t.Errorf("the generator is unbalanced: %d of %d decided", decided, n)
	}
	if messageFirst < n/20 || decided+messageFirst == n {
		t.Errorf("the generator is unbalanced: %d of %d read the message first, %d decided", messageFirst, n, decided)
	}
}

// FuzzEnvelopeInvariant checks the same property on fuzzed scripts,
// envelopes and messages (seeds in testdata/fuzz/FuzzEnvelopeInvariant).
func FuzzEnvelopeInvariant(f *testing.F) {
	f.Add(allExt+`if envelope :domain "from" "example.org" { reject "no"; }`, "sender@example.org", "user@example.com", testMessage)
	f.Add(allExt+`if size :over 1K { discard; }`, "", "user+x@example.com", testMessage)
	f.Add(allExt+`if body :contains "x" { discard; }`, "a@b", "c@d", "")
	f.Fuzz(func(t *testing.T, src, from, to, raw string) {
		s, err := Load(strings.NewReader(src), "fuzz", Limits{})
		if err != nil {
			return
		}
		env := Envelope{From: from, To: to}
		g := gen{rand.New(rand.NewPCG(uint64(len(src)), uint64(len(raw))))}
		msgs := []string{raw, "", testMessage}
		for i := 0; i < 5; i++ {
			msgs = append(msgs, g.message())
		}
		checkInvariant(t, []*Script{s}, env, msgs)
		checkMessageFirst(t, []*Script{s}, env, msgs)
	})
}
