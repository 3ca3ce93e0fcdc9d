# A typical user script: lists, spam, a vacation-free auto-sort.
require ["fileinto", "envelope", "subaddress", "variables", "imap4flags", "relational", "comparator-i;ascii-numeric"];

if header :contains "X-Spam-Flag" "YES" {
  fileinto "Junk";
  stop;
}
if header :value "ge" :comparator "i;ascii-numeric" "X-Spam-Score" "8" {
  discard;
  stop;
}
if exists "List-Id" {
  if header :matches "List-Id" "*<*.*>*" {
    set :lower "list" "${2}";
    fileinto "Lists.${list}";
    stop;
  }
}
if envelope :detail "to" "receipts" {
  addflag "\\Seen";
  fileinto "Receipts";
  stop;
}
if address :domain :is "from" ["bank.example", "tax.example"] {
  addflag "\\Flagged";
  keep;
  stop;
}
if header :contains "subject" ["invoice", "order"] {
  fileinto "Shopping";
}
