# message: plain.eml
# before: before-keep.inc.sieve
discard;
