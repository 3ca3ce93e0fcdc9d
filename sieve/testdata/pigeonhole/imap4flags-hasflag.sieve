# message: spam.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if header :is "x-spam-flag" "YES" {
  addflag "\\Seen";
}
if hasflag :contains "\\Seen" {
  fileinto "Junk";
}
