# a system "before" script
if header :is "x-spam-flag" "YES" {
  discard;
}
