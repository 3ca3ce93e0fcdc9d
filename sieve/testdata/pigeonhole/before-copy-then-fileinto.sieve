# message: spam.eml
# before: before-copy.inc.sieve
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
fileinto "Work";
