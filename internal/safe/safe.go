// Package safe runs functions so that a panic is reported instead of
// killing the process. In PID 1 an uncaught panic is a kernel panic, so every
// goroutine PID 1 starts goes through Go, and risky calls through Call.
package safe

import (
	"fmt"
	"log/slog"
	"runtime/debug"
)

// Call runs fn and turns a panic into an error carrying the stack.
func Call(name string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: panic: %v\n%s", name, r, debug.Stack())
		}
	}()
	return fn()
}

// Go runs fn in a new goroutine; a panic is logged as an error with its
// stack and the goroutine ends, the process lives on.
func Go(log *slog.Logger, name string, fn func()) {
	go func() {
		if err := Call(name, func() error { fn(); return nil }); err != nil {
			log.Error(err.Error())
		}
	}()
}
