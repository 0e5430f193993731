// Command netprobe is the process of the container package's network
// tests: a static binary that serves and dials TCP.
//
//	netprobe serve PORT        answer each connection on PORT with "HOSTNAME from PEER_IP"
//	netprobe get ADDR...       dial each HOST:PORT (a name is resolved through
//	                           /etc/hosts), retrying for 10 s, and print
//	                           "ADDR -> ANSWER" or "ADDR -> error: ..."; then sleep
//	netprobe addr              print "addr=A" for each IPv4 address of eth0
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "netprobe: no command")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "serve":
		serve(args[0])
	case "get":
		for _, a := range args {
			fmt.Printf("%s -> %s\n", a, get(a))
		}
		fmt.Println("done")
		for {
			time.Sleep(time.Hour)
		}
	case "addr":
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			fmt.Println("addr error:", err)
			os.Exit(1)
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				fmt.Printf("addr=%s\n", n.IP)
			}
		}
	default:
		fmt.Fprintln(os.Stderr, "netprobe: unknown command", os.Args[1])
		os.Exit(2)
	}
}

func serve(port string) {
	ln, err := net.Listen("tcp4", ":"+port)
	if err != nil {
		fmt.Println("serve error:", err)
		os.Exit(1)
	}
	host, _ := os.Hostname()
	fmt.Println("listening on", port)
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		fmt.Fprintf(c, "%s from %s\n", host, c.RemoteAddr().(*net.TCPAddr).IP)
		c.Close()
	}
}

// get dials addr until it answers or 10 s pass.
func get(addr string) string {
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil {
				return strings.TrimSpace(line)
			}
			err = rerr
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return "error: " + last.Error()
}
