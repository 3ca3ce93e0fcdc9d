# message: mime.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if body :raw :contains "caf=E9" {
  fileinto "Raw";
}
