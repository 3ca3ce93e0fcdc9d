package lmtp

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"lda/internal/status"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want Command
		err  string // "code enhanced" of the error, "" for success
	}{
		{"lhlo", "LHLO mta.example", Command{Verb: "LHLO", Arg: "mta.example"}, ""},
		{"lower case verb", "lhlo mta.example\r\n", Command{Verb: "LHLO", Arg: "mta.example"}, ""},
		{"lhlo literal", "LHLO [127.0.0.1]", Command{Verb: "LHLO", Arg: "[127.0.0.1]"}, ""},
		{"lhlo missing", "LHLO", Command{Verb: "LHLO"}, "501 5.5.4"},
		{"helo", "HELO x", Command{Verb: "HELO"}, ""},
		{"mail", "MAIL FROM:<a@b.example>", Command{Verb: "MAIL", Arg: "a@b.example"}, ""},
		{"mail null", "MAIL FROM:<>", Command{Verb: "MAIL"}, ""},
		{"mail space after colon", "MAIL FROM: <a@b.example>", Command{Verb: "MAIL", Arg: "a@b.example"}, ""},
		{"mail params", "mail from:<a@b.example> size=10 Body=8BITMIME SMTPUTF8",
			Command{Verb: "MAIL", Arg: "a@b.example", Params: []Param{{"SIZE", "10"}, {"BODY", "8BITMIME"}, {"SMTPUTF8", ""}}}, ""},
		{"rcpt source route", "RCPT TO:<@r1.example,@r2.example:u@d.example>", Command{Verb: "RCPT", Arg: "u@d.example"}, ""},
		{"rcpt postmaster", "RCPT TO:<POSTMASTER>", Command{Verb: "RCPT", Arg: "POSTMASTER"}, ""},
		{"mail postmaster", "MAIL FROM:<postmaster>", Command{Verb: "MAIL"}, "501 5.1.3"},
		// Only the ASCII "Postmaster" may go without a domain (RFC 5321
		// 4.1.1.3): U+017F, the long s, folds to "s" in Unicode.
		{"rcpt postmaster with a long s", "RCPT TO:<po\u017ftmaster>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt null", "RCPT TO:<>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt quoted", `RCPT TO:<"a b\"c"@d.example>`, Command{Verb: "RCPT", Arg: `"a b\"c"@d.example`}, ""},
		{"rcpt quoted empty", `RCPT TO:<""@d.example>`, Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt quoted dash", `RCPT TO:<"-x"@d.example>`, Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt quoted escaped dash", `RCPT TO:<"\-x"@d.example>`, Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt dash", "RCPT TO:<-x@d.example>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt no brackets", "RCPT TO:u@d.example", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt unclosed", "RCPT TO:<u@d.example", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt nested", "RCPT TO:<<u@d.example>>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt trailing junk", "RCPT TO:<u@d.example>junk", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt NUL", "RCPT TO:<u\x00@d.example>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt TAB", "RCPT TO:<u\t@d.example>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt CR", "RCPT TO:<u\r@d.example>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt quoted NUL", "RCPT TO:<\"u\x00\"@d.example>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt quoted pair NUL", "RCPT TO:<\"u\\\x00\"@d.example>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt C1 control", "RCPT TO:<u\u0085@d.example>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt invalid utf8", "RCPT TO:<u\xff@d.example>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt line separator", "RCPT TO:<u\u2028X@d.example>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt quoted paragraph separator", "RCPT TO:<\"u\u2029X\"@d.example>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"mail C1 control in the domain", "MAIL FROM:<u@d\u0085.example>", Command{Verb: "MAIL"}, "501 5.1.3"},
		{"mail line separator in the domain", "MAIL FROM:<u@d\u2028.example>", Command{Verb: "MAIL"}, "501 5.1.3"},
		{"lhlo line separator", "LHLO mx\u2028.example", Command{Verb: "LHLO"}, "501 5.5.4"},
		{"rcpt utf8", "RCPT TO:<jörg@exämple.org>", Command{Verb: "RCPT", Arg: "jörg@exämple.org"}, ""},
		{"rcpt 512", "RCPT TO:<" + strings.Repeat("a", 500) + "@example.org>", Command{Verb: "RCPT", Arg: strings.Repeat("a", 500) + "@example.org"}, ""},
		{"rcpt 513", "RCPT TO:<" + strings.Repeat("a", 501) + "@example.org>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt long label", "RCPT TO:<u@" + strings.Repeat("a", 64) + ".example>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt bad route", "RCPT TO:<@r1.example:@:u@d.example>", Command{Verb: "RCPT"}, "501 5.1.3"},
		{"rcpt missing colon", "RCPT TO<u@d.example>", Command{Verb: "RCPT"}, "501 5.5.4"},
		{"rcpt param ctl", "RCPT TO:<u@d.example> NOTIFY=\x01", Command{Verb: "RCPT"}, "501 5.5.4"},
		{"rcpt param empty value", "RCPT TO:<u@d.example> NOTIFY=", Command{Verb: "RCPT"}, "501 5.5.4"},
		{"rcpt param equals", "RCPT TO:<u@d.example> A=b=c", Command{Verb: "RCPT"}, "501 5.5.4"},
		{"rcpt param dup", "RCPT TO:<u@d.example> a=1 A=2", Command{Verb: "RCPT"}, "501 5.5.4"},
		{"rcpt params max", "RCPT TO:<u@d.example>" + params(16), Command{Verb: "RCPT", Arg: "u@d.example", Params: paramList(16)}, ""},
		{"rcpt params over max", "RCPT TO:<u@d.example>" + params(17), Command{Verb: "RCPT"}, "501 5.5.4"},
		{"data", "DATA", Command{Verb: "DATA"}, ""},
		{"data trailing space", "DATA  ", Command{Verb: "DATA"}, ""},
		{"data args", "DATA x", Command{Verb: "DATA"}, "501 5.5.4"},
		{"noop text", "NOOP hello", Command{Verb: "NOOP", Arg: "hello"}, ""},
		{"noop ctl", "NOOP \x7f", Command{Verb: "NOOP"}, "501 5.5.4"},
		{"vrfy", "VRFY x", Command{Verb: "VRFY", Arg: "x"}, ""},
		{"empty", "", Command{}, "500 5.5.2"},
		{"crlf only", "\r\n", Command{}, "500 5.5.2"},
		{"leading space", " NOOP", Command{}, "500 5.5.2"},
		{"unknown", "XYZZY", Command{}, "500 5.5.1"},
		{"verb with digit", "NOOP1", Command{}, "500 5.5.1"},
		{"verb NUL", "NO\x00OP", Command{}, "500 5.5.1"},
		{"bdat last", "BDAT 10 LAST", Command{Verb: "BDAT", Chunk: 10, Last: true}, ""},
		{"bdat last lower case", "bdat 0 last", Command{Verb: "BDAT", Chunk: 0, Last: true}, ""},
		{"bdat chunk", "BDAT 007", Command{Verb: "BDAT", Chunk: 7}, ""},
		{"bdat 18 digits", "BDAT 999999999999999999", Command{Verb: "BDAT", Chunk: 999999999999999999}, ""},
		{"bdat 19 digits", "BDAT 9999999999999999999", Command{Verb: "BDAT"}, "501 5.5.4"},
		{"bdat no size", "BDAT", Command{Verb: "BDAT"}, "501 5.5.4"},
		{"bdat only last", "BDAT LAST", Command{Verb: "BDAT"}, "501 5.5.4"},
		{"bdat sign", "BDAT +10", Command{Verb: "BDAT"}, "501 5.5.4"},
		{"bdat negative", "BDAT -1 LAST", Command{Verb: "BDAT"}, "501 5.5.4"},
		{"bdat hex", "BDAT 0x10", Command{Verb: "BDAT"}, "501 5.5.4"},
		{"bdat other keyword", "BDAT 10 FIRST", Command{Verb: "BDAT"}, "501 5.5.4"},
		{"bdat spaces after verb", "BDAT  10 LAST", Command{Verb: "BDAT", Chunk: 10, Last: true}, ""},
		{"bdat two spaces before last", "BDAT 10  LAST", Command{Verb: "BDAT"}, "501 5.5.4"},
		{"bdat extra word", "BDAT 10 LAST LAST", Command{Verb: "BDAT"}, "501 5.5.4"},
		{"bdat tab", "BDAT 10\tLAST", Command{Verb: "BDAT"}, "501 5.5.4"},
		{"bdat last with a long s", "BDAT 10 LA\u017fT", Command{Verb: "BDAT"}, "501 5.5.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCommand([]byte(tc.line))
			if tc.err == "" {
				if err != nil {
					t.Fatalf("ParseCommand(%q) = %v", tc.line, err)
				}
				if got.Params == nil {
					got.Params = tc.want.Params[:0:0]
				}
				if tc.want.Params == nil {
					tc.want.Params = got.Params[:0:0]
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("ParseCommand(%q) = %+v, want %+v", tc.line, got, tc.want)
				}
				return
			}
			st, ok := err.(*status.Status)
			if !ok {
				t.Fatalf("ParseCommand(%q) = %+v, %v; want a *status.Status %s", tc.line, got, err, tc.err)
			}
			if code := strings.Join(strings.Fields(st.Reply())[:2], " "); code != tc.err {
				t.Fatalf("ParseCommand(%q) = %q, want %s", tc.line, st.Reply(), tc.err)
			}
			if got.Verb != tc.want.Verb {
				t.Fatalf("ParseCommand(%q).Verb = %q, want %q", tc.line, got.Verb, tc.want.Verb)
			}
		})
	}
}

func paramList(n int) []Param {
	var ps []Param
	for i := 0; i < n; i++ {
		ps = append(ps, Param{Key: "K" + string(rune('A'+i)), Value: "1"})
	}
	return ps
}

func params(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(" K")
		b.WriteByte(byte('A' + i))
		b.WriteString("=1")
	}
	return b.String()
}

func TestRcptParams(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		ext  bool
		want Recipient
		err  string
	}{
		{"notify list", "NOTIFY=success,DELAY", true, Recipient{Notify: "SUCCESS,DELAY"}, ""},
		{"notify never", "NOTIFY=Never", true, Recipient{Notify: "NEVER"}, ""},
		{"notify never plus", "NOTIFY=NEVER,DELAY", true, Recipient{}, "501"},
		{"notify empty item", "NOTIFY=SUCCESS,", true, Recipient{}, "501"},
		{"orcpt", "ORCPT=rfc822;a+2Bb@example.org", true, Recipient{ORcpt: "rfc822;a+b@example.org"}, ""},
		{"orcpt utf-8 type kept literal", `ORCPT=utf-8;j\x{F6}rg@example.org`, true, Recipient{ORcpt: `utf-8;j\x{F6}rg@example.org`}, ""},
		{"orcpt no type", "ORCPT=;a@b", true, Recipient{}, "501"},
		{"orcpt tab", "ORCPT=rfc822;a+09b", true, Recipient{}, "501"},
		{"orcpt too long", "ORCPT=rfc822;" + strings.Repeat("a", 495), true, Recipient{}, "501"},
		{"user", "XLDA-USER=alice", true, Recipient{User: "alice"}, ""},
		{"user utf8", "XLDA-USER=j+C3+B6rg", true, Recipient{User: "jörg"}, ""},
		{"user star", "XLDA-USER=a*", true, Recipient{}, "501"},
		{"user dot", "XLDA-USER=.a", true, Recipient{}, "501"},
		{"user without ext", "XLDA-USER=alice", false, Recipient{}, "555"},
		{"dest without ext", "XLDA-DEST=mbox:/x", false, Recipient{}, "555"},
		// Only addresses and the LHLO domain refuse U+2028: a path may
		// hold one (policy.ValidPath accepts it, as lda deliver -dest).
		{"dest with a line separator", "XLDA-DEST=mbox:/var/mail/a+E2+80+A8b", true, Recipient{Dest: "mbox:/var/mail/a\u2028b"}, ""},
		{"filter upper", "XLDA-FILTER=ONLY", true, Recipient{Filter: "only"}, ""},
		{"filter xtext", "XLDA-FILTER=onl+79", true, Recipient{Filter: "only"}, ""},
		{"filter xtext NUL", "XLDA-FILTER=only+00", true, Recipient{}, "501"},
		{"filter long", "XLDA-FILTER=deliverdeliver", true, Recipient{}, "501"},
		{"all", "NOTIFY=FAILURE XLDA-USER=bob XLDA-DEST=maildir:/home/bob/Maildir+23Work XLDA-FILTER=deliver", true,
			Recipient{Notify: "FAILURE", User: "bob", Dest: "maildir:/home/bob/Maildir#Work", Filter: "deliver"}, ""},
		{"first problem wins", "FOO=1 NOTIFY=BAD", true, Recipient{}, "555"},
		{"first problem wins 2", "NOTIFY=BAD FOO=1", true, Recipient{}, "501"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := ParseCommand([]byte("RCPT TO:<a@b.example> " + tc.in))
			if err != nil {
				t.Fatalf("ParseCommand: %v", err)
			}
			got, st := parseRcptParams(cmd.Arg, cmd.Params, tc.ext)
			if tc.err != "" {
				if st == nil || !strings.HasPrefix(st.Reply(), tc.err+" 5.5.4 ") {
					t.Fatalf("parseRcptParams(%q) = %+v, %v; want %s 5.5.4", tc.in, got, st, tc.err)
				}
				return
			}
			tc.want.Addr = "a@b.example"
			if st != nil || got != tc.want {
				t.Fatalf("parseRcptParams(%q) = %+v, %v; want %+v", tc.in, got, st, tc.want)
			}
		})
	}
}

func TestMailParams(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want MailParams
		err  string
	}{
		{"none", "", MailParams{}, ""},
		{"all", "SIZE=0 BODY=7bit SMTPUTF8 RET=full ENVID=QQ+2B1", MailParams{Size: 0, Body: "7BIT", SMTPUTF8: true, Ret: "FULL", EnvID: "QQ+1"}, ""},
		{"size max digits", "SIZE=999999999999999999", MailParams{Size: 999999999999999999}, ""},
		{"size 19 digits", "SIZE=1000000000000000000", MailParams{Size: 1000000000000000000}, ""},
		{"size 20 digits, past int64", "SIZE=99999999999999999999", MailParams{Size: math.MaxInt64}, ""},
		{"size 21 digits", "SIZE=100000000000000000000", MailParams{}, "501"},
		{"size plus", "SIZE=+1", MailParams{}, "501"},
		{"envid 100", "ENVID=" + strings.Repeat("e", 100), MailParams{EnvID: strings.Repeat("e", 100)}, ""},
		{"envid 101", "ENVID=" + strings.Repeat("e", 101), MailParams{}, "501"},
		{"envid DEL", "ENVID=a+7F", MailParams{}, "501"},
		{"body missing", "BODY", MailParams{}, "501"},
		{"unknown", "AUTH=<>", MailParams{}, "555"},
		{"xlda on mail", "XLDA-USER=alice", MailParams{}, "555"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := ParseCommand([]byte("MAIL FROM:<a@b.example> " + tc.in))
			if err != nil {
				t.Fatalf("ParseCommand: %v", err)
			}
			got, st := parseMailParams(cmd.Params)
			if tc.err != "" {
				if st == nil || !strings.HasPrefix(st.Reply(), tc.err+" 5.5.4 ") {
					t.Fatalf("parseMailParams(%q) = %+v, %v; want %s 5.5.4", tc.in, got, st, tc.err)
				}
				return
			}
			if st != nil || got != tc.want {
				t.Fatalf("parseMailParams(%q) = %+v, %v; want %+v", tc.in, got, st, tc.want)
			}
		})
	}
}

func TestValidDest(t *testing.T) {
	for _, tc := range []struct {
		dest string
		ok   bool
	}{
		{"mbox:/var/mail/alice", true},
		{"mbox:/var/mail/a#b", true},
		{"maildir:/home/alice/Maildir", true},
		{"maildir:/home/alice/Maildir#Lists.go", true},
		{"program:procmail", true},
		{"program:spam_filter-2.1", true},
		{"mbox:relative", false},
		{"mbox:/", false},
		{"mbox:", false},
		{"mbox", false},
		{"", false},
		{"mbox:/a/../b", false},
		{"mbox:/a/..", false},
		{"mbox:/a//b", false},
		{"mbox:/a/./b", false},
		{"mbox:/a/", false},
		{"mbox:/a\x00b", false},
		{"mbox:/a\nb", false},
		{"mbox:/a\rb", false},
		{"mbox:/" + strings.Repeat("n", 256), false},
		{"maildir:/m#", false},
		{"maildir:/m#.x", false},
		{"maildir:/m#x.", false},
		{"maildir:/m#a..b", false},
		{"maildir:/m#a/b", false},
		{"maildir:/m/#x", false},
		{"Maildir:/m", false},
		{"program:", false},
		{"program:.hidden", false},
		{"program:-x", false},
		{"program:a/b", false},
		{"program:a b", false},
		{"program:a;b", false},
		{"program:" + strings.Repeat("p", 65), false},
		{"pipe:/bin/sh", false},
	} {
		t.Run(tc.dest, func(t *testing.T) {
			if got := ValidDest(tc.dest); got != tc.ok {
				t.Fatalf("ValidDest(%q) = %v, want %v", tc.dest, got, tc.ok)
			}
		})
	}
}
