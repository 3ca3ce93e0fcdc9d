# message: spam.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if header :contains "x-spam-level" "*****" {
  discard;
  stop;
}
fileinto "NotReached";
