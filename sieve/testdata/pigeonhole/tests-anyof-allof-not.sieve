# message: plain.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if allof (exists "from", not exists "x-spam-flag", anyof (header :contains "subject" "nothing", address :domain "to" "example.com")) {
  fileinto "Combined";
}
