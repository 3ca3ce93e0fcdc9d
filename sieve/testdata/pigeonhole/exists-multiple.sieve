# message: spam.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if exists ["x-spam-flag", "x-spam-score"] {
  fileinto "Junk";
}
