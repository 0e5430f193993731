// Command probe is the process of the container package's test containers:
// a static binary that reports what it sees and does what it is told.
//
//	probe report          facts as KEY=VALUE lines (ids, cwd, env, links, status)
//	probe exit N          exit with status N
//	probe out A B...      print A, B, ... on stdout, one per line
//	probe err A B...      print them on stderr
//	probe partial TEXT    print TEXT without a newline
//	probe sleep           block forever (Go's runtime exits 2 on SIGTERM)
//	probe ignore          block forever, ignoring SIGTERM and SIGINT
//	probe trap            exit 0 when SIGTERM arrives
//	probe write PATH DATA write DATA to PATH (exit 1 on failure)
//	probe cat PATH...     print the files
//	probe alloc MIB       allocate and touch MIB mebibytes, then sleep
//	probe fork N          start N children that sleep, report how many started
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "probe: no command")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "report":
		report()
	case "exit":
		n, _ := strconv.Atoi(args[0])
		os.Exit(n)
	case "out":
		for _, a := range args {
			fmt.Println(a)
		}
	case "err":
		for _, a := range args {
			fmt.Fprintln(os.Stderr, a)
		}
	case "partial":
		fmt.Print(args[0])
	case "sleep":
		fmt.Println("sleeping")
		sleepForever()
	case "ignore":
		// As a C program without handlers is as PID 1: deaf to SIGTERM.
		// (Go's runtime handles SIGTERM itself and exits with status 2.)
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
		fmt.Println("ignoring")
		sleepForever()
	case "trap":
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM)
		fmt.Println("trapping")
		<-c
		fmt.Println("got SIGTERM")
	case "write":
		if err := os.WriteFile(args[0], []byte(args[1]), 0o644); err != nil {
			fmt.Println("write failed:", err)
			os.Exit(1)
		}
		fmt.Println("written")
	case "cat":
		for _, p := range args {
			b, err := os.ReadFile(p)
			if err != nil {
				fmt.Println("cat failed:", err)
				os.Exit(1)
			}
			fmt.Print(string(b))
		}
	case "alloc":
		n, _ := strconv.Atoi(args[0])
		var keep [][]byte
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep))
		sleepForever()
	case "fork":
		n, _ := strconv.Atoi(args[0])
		started := 0
		for i := 0; i < n; i++ {
			cmd := exec.Command("/proc/self/exe", "sleep")
			if err := cmd.Start(); err != nil {
				break
			}
			started++
		}
		fmt.Println("started", started)
		time.Sleep(time.Hour)
	default:
		fmt.Fprintln(os.Stderr, "probe: unknown command", os.Args[1])
		os.Exit(2)
	}
}

// sleepForever blocks without leaving the runtime nothing to run (a bare
// select{} is a fatal deadlock).
func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}

func report() {
	p := func(k string, v any) { fmt.Printf("%s=%v\n", k, v) }
	p("uid", os.Getuid())
	p("gid", os.Getgid())
	groups, _ := os.Getgroups()
	gs := make([]string, len(groups))
	for i, g := range groups {
		gs[i] = strconv.Itoa(g)
	}
	p("groups", strings.Join(gs, ","))
	wd, _ := os.Getwd()
	p("cwd", wd)
	h, _ := os.Hostname()
	p("hostname", h)
	p("pid", os.Getpid())
	for _, e := range os.Environ() {
		p("env", e)
	}
	ifs, _ := net.Interfaces()
	var links []string
	for _, i := range ifs {
		up := "down"
		if i.Flags&net.FlagUp != 0 {
			up = "up"
		}
		links = append(links, i.Name+":"+up)
	}
	p("links", strings.Join(links, ","))
	if f, err := os.CreateTemp("/", "w"); err == nil {
		f.Close()
		os.Remove(f.Name())
		p("rootfs", "rw")
	} else {
		p("rootfs", "ro")
	}
	// keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0): Docker's
	// seccomp profile refuses it with EPERM.
	session := -3
	if _, _, errno := syscall.RawSyscall(syscall.SYS_KEYCTL, 0, uintptr(session), 0); errno != 0 {
		p("keyctl", errno.Error())
	} else {
		p("keyctl", "ok")
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		p("status", err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && (k == "CapEff" || k == "CapBnd" || k == "NoNewPrivs" || k == "Seccomp") {
			p(k, strings.TrimSpace(v))
		}
	}
}
