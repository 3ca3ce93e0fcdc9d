# a system "before" script
require ["fileinto", "copy"];
if header :is "x-spam-flag" "YES" {
  fileinto :copy "Junk";
}
