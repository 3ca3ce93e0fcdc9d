# message: plain.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
set "a" "x";
set "b" "";
if string :count "eq" :comparator "i;ascii-numeric" ["${a}", "${b}", "y"] "2" {
  fileinto "Two";
}
