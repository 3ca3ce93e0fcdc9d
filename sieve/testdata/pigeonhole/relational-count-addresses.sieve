# message: plain.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if address :count "eq" :comparator "i;ascii-numeric" ["to", "cc"] "3" {
  fileinto "Three";
}
