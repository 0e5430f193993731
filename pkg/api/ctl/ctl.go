// Package ctl is photonctl: the operator's command line for photon-init's
// control socket. "photon-init ctl VERB", the photonctl symlink and the
// serial console's built-in shell all run it through Run, so every verb
// behaves and prints the same wherever it is typed.
//
// # Exit codes
//
//	0    success
//	1    failure: the server refused or failed the request (unknown
//	     container, conflict, ...), or the socket cannot be reached
//	2    usage: unknown verb or flag, missing or extra arguments, a bad
//	     flag value
//	exec: the command's own exit code (128+N when killed by signal N;
//	     126 and 127 as the runtime reports a command it cannot run or
//	     find); 125 when photonctl could not run it at all (unknown or
//	     stopped container, socket unreachable, stream broken)
//	130, 143: interrupted by SIGINT or SIGTERM (photonctl only)
//
// # Output
//
// Tables and sentences for people by default; "-o json" prints JSON for
// scripts: one indented document for ps (an array), inspect (an array,
// one element per name), timeline and version, and newline-delimited JSON
// (one compact object a line, as the API sends them) for logs and events.
package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/api/client"
)

// Exit codes (see the package documentation).
const (
	ExitOK         = 0
	ExitError      = 1
	ExitUsage      = 2
	ExitExecFailed = 125
)

// Env is where Run reads, writes and connects.
type Env struct {
	// Prog names the command in messages: "photonctl" or "photon-init
	// ctl".
	Prog string
	// Version is this binary's version, for the version verb.
	Version string
	// Stdin is exec -i's input. When it is an *os.File on a terminal,
	// exec -t puts that terminal in raw mode for the session (restored
	// after) and takes its size.
	Stdin io.Reader
	// Stdout and Stderr receive output and messages.
	Stdout, Stderr io.Writer
	// Getenv looks up $PHOTON_SOCKET; nil means os.Getenv.
	Getenv func(string) string
	// WatchResize makes exec -t follow the terminal's size (SIGWINCH).
	// Only for a process of its own: the signal is process-wide.
	WatchResize bool
	// Log receives reports of panics in the client's goroutines; nil
	// discards them.
	Log *slog.Logger
	// Now is the clock for "5m ago"; nil means time.Now.
	Now func() time.Time
}

// usageError is a command line that does not make sense (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// exitError carries an exit code of its own (exec).
type exitError struct {
	code int
	err  error // printed when not nil
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

// verb is one photonctl command.
type verb struct {
	name    string
	args    string // usage of the positional arguments
	summary string
	// setup adds the verb's flags and returns the function that runs it.
	setup func(fs *pflag.FlagSet, c *cmd) func(ctx context.Context, args []string) error
	// min and max bound the positional arguments (max -1: no bound).
	min, max int
	// exec-like verbs stop parsing flags at the first argument.
	stopAtArg bool
}

// verbs lists the verbs in the order help shows them.
func verbs() []verb {
	return []verb{
		{name: "ps", summary: "list the containers", setup: setupPs, max: 0},
		{name: "inspect", args: "NAME...", summary: "show containers in detail", setup: setupInspect, min: 1, max: -1},
		{name: "logs", args: "NAME", summary: "print a container's output", setup: setupLogs, min: 1, max: 1},
		{name: "exec", args: "NAME CMD [ARG...]", summary: "run a command in a running container", setup: setupExec, min: 2, max: -1, stopAtArg: true},
		{name: "start", args: "NAME...", summary: "start containers", setup: setupStart, min: 1, max: -1},
		{name: "stop", args: "NAME...", summary: "stop containers", setup: setupStop, min: 1, max: -1},
		{name: "restart", args: "NAME...", summary: "restart containers", setup: setupRestart, min: 1, max: -1},
		{name: "kill", args: "NAME...", summary: "send a signal to containers (default SIGKILL)", setup: setupKill, min: 1, max: -1},
		{name: "events", summary: "print container state changes as they happen", setup: setupEvents, max: 0},
		{name: "timeline", summary: "show the boot timeline", setup: setupTimeline, max: 0},
		{name: "poweroff", summary: "power the machine off", setup: setupPower(api.Poweroff), max: 0},
		{name: "reboot", summary: "reboot the machine", setup: setupPower(api.Reboot), max: 0},
		{name: "halt", summary: "halt the machine", setup: setupPower(api.Halt), max: 0},
		{name: "version", summary: "print photonctl's and the server's versions", setup: setupVersion, max: 0},
		{name: "completion", args: "bash", summary: "print the bash completion script", setup: setupCompletion, min: 1, max: 1},
		{name: "help", args: "[VERB]", summary: "show help", max: 1},
	}
}

// Verbs returns the names of photonctl's verbs.
func Verbs() []string {
	var names []string
	for _, v := range verbs() {
		names = append(names, v.name)
	}
	return names
}

// cmd is one run: the environment and the common flags.
type cmd struct {
	env    Env
	socket string
	output string
	client *client.Client
}

// json reports whether -o json was asked for.
func (c *cmd) json() bool { return c.output == "json" }

// addCommon adds the flags every verb takes.
func (c *cmd) addCommon(fs *pflag.FlagSet) {
	fs.StringVar(&c.socket, "socket", c.socket, "the control socket's `PATH` (default $"+api.SocketEnv+" or "+api.DefaultSocket+")")
	fs.StringVarP(&c.output, "output", "o", c.output, "output `FORMAT`: table or json")
}

// Run runs photonctl with args (the verb and its arguments, without the
// program's name) and returns the exit code.
func Run(ctx context.Context, env Env, args []string) int {
	if env.Prog == "" {
		env.Prog = "photonctl"
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	c := &cmd{env: env, output: "table"}
	err := c.run(ctx, args)
	if c.client != nil {
		c.client.Close()
	}
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Prog, err)
		return ExitUsage
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintf(env.Stderr, "%s: %v\n", env.Prog, ee.err)
		}
		return ee.code
	default:
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Prog, err)
		return ExitError
	}
}

func (c *cmd) run(ctx context.Context, args []string) error {
	global := pflag.NewFlagSet(c.env.Prog, pflag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.SetInterspersed(false)
	c.addCommon(global)
	help := global.BoolP("help", "h", false, "show help")
	if err := global.Parse(args); err != nil {
		return usagef("%v (see %s help)", err, c.env.Prog)
	}
	args = global.Args()
	if *help {
		c.usage(c.env.Stdout)
		return nil
	}
	if len(args) == 0 {
		c.usage(c.env.Stderr)
		return &exitError{code: ExitUsage}
	}
	name, args := args[0], args[1:]
	i := slices.IndexFunc(verbs(), func(v verb) bool { return v.name == name })
	if i < 0 {
		return usagef("unknown verb %q (see %s help)", name, c.env.Prog)
	}
	v := verbs()[i]
	if v.name == "help" {
		return c.help(args)
	}
	fs := pflag.NewFlagSet(c.env.Prog+" "+v.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(!v.stopAtArg)
	c.addCommon(fs)
	vhelp := fs.BoolP("help", "h", false, "show help")
	runVerb := v.setup(fs, c)
	if err := fs.Parse(args); err != nil {
		return usagef("%s: %v (see %s help %s)", v.name, err, c.env.Prog, v.name)
	}
	if *vhelp {
		c.verbUsage(c.env.Stdout, v, fs)
		return nil
	}
	args = fs.Args()
	switch {
	case len(args) < v.min:
		return usagef("%s: needs %s (see %s help %s)", v.name, v.args, c.env.Prog, v.name)
	case v.max >= 0 && len(args) > v.max:
		return usagef("%s: unexpected argument %q (see %s help %s)", v.name, args[v.max], c.env.Prog, v.name)
	}
	if c.output != "table" && c.output != "json" {
		return usagef("-o: unknown format %q (table or json)", c.output)
	}
	if c.socket == "" {
		c.socket = client.SocketFromEnv(c.env.Getenv)
	}
	c.client = client.New(client.Options{Socket: c.socket, Log: c.env.Log})
	return runVerb(ctx, args)
}

func (c *cmd) help(args []string) error {
	if len(args) == 0 {
		c.usage(c.env.Stdout)
		return nil
	}
	i := slices.IndexFunc(verbs(), func(v verb) bool { return v.name == args[0] })
	if i < 0 || args[0] == "help" {
		return usagef("help: unknown verb %q", args[0])
	}
	v := verbs()[i]
	fs := pflag.NewFlagSet(v.name, pflag.ContinueOnError)
	c.addCommon(fs)
	v.setup(fs, c)
	c.verbUsage(c.env.Stdout, v, fs)
	return nil
}

func (c *cmd) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s [--socket PATH] [-o table|json] VERB [ARGS]\n\nverbs:\n", c.env.Prog)
	for _, v := range verbs() {
		fmt.Fprintf(w, "  %-30s %s\n", strings.TrimSpace(v.name+" "+v.args), v.summary)
	}
	fmt.Fprintf(w, `
The socket is --socket, else $%s, else %s
("photon-init run --root DIR" listens on DIR/run/photon/photon.sock).
"help VERB" shows a verb's flags. Exit codes: 0 ok, 1 failure, 2 usage;
exec exits with the command's own code, or 125 if it could not run it.
`, api.SocketEnv, api.DefaultSocket)
}

func (c *cmd) verbUsage(w io.Writer, v verb, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "usage: %s %s [FLAGS] %s\n\n%s.\n\nflags:\n%s", c.env.Prog, v.name, v.args, strings.ToUpper(v.summary[:1])+v.summary[1:], fs.FlagUsages())
}

// printJSON prints v as indented JSON.
func (c *cmd) printJSON(v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = c.env.Stdout.Write(append(data, '\n'))
	return err
}

// printJSONLine prints v as one compact line.
func (c *cmd) printJSONLine(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = c.env.Stdout.Write(append(data, '\n'))
	return err
}
