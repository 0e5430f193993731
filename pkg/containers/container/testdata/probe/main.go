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
//	probe hog             allocate and touch memory until killed
//	probe childhog        run "probe hog" as a child, report how it ended, sleep
//	probe notify MSG...   send each MSG with go-systemd's daemon.SdNotify, sleep
//	probe watchdog        report daemon.SdWatchdogEnabled, send WATCHDOG=1
//	probe stdin           copy stdin to stdout
//	probe mixed           write "out 1" to stdout, "err" to stderr, "out 2" to stdout
//	probe tty             report the terminal, echo a line, report a resize, exit 7
//	probe syscalls        what some system calls return (seccomp), NAME=ok|ERRNO
//	probe int80           i386 system calls through int 0x80 (amd64), as syscalls does
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "probe: no command")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "syscalls":
		syscalls()
	case "int80":
		i386Calls()
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
	case "hog":
		var keep [][]byte
		for {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
	case "childhog":
		err := exec.Command("/proc/self/exe", "hog").Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			fmt.Println("child:", ee.ProcessState.String())
		} else {
			fmt.Println("child:", err)
		}
		sleepForever()
	case "notify":
		for _, msg := range args {
			if sent, err := daemon.SdNotify(false, msg); !sent || err != nil {
				fmt.Println("notify failed:", sent, err)
				os.Exit(1)
			}
		}
		fmt.Println("notified")
		sleepForever()
	case "watchdog":
		d, err := daemon.SdWatchdogEnabled(false)
		fmt.Printf("watchdog=%v err=%v\n", d, err)
		if d > 0 {
			daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		}
	case "stdin":
		io.Copy(os.Stdout, os.Stdin)
	case "mixed":
		fmt.Println("out 1")
		fmt.Fprintln(os.Stderr, "err")
		fmt.Println("out 2")
	case "tty":
		tty()
	default:
		fmt.Fprintln(os.Stderr, "probe: unknown command", os.Args[1])
		os.Exit(2)
	}
}

// tty reports its terminal, echoes a line read from it, then waits for a
// resize and reports it.
func tty() {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	size := func() string {
		ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%dx%d", ws.Col, ws.Row)
	}
	_, err := unix.IoctlGetTermios(0, unix.TCGETS)
	name, _ := os.Readlink("/proc/self/fd/0")
	fmt.Printf("isatty=%v size=%s tty=%s TERM=%s\n", err == nil, size(), name, os.Getenv("TERM"))
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	fmt.Printf("got %s\n", strings.TrimSpace(line))
	<-winch
	fmt.Printf("resized=%s\n", size())
	os.Exit(7)
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
