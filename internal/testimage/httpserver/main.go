// Command httpserver is the small static HTTP server inside the project's
// test images (see package testimage). It listens on the port given by
// -port or, failing that, $PORT (default 8080), answers GET / with 200 and
// a short body naming itself, and at start prints
//
//	httpserver: listening on :8080 uptime=1.234
//
// where uptime is the first field of /proc/uptime: the boot benchmark reads
// it as the time the container's entrypoint was executed. When it answers
// its first request it prints, once,
//
//	httpserver: first request uptime=1.456
//
// (the guest uptime at which the first request arrived, for the benchmark's
// "first HTTP 200"). It exits 0 on SIGTERM or SIGINT (so a container stops
// cleanly without SIGKILL).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
)

func main() {
	uptime := readUptime()
	port := flag.String("port", "", "listen on `PORT` (default $PORT, else 8080)")
	flag.Parse()
	if *port == "" {
		*port = os.Getenv("PORT")
	}
	if *port == "" {
		*port = "8080"
	}
	host, _ := os.Hostname()
	msg := "hello from photon-init test httpserver"
	if m := os.Getenv("MESSAGE"); m != "" {
		msg = m
	}
	var first sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		first.Do(func() { fmt.Printf("httpserver: first request uptime=%s\n", readUptime()) })
		fmt.Fprintf(w, "%s (host %s)\n", msg, host)
	})
	ln, err := net.Listen("tcp", ":"+*port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "httpserver: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("httpserver: listening on :%s uptime=%s\n", *port, uptime)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv := &http.Server{Handler: mux}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "httpserver: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("httpserver: stopped")
}

// readUptime returns the first field of /proc/uptime, or "unknown".
func readUptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}
