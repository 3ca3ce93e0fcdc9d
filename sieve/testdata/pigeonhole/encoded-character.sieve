# message: plain.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
fileinto "${hex:4A 75 6E 6B}${unicode:0021}";
