// Command lmtpgreet connects to a Unix socket, sends LHLO and QUIT, and
// prints everything the server said until it closed the connection. The
// end-to-end tests run it as an unauthorised user.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	c, err := net.Dial("unix", os.Args[1])
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "LHLO probe\r\nQUIT\r\n")
	b, _ := io.ReadAll(c)
	os.Stdout.Write(b)
}
