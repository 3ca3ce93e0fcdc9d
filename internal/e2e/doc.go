// Package e2e holds the end-to-end tests: they build the real lda binary
// (CGO_ENABLED=0), create real users, and attack and measure the binary as
// root. Without root they skip. CI runs them as root. The interoperability
// tests run private instances of Debian's Postfix (its LMTP client) and
// Dovecot (its LMTP proxy, which sends BDAT), installed by .ci/run; each
// skips without its package.
package e2e
