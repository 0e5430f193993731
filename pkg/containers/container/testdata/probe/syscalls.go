package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// syscalls reports what a few system calls return, as NAME=ok or
// NAME=ERRNO (ENOSYS, EPERM, ...): calls Docker's seccomp profile refuses
// or answers itself, and calls it lets through, native and (amd64) i386.
func syscalls() {
	try := func(name string, trap uintptr, a ...uintptr) {
		var args [6]uintptr
		copy(args[:], a)
		_, _, errno := unix.Syscall6(trap, args[0], args[1], args[2], args[3], args[4], args[5])
		p(name, errnoName(errno))
	}
	try("getpid", unix.SYS_GETPID)
	try("keyctl", unix.SYS_KEYCTL, 0, ^uintptr(2)) // KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING
	try("personality_query", unix.SYS_PERSONALITY, 0xffffffff)
	try("personality_addr_no_randomize", unix.SYS_PERSONALITY, 0x0040000) // ADDR_NO_RANDOMIZE
	try("clone3", unix.SYS_CLONE3, 0, 0)
	try("syscall_1000", 1000)
	if runtime.GOARCH == "amd64" {
		// i386 calls through int 0x80, in a child: a filter without the
		// x86 architecture kills it (or its thread: hence the timeout).
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "/proc/self/exe", "int80").Output()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			p("i386", ee.ProcessState.String())
		case err != nil:
			p("i386", err)
		default:
			fmt.Print(string(out))
		}
	}
}

// errnoName is "ok" for 0, else the errno's name ("EPERM").
func errnoName(errno syscall.Errno) string {
	if errno == 0 {
		return "ok"
	}
	return unix.ErrnoName(errno)
}

// i386Calls makes i386 system calls through int 0x80 (amd64 only): getpid
// (20) and keyctl (288).
func i386Calls() {
	ret := func(r uintptr) string {
		if n := int32(r); n < 0 && n > -4096 {
			return errnoName(syscall.Errno(-n))
		}
		return "ok"
	}
	p("i386_getpid", ret(int80(20, 0, 0, 0)))
	p("i386_keyctl", ret(int80(288, 0, 0xfffffffd, 0)))
}

func p(k string, v any) { fmt.Printf("%s=%v\n", k, v) }
