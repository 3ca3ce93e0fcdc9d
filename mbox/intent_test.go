package mbox

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"golang.org/x/sys/unix"

	"lda/internal/testutil"
)

// dyingReader gives n bytes of a message and then panics, as a writer
// killed in the middle of its append stops.
type dyingReader struct{ n int }

func (r *dyingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		panic("killed")
	}
	k := min(len(p), r.n)
	for i := range p[:k] {
		p[i] = 'x'
		if i%72 == 71 {
			p[i] = '\n'
		}
	}
	r.n -= k
	return k, nil
}

// die runs an append that panics part way, as a killed writer: its locks
// go (the deferred unlock and close stand in for the kernel's), whatever
// it wrote and its intent stay.
func die(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatal("the append did not die")
		}
	}()
	f()
}

// intentOf returns the append intent on path ("" if none).
func intentOf(t *testing.T, path string) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(path, intentAttr, buf)
	if errors.Is(err, unix.ENODATA) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// settled checks that the mailbox file mb holds want and no intent: the
// state every append leaves behind.
func settled(t *testing.T, mb, want string) {
	t.Helper()
	if got := readFile(t, mb); got != want {
		t.Fatalf("mailbox:\n got %.200q\nwant %q", got, want)
	}
	if in := intentOf(t, mb); in != "" {
		t.Fatalf("intent %q left", in)
	}
}

// requireUserAttrs skips where the test directory's file system keeps no
// user extended attributes (then no intents are written at all).
func requireUserAttrs(t *testing.T, dir string) {
	t.Helper()
	probe := filepath.Join(dir, "probe")
	writeFile(t, probe, "")
	if err := unix.Setxattr(probe, "user.probe", []byte("1"), 0); errors.Is(err, unix.ENOTSUP) {
		t.Skip("no user extended attributes here:", err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// TestIntent: a writer that dies mid-append leaves its intent, and the
// next append or Recover, whichever takes the locks first, cuts its
// region off before anything else, so that a later message never seals
// a partial one into the mailbox.
func TestIntent(t *testing.T) {
	const original = testFrom + "old\n\n"
	opt := testOptions()
	later := testFrom + "later\n\n"
	big := 1 << 20 // past the write buffer, so that part of it reaches the file
	for _, tc := range []struct {
		name string
		// run leaves the mailbox mb in its final state, given what a
		// dead writer left (dead reports its Progress).
		run  func(t *testing.T, d *os.File, mb string, dead Progress)
		want string
	}{
		{"the next append cuts the dead writer's region off first", func(t *testing.T, d *os.File, mb string, _ Progress) {
			appendString(t, mb, "later\n", opt)
		}, original + later},
		{"Recover cuts it off", func(t *testing.T, d *os.File, mb string, dead Progress) {
			if cut, err := recoverAt(t, mb, dead, opt); !cut || err != nil {
				t.Fatalf("Recover: %v, %v; want the region cut", cut, err)
			}
		}, original},
		{"Recover after the next append cut it off has nothing to undo", func(t *testing.T, d *os.File, mb string, dead Progress) {
			appendString(t, mb, "later\n", opt)
			if cut, err := recoverAt(t, mb, dead, opt); cut || err != nil {
				t.Fatalf("Recover: %v, %v; want nothing to undo", cut, err)
			}
		}, original + later},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, mb := intentDir(t, original)
			var dead Progress
			o := opt
			o.Progress = func(pr Progress) { dead = pr }
			die(t, func() { Append(d, "inbox", &dyingReader{n: big / 2}, o) })
			if got := readFile(t, mb); len(got) <= len(original) || intentOf(t, mb) == "" {
				t.Fatalf("the dead writer left %d bytes and intent %q; the test needs a partial message and its intent", len(got), intentOf(t, mb))
			}
			tc.run(t, d, mb, dead)
			settled(t, mb, tc.want)
		})
	}
	t.Run("a writer that died after its last byte is cut off too", func(t *testing.T) {
		// Its message is complete, its fsync not done, and it was never
		// answered: the MTA retries it, so it goes rather than being
		// delivered twice.
		d, mb := intentDir(t, original)
		setHook(t, func(stage string) error {
			if stage == "clear" {
				panic("killed")
			}
			return nil
		})
		die(t, func() { Append(d, "inbox", strings.NewReader("unanswered\n"), opt) })
		setHook(t, nil)
		appendString(t, mb, "later\n", opt)
		settled(t, mb, original+later)
	})
	t.Run("a complete append leaves no intent", func(t *testing.T) {
		_, mb := intentDir(t, "")
		appendString(t, mb, "one\n", opt)
		settled(t, mb, testFrom+"one\n\n")
	})
	t.Run("an intent that cannot be cleared takes its message with it", func(t *testing.T) {
		d, mb := intentDir(t, original)
		setHook(t, func(stage string) error {
			if stage == "clear" {
				return unix.EIO
			}
			return nil
		})
		if _, err := Append(d, "inbox", strings.NewReader("new\n"), opt); err == nil {
			t.Fatal("Append succeeded")
		}
		setHook(t, nil)
		if got := readFile(t, mb); got != original {
			t.Fatalf("mailbox %q, want the original", got)
		}
		appendString(t, mb, "later\n", opt) // and the intent left does no harm
		settled(t, mb, original+later)
	})
	for _, c := range []struct{ name, value string }{
		{"an intent that no longer matches is dropped, the data kept", "1 0 From bob@example.org Thu Jan  1 00:00:00 2026\n"},
		{"an intent past the end is dropped", "1 99999 " + testFrom},
		{"a garbled intent is dropped", "garbage"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, mb := intentDir(t, original)
			if err := unix.Setxattr(mb, intentAttr, []byte(c.value), 0); err != nil {
				t.Fatal(err)
			}
			appendString(t, mb, "later\n", opt)
			settled(t, mb, original+later)
		})
	}
}

// intentDir returns a directory on a file system with user attributes
// (else the test is skipped) and the name of its mailbox "inbox", made
// with content unless content is empty.
func intentDir(t *testing.T, content string) (*os.File, string) {
	t.Helper()
	p, d := testDir(t)
	requireUserAttrs(t, p)
	mb := filepath.Join(p, "inbox")
	if content != "" {
		writeFile(t, mb, content)
	}
	return d, mb
}

// appendString appends body to the mailbox file mb (in its directory).
func appendString(t *testing.T, mb, body string, opt Options) {
	t.Helper()
	d := openDir(t, filepath.Dir(mb))
	if _, err := Append(d, filepath.Base(mb), strings.NewReader(body), opt); err != nil {
		t.Fatal(err)
	}
}

// recoverAt runs Recover for the mailbox file mb.
func recoverAt(t *testing.T, mb string, p Progress, opt Options) (bool, error) {
	t.Helper()
	d := openDir(t, filepath.Dir(mb))
	opt.Create = false
	return Recover(d, filepath.Base(mb), p, opt)
}

// openDir opens dir for the rest of the test.
func openDir(t *testing.T, dir string) *os.File {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestIntentEdges: what the intent must never do. It must not outlive
// its message's fsync, act without a kernel lock, cut what another
// program appended, or stop a delivery to an append-only mailbox.
func TestIntentEdges(t *testing.T) {
	const original = testFrom + "old\n\n"
	later := testFrom + "later\n\n"
	t.Run("removed before the fsync, and the answer after it", func(t *testing.T) {
		// Removed after the fsync, a crash could bring the intent back
		// beside a message answered 250, for the next append to cut.
		// Durable comes after the fsyncs (the directory's too, for a
		// mailbox just created), with the locks still held, whether the
		// message fits in the write buffer or not.
		big := strings.Repeat("a line of the message\n", 4000)
		for _, c := range []struct {
			name, existing, body, want string
		}{
			{"small", original, "new\n", "clear,sync,durable"},
			{"larger than the write buffer", original, big, "clear,sync,durable"},
			{"a mailbox created", "", "new\n", "clear,sync,dirsync,durable"},
		} {
			t.Run(c.name, func(t *testing.T) {
				d, mb := intentDir(t, c.existing)
				var stages []string
				setHook(t, func(stage string) error {
					if stage == "clear" || stage == "sync" || stage == "dirsync" {
						stages = append(stages, stage)
					}
					return nil
				})
				opt := testOptions()
				opt.Locks = FcntlLock // a dot-lock would be created in the directory
				opt.Durable = func() {
					stages = append(stages, "durable")
					if !testutil.FcntlLocked(t, mb) {
						t.Error("at Durable: the mailbox is not locked")
					}
					if in := intentOf(t, mb); in != "" {
						t.Errorf("at Durable: intent %q still set", in)
					}
				}
				if _, err := Append(d, "inbox", strings.NewReader(c.body), opt); err != nil {
					t.Fatal(err)
				}
				if got := strings.Join(stages, ","); got != c.want {
					t.Fatalf("stages %s, want %s", got, c.want)
				}
				settled(t, mb, c.existing+testFrom+c.body+"\n")
			})
		}
	})
	t.Run("an answered message is never cut, even shortened by a mail reader", func(t *testing.T) {
		// The writer dies right after its answer; a mail reader, which
		// knows nothing of intents, then drops a header of that message
		// in place. The next append must leave it: nothing marks it as
		// a dead writer's.
		d, mb := intentDir(t, original)
		opt := testOptions()
		o := opt
		o.Durable = func() { panic("killed") }
		body := "X-Junk: drop me\nSubject: hi\n\nanswered body\n"
		die(t, func() { Append(d, "inbox", strings.NewReader(body), o) })
		shrunk := strings.Replace(readFile(t, mb), "X-Junk: drop me\n", "", 1)
		writeFile(t, mb, shrunk)
		appendString(t, mb, "later\n", opt)
		settled(t, mb, shrunk+later)
	})
	t.Run("a message that cannot be read sets no intent and writes nothing", func(t *testing.T) {
		// The intent is set just before the first write(2), once the
		// message is in the write buffer.
		d, mb := intentDir(t, original)
		var stages []string
		setHook(t, func(stage string) error {
			if stage == "intent" || stage == "write" {
				stages = append(stages, stage)
			}
			return nil
		})
		_, err := Append(d, "inbox", io.MultiReader(strings.NewReader("Subject: x\n\n"), iotest.ErrReader(unix.EIO)), testOptions())
		if !errors.Is(err, unix.EIO) {
			t.Fatalf("Append: %v, want the read error", err)
		}
		if len(stages) != 0 {
			t.Fatalf("stages %v before the message was read", stages)
		}
		settled(t, mb, original)
	})
	t.Run("with a dot-lock alone there is no intent", func(t *testing.T) {
		// A dot-lock can be broken by age while its writer lives: an
		// intent found under it would not mean a dead writer.
		d, mb := intentDir(t, original)
		opt := testOptions()
		opt.Locks = DotLock
		die(t, func() { Append(d, "inbox", &dyingReader{n: 1 << 19}, opt) })
		if in := intentOf(t, mb); in != "" {
			t.Fatalf("intent %q set under a dot-lock alone", in)
		}
	})
	t.Run("what another program appended after a partial message stays", func(t *testing.T) {
		d, mb := intentDir(t, original)
		opt := testOptions()
		var dead Progress
		o := opt
		o.Progress = func(pr Progress) { dead = pr }
		die(t, func() { Append(d, "inbox", &dyingReader{n: 1 << 19}, o) })
		// A program that ignores the intent (procmail, say) appends.
		f, err := os.OpenFile(mb, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString("\n\nFrom bob@example.org Thu Jan  1 00:00:00 2026\nother\n\n")
		f.Close()
		before := readFile(t, mb)
		if cut, err := recoverAt(t, mb, dead, opt); cut || !errors.Is(err, ErrRecoverMismatch) {
			t.Fatalf("Recover: %v, %v; want a mismatch reported", cut, err)
		}
		if readFile(t, mb) != before || intentOf(t, mb) != "" {
			t.Fatalf("Recover changed the mailbox or left the intent")
		}
		appendString(t, mb, "later\n", opt)
		settled(t, mb, before+later)
	})
	t.Run("an intent whose offset is inside a line is not acted on", func(t *testing.T) {
		_, mb := intentDir(t, original)
		// testFrom again at offset 1 would be a From_ line only if it
		// began a line.
		writeFile(t, mb, "x"+testFrom+"body\n\n")
		if err := unix.Setxattr(mb, intentAttr, []byte("1 1 "+testFrom), 0); err != nil {
			t.Fatal(err)
		}
		appendString(t, mb, "later\n", testOptions())
		settled(t, mb, "x"+testFrom+"body\n\n"+later)
	})
	t.Run("an append-only mailbox still gets its mail", func(t *testing.T) {
		requireRoot(t)
		d, mb := intentDir(t, original)
		f, err := os.Open(mb)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		const fsAppendFL = 0x20 // FS_APPEND_FL, linux/fs.h
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, fsAppendFL); err != nil {
			t.Skip("cannot make the file append-only here:", err)
		}
		defer unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, 0)
		if _, err := Append(d, "inbox", strings.NewReader("later\n"), testOptions()); err != nil {
			t.Fatalf("Append to an append-only mailbox: %v", err)
		}
		settled(t, mb, original+later)
	})
}

// TestIntentForms: the value an append writes is short whatever the
// sender, and a dead writer's region is recognised from either form,
// whole or cut short inside its From_ line; what is not its From_ line
// stays.
func TestIntentForms(t *testing.T) {
	t.Run("the value is at most 59 bytes whatever the sender", func(t *testing.T) {
		for _, sender := range []string{"", "a@b", strings.Repeat("s", maxSender)} {
			from := FromLine(sender, testTime)
			v := intentValue(1<<62, from)
			if len(v) > 59 {
				t.Errorf("sender of %d bytes: value %q is %d bytes, more than the 59 documented", len(sender), v, len(v))
			}
			r, ok := parseIntent(string(v))
			if !ok || r.off != 1<<62 || r.n != len(from) || r.from != "" || !r.startsWith([]byte(from)) {
				t.Errorf("sender of %d bytes: %q read back as %+v, %v", len(sender), v, r, ok)
			}
		}
	})
	t.Run("the value takes one allocation", func(t *testing.T) {
		from := FromLine(strings.Repeat("s", 100), testTime)
		if n := testing.AllocsPerRun(100, func() { intentValue(1<<40, from) }); n != 1 {
			t.Fatalf("%v allocations", n)
		}
	})
	const original = testFrom + "old\n\n"
	later := testFrom + "later\n\n"
	from := FromLine("dead@example.org", testTime)
	other := FromLine("dead@example.net", testTime) // the same length
	for _, c := range []struct {
		name, left, value string
		cut               bool
	}{
		{"a whole From_ line and its message", from + "partial bo", string(intentValue(int64(len(original)), from)), true},
		{"died inside its From_ line", from[:9], string(intentValue(int64(len(original)), from)), true},
		{"died after one byte", "F", string(intentValue(int64(len(original)), from)), true},
		{"the first form, as an older lda wrote it", from + "partial", "1 " + strconv.Itoa(len(original)) + " " + from, true},
		{"another From_ line of the same length", other + "kept", string(intentValue(int64(len(original)), from)), false},
		{"a short region with a line break", "From x\n", string(intentValue(int64(len(original)), from)), false},
		{"a short region that is not a From_ line", "Subject", string(intentValue(int64(len(original)), from)), false},
		{"a short region that starts like one and is not", "Frog x", string(intentValue(int64(len(original)), from)), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, mb := intentDir(t, original+c.left)
			if err := unix.Setxattr(mb, intentAttr, []byte(c.value), 0); err != nil {
				t.Fatal(err)
			}
			appendString(t, mb, "later\n", testOptions())
			want := original + later
			if !c.cut {
				want = original + c.left
				if !strings.HasSuffix(c.left, "\n") {
					want += "\n"
				}
				want += "\n" + later
			}
			settled(t, mb, want)
		})
	}
}

// TestIntentForged: an intent whose sum fits a line that is not a From_
// line (set by hand: whoever may write the mailbox may set it) cuts
// nothing, as the first form could not either.
func TestIntentForged(t *testing.T) {
	const original = testFrom + "Subject: s\n\nkeep me\nbody line\nmore text\n\n"
	_, mb := intentDir(t, original)
	off := strings.Index(original, "body line")
	forged := intentValue(int64(off), "body line\n")
	if err := unix.Setxattr(mb, intentAttr, forged, 0); err != nil {
		t.Fatal(err)
	}
	appendString(t, mb, "later\n", testOptions())
	settled(t, mb, original+testFrom+"later\n\n")
}

// TestParseIntent: garbled values are refused, not guessed at.
func TestParseIntent(t *testing.T) {
	sum := strings.Repeat("ab", sumLen)
	if sumLen != 16 {
		t.Fatalf("sumLen %d: the table and the documented 59 bytes assume 16", sumLen)
	}
	for _, c := range []struct {
		value string
		ok    bool
	}{
		{"2 0 40 " + sum, true},
		{"2 00 40 " + sum, false},
		{"2 -1 40 " + sum, false},
		{"2 +1 40 " + sum, false},
		{"2 0 040 " + sum, false},
		{"2 0 6 " + sum, false}, // shorter than any From_ line
		{"2 0 9999 " + sum, false},
		{"2 0 40 " + strings.ToUpper(sum), false},
		{"2 0 40 " + sum[2:], false},
		{"2 0 40 " + sum + " ", false},
		{"2 0 40", false},
		{"2 0", false},
		{"3 0 40 " + sum, false},
		{"1 0 " + testFrom, true},
		{"1 0 From x", false}, // no newline
		{"", false},
	} {
		t.Run(c.value, func(t *testing.T) {
			r, ok := parseIntent(c.value)
			if ok != c.ok {
				t.Fatalf("parseIntent(%q) = %+v, %v; want ok %v", c.value, r, ok, c.ok)
			}
		})
	}
}
