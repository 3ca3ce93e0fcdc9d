# message: plain.eml
require ["fileinto", "envelope", "subaddress", "imap4flags", "variables", "relational", "body", "reject", "copy", "encoded-character", "comparator-i;ascii-numeric"];
set :lower :upperfirst "name" "WORK";
set :length "len" "${name}";
if string :is "${len}" "4" {
  fileinto "${name}";
}
