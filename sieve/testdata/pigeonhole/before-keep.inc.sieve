# a system "before" script
require "imap4flags";
addflag "\\Seen";
keep;
