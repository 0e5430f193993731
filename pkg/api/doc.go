// Package api is photon-init's control socket: HTTP with JSON on a unix
// socket (/run/photon/photon.sock, mode 0600, and only uid 0 is served,
// checked with SO_PEERCRED), versioned paths under /v1/. It lists,
// inspects, starts, stops, restarts and signals containers, streams their
// logs and the supervisor's events as newline-delimited JSON, runs
// processes in them (exec, over an upgraded connection carrying the
// client's input raw and the output in Docker-style frames ending with the
// exit code), gives the boot timeline and takes power requests. The
// protocol is described in docs/api.md.
//
// The server knows the machine only through two interfaces: Containers
// (the container engine) and Machine (timeline and power). Wiring it:
//
//	srv := api.NewServer(api.Options{Containers: eng, Machine: m, Log: log, Version: version})
//	go srv.ListenAndServe(ctx, api.DefaultSocket) // until ctx is done
//
// or Listen first (so the socket exists before anything reports ready)
// and Serve(ctx, l) in a goroutine.
//
// A client can do PID 1 no harm: connections are bounded (503 beyond
// Options.MaxConns), request heads time out, bodies are limited, every
// write to a client is bounded by Options.WriteTimeout, streams are pulled
// one value at a time and closed when their client goes, an exec's process
// is killed when its client goes, and every goroutine recovers from
// panics.
//
// Package client is the Go client and package ctl is photonctl.
package api
