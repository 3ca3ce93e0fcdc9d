// Package aliases reads sendmail/Postfix aliases files (aliases(5)), and
// the list grammar that :include: files and .forward files share.
//
// It is pure: it parses bytes the caller read, and follows :include:
// only through an Opener the caller supplies (ExpandIncludes), which
// decides what may be opened. Nothing is ever executed or resolved.
//
// # Aliases file
//
// The file is read in logical lines, as Postfix's readlline(3) reads it:
//
//	file      = *( logical / comment / blank )
//	comment   = *WSP "#" *CHAR LF        ; first non-space character is "#"
//	blank     = *WSP LF                  ; empty or white space only
//	logical   = first *( continue / comment / blank )
//	first     = non-WSP *CHAR LF         ; begins in column 1
//	continue  = 1*WSP *CHAR LF           ; begins with white space
//	entry     = key *blank ":" list      ; a logical line
//	key       = atom / quoted            ; one name; "\" quotes a character
//	list      = element *( "," element ) ; empty elements are ignored
//
// Continuation lines are joined without the newline; comment and blank
// lines inside a logical line are skipped (they do not end it). CR before
// LF is white space. The key is folded to lower case (ASCII only), as
// Postfix and sendmail look keys up. It must not be empty and must not
// contain "@" or "%" (it must be local). A key given twice is an error;
// the first entry is kept, as Postfix does (sendmail keeps the last).
//
// owner-NAME and NAME-request are ordinary entries; Entry.OwnerOf and
// Entry.RequestOf mark them (owner-NAME receives the errors of the list
// NAME: sendmail and Postfix make it the envelope sender when they expand
// NAME), with a warning when NAME is not defined.
//
// # Elements
//
// An element is, after white space and parenthesised comments "(...)"
// (nested, with "\" escapes) are skipped:
//
//	|command              a program: the rest of the element up to the next
//	                      comma outside double quotes, runs of white space
//	                      made one space (a warning if it has arguments:
//	                      Postfix splits it at white space)
//	"|command with args"  a program, quoted: \" and \\ are escapes
//	/absolute/file        a file (an mbox); ending in "/": a maildir
//	"/file with space"    the same, quoted
//	~/file                a file in the home directory (Options.Home only:
//	                      .forward files and their :include: files)
//	:include:/file        a list file, read with ParseList and followed by
//	                      ExpandIncludes (":INCLUDE:" too; quoted forms
//	                      ":include:/f" and :include:"/f" as well)
//	\user                 a local user, without further alias or .forward
//	                      expansion (\"user" too)
//	user                  a local name (an alias or a user)
//	user@domain           an address; the local part may be quoted
//	                      ("a b"@example.org, a."b c"@x); a domain may be
//	                      a literal ([192.0.2.1])
//	:blackhole: :unknown: Exim's special items, and :fail: TEXT and
//	                      :defer: TEXT (the text runs to the next comma)
//
// As in Postfix's local(8), what an element is depends on its unquoted
// form: "|x".y is a command, "/".x a file. Two elements separated only by
// white space are two elements (a warning: "missing comma"), as Postfix
// reads them. Outside quotes, "\" quotes the next character.
//
// These are errors, reported with file:line, and parsing goes on with the
// next element or entry: "#" after text (it is not a comment in
// aliases(5); Postfix would make an address of it), route addresses and
// phrases (<a@b>, Name <a@b>), groups (";"), a colon or a second "@" in
// an address, text right after a quoted string, unterminated quotes and
// comments, empty addresses and commands, a relative :include: path,
// ~user/, ~/ outside .forward files, \ before anything but a user name,
// an unknown :item:, control characters (other than tab and CR) and
// invalid UTF-8. An entry keeps the elements that parsed.
//
// # List files (:include: and .forward)
//
// ParseList reads each line on its own, as Postfix reads :include: and
// .forward files: there are no continuation lines; empty lines and lines
// whose first non-space character is "#" are skipped (Postfix skips only
// "#" in column 1); every other line is a list of elements as above.
//
// # Canonical form
//
// Format and FormatList write entries and elements in a canonical syntax
// (quoting only where needed) that Parse and ParseList read back to the
// same keys and elements; FuzzParseFormat checks this.
//
// # Security
//
// The parser trusts nothing it reads. Memory is bounded (MaxFileSize per
// file, MaxIncludeDepth nested includes); :include: cycles are detected
// by path and reported, not followed. Messages quote the offending text
// (strconv.Quote) so that a file cannot forge report lines, and echo only
// a short snippet of it. Opening :include: files is the caller's
// decision: ExpandIncludes passes each path and the element that names it
// to the Opener, which must refuse what the reader may not read (allowgen
// refuses symlinks in any component, hard links, and files writable by
// group or others or owned by the wrong user, before reading a byte).
// Elements are data: a Program element is a command line to be examined,
// never to be run, and an Address is never resolved here.
package aliases
