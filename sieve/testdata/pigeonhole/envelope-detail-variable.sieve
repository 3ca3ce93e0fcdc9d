# to: user+shop@example.com
# message: plain.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if envelope :detail :matches "to" "*" {
  set "d" "${1}";
}
if string :is "${d}" "shop" {
  fileinto "Shopping";
}
