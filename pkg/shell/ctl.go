package shell

import (
	"context"
	"os/exec"
	"strings"
)

// CtlVerbs are the verbs of photonctl that the shell offers.
func CtlVerbs() []string {
	return []string{"ps", "inspect", "logs", "exec", "start", "stop", "restart", "kill", "events", "timeline", "poweroff", "reboot", "version"}
}

// CtlFunc runs photonctl with args ("logs", "-f", "web") on behalf of a
// shell command.
type CtlFunc func(ctx context.Context, env *Env, args []string) error

// ProgramCtl runs photonctl as a program on the terminal: path with prefix
// before photonctl's arguments, e.g. ProgramCtl("/proc/self/exe", "ctl")
// runs "photon-init ctl logs web". The program owns the terminal while it
// runs, so "exec -it" gets a real TTY and Ctrl-C reaches "logs -f".
func ProgramCtl(path string, prefix ...string) CtlFunc {
	return func(ctx context.Context, env *Env, args []string) error {
		cmd := exec.Command(path, append(append([]string(nil), prefix...), args...)...)
		return env.ExecCmd(ctx, cmd)
	}
}

// ctlAliases are the verbs that are also commands of their own name; the
// others (ps, kill, poweroff, reboot) are built-ins that act on the
// machine, and reach photonctl only as "photonctl VERB".
func ctlAliases() []string {
	return []string{"inspect", "logs", "exec", "start", "stop", "restart", "events", "timeline"}
}

// CtlCommands returns the commands that reach photonctl through run:
// "photonctl VERB ARGS..." for every verb, and the verbs that name no
// built-in as commands of their own ("logs web"). "exec NAME CMD..." asks
// for an interactive session (-i, and -t on a terminal) unless given
// options of its own.
func CtlCommands(run CtlFunc) []Command {
	cmds := []Command{{
		Name:    "photonctl",
		Usage:   "photonctl VERB [ARGS...]   (VERB: " + strings.Join(CtlVerbs(), ", ") + ")",
		Summary: "the control client: containers, logs, exec, events, timeline",
		Run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) < 2 {
				return usageError(env, "photonctl")
			}
			return run(ctx, env, args[1:])
		},
	}}
	for _, v := range ctlAliases() {
		c := Command{Name: v, Usage: v + " ARGS...", Summary: "photonctl " + v,
			Run: func(ctx context.Context, env *Env, args []string) error { return run(ctx, env, args) }}
		if v == "exec" {
			c.Usage = "exec [OPTIONS] CONTAINER COMMAND [ARG...]"
			c.Summary = "run a command inside a container (photonctl exec -i -t)"
			c.Run = func(ctx context.Context, env *Env, args []string) error {
				if len(args) < 3 {
					return usageError(env, "exec")
				}
				if !strings.HasPrefix(args[1], "-") {
					opts := []string{"-i"}
					if env.IsTerminal() {
						opts = append(opts, "-t")
					}
					args = append(append([]string{"exec"}, opts...), args[1:]...)
				}
				return run(ctx, env, args)
			}
		}
		cmds = append(cmds, c)
	}
	return cmds
}
