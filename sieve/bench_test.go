package sieve

import (
	"context"
	"strings"
	"testing"
)

// typicalScript is a 30-line user script of the kind mail clients write.
const typicalScript = `require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "reject", "body", "relational", "comparator-i;ascii-numeric"];
if anyof (header :is "x-spam-flag" "YES", header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "5") {
  fileinto "Junk";
  stop;
}
if envelope :domain "from" ["bad.example", "worse.example"] {
  reject "Mail from your domain is not accepted.";
  stop;
}
# mailing lists by List-Id
if header :matches "list-id" "*<*.googlegroups.com>*" {
  set :lower "list" "${2}";
  fileinto "Lists.${list}";
  stop;
}
if envelope :detail "to" "shop" {
  addflag "\\Seen";
  fileinto "Shopping";
  stop;
}
if address :domain :is "from" ["example.net", "example.org"] {
  if header :contains "subject" ["invoice", "receipt"] {
    fileinto :flags "\\Flagged" "Work.Accounting";
  } elsif body :text :contains "urgent" {
    addflag "\\Flagged";
    keep;
  } else {
    fileinto "Work";
  }
}
`

// BenchmarkRun measures the per-delivery cost of the Sieve step: parsing
// the message header and running a typical 30-line script (the script is
// loaded once, as a persistent worker would; BenchmarkLoadAndRun includes
// loading).
func BenchmarkRun(b *testing.B) {
	s := mustLoad(b, "typical", typicalScript)
	raw := testMessage + strings.Repeat("A line of a typical message body, with some words.\r\n", 60)
	env := Envelope{From: "alice@example.net", To: "user@example.com"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		m, err := ParseMessage(strings.NewReader(raw), int64(len(raw)), Limits{})
		if err != nil {
			b.Fatal(err)
		}
		out, err := Run(ctx, []*Script{s}, env, m, Limits{})
		if err != nil || out.ScriptError != nil || len(out.Actions) != 1 || out.Actions[0].Folder != "Work" {
			b.Fatalf("%v %v %v", out.Actions, out.ScriptError, err)
		}
	}
}

func BenchmarkLoadAndRun(b *testing.B) {
	raw := testMessage
	env := Envelope{From: "alice@example.net", To: "user@example.com"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s, err := Load(strings.NewReader(typicalScript), "typical", Limits{})
		if err != nil {
			b.Fatal(err)
		}
		m, err := ParseMessage(strings.NewReader(raw), int64(len(raw)), Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Run(ctx, []*Script{s}, env, m, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRunEnvelope(b *testing.B) {
	s := mustLoad(b, "typical", typicalScript)
	env := Envelope{From: "alice@bad.example", To: "user@example.com"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := RunEnvelope(ctx, []*Script{s}, env, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestTypicalScriptLength(t *testing.T) {
	if n := strings.Count(typicalScript, "\n"); n != 30 {
		t.Errorf("the typical script has %d lines, want 30", n)
	}
}

// BenchmarkLoad measures parsing and checking the typical script, which a
// worker would otherwise do for every job of a user who has one.
func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(strings.NewReader(typicalScript), "typical", Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
