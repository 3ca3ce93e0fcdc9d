// Command credprobe is a delivery program for the end-to-end tests. Run by
// a worker as an allowed program, it writes to the file named by its first
// argument: its own /proc/self/status, its parent's (the worker's)
// /proc/PPID/status, its open descriptors, its environment and the size of
// the message it read on standard input.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		os.Exit(64)
	}
	var b strings.Builder
	n, _ := io.Copy(io.Discard, os.Stdin)
	fmt.Fprintf(&b, "message-bytes: %d\n", n)
	self, _ := os.ReadFile("/proc/self/status")
	fmt.Fprintf(&b, "== self\n%s", self)
	parent, _ := os.ReadFile("/proc/" + strconv.Itoa(os.Getppid()) + "/status")
	fmt.Fprintf(&b, "== parent\n%s", parent)
	ents, _ := os.ReadDir("/proc/self/fd")
	var fds []int
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		fds = append(fds, n)
	}
	sort.Ints(fds)
	fmt.Fprintf(&b, "== fds\n%v\n", fds)
	env := os.Environ()
	sort.Strings(env)
	fmt.Fprintf(&b, "== env\n%s\n", strings.Join(env, "\n"))
	if err := os.WriteFile(os.Args[1], []byte(b.String()), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(73)
	}
}
