# to: user+fwd@example.com
# message: plain.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if envelope :detail :matches "to" "*" {
  redirect "${1}@example.org";
}
