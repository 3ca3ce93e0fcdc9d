# to: User+X@Example.COM
# message: plain.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if envelope :all :is "to" "user+x@example.com" {
  fileinto "Case";
}
