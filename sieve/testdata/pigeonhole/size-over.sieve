# message: big.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if size :over 10K {
  fileinto "Big";
} elsif size :under 1K {
  fileinto "Small";
}
