// Package e2e holds the end-to-end tests: they build the real lda binary
// (CGO_ENABLED=0), create real users, and attack and measure the binary as
// root. Without root they skip. CI runs them as root.
package e2e
