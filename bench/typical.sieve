# bench/typical.sieve: the 30-line script of sieve/bench_test.go, for
# ab.sh SIEVE=bench/typical.sieve. None of its tests match lmtpload's
# messages, so every message is kept.
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "reject", "body", "relational", "comparator-i;ascii-numeric"];
if anyof (header :is "x-spam-flag" "YES", header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "5") {
  fileinto "Junk";
  stop;
}
if envelope :domain "from" ["bad.example", "worse.example"] {
  reject "Mail from your domain is not accepted.";
  stop;
}
# mailing lists by List-Id
if header :matches "list-id" "*<*.googlegroups.com>*" {
  set :lower "list" "${2}";
  fileinto "Lists.${list}";
  stop;
}
if envelope :detail "to" "shop" {
  addflag "\\Seen";
  fileinto "Shopping";
  stop;
}
if address :domain :is "from" ["example.net", "example.org"] {
  if header :contains "subject" ["invoice", "receipt"] {
    fileinto :flags "\\Flagged" "Work.Accounting";
  } elsif body :text :contains "urgent" {
    addflag "\\Flagged";
    keep;
  } else {
    fileinto "Work";
  }
}
