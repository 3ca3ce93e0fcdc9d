# message: plain.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if header :is :comparator "i;octet" "subject" "meeting tomorrow" {
  fileinto "Exact";
} elsif header :is "subject" "meeting tomorrow" {
  fileinto "Casemap";
}
