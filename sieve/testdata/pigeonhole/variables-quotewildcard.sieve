# message: plain.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
set :quotewildcard "p" "Meet*";
if header :matches "subject" "${p}" {
  fileinto "Literal";
} else {
  fileinto "NoMatch";
}
