# message: list.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if header :matches "subject" "[*] *" {
  set :lower "tag" "${1}";
  fileinto "Tags.${tag}";
}
