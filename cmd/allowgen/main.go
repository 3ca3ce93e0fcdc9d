// Command allowgen derives lda allow-lists from /etc/aliases and .forward
// files. It is not built yet; see issue 5.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "allowgen: not built yet (planned: derive lda policy files from /etc/aliases and ~/.forward)")
	os.Exit(69) // EX_UNAVAILABLE
}
