# from: spammer@bad.example
# message: plain.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
if envelope :domain "from" "bad.example" {
  reject "Mail from bad.example refused";
  stop;
}
