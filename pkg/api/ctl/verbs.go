package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/api/client"
)

func setupPs(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
	quiet := fs.BoolP("quiet", "q", false, "print only the names")
	return func(ctx context.Context, _ []string) error {
		list, err := c.client.List(ctx)
		if err != nil {
			return err
		}
		switch {
		case c.json():
			if list == nil {
				list = []api.ContainerInfo{}
			}
			return c.printJSON(list)
		case *quiet:
			for _, ci := range list {
				fmt.Fprintln(c.env.Stdout, ci.Name)
			}
			return nil
		}
		return c.psTable(list)
	}
}

func setupInspect(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
	return func(ctx context.Context, names []string) error {
		var infos []api.ContainerInfo
		var errs []error
		for _, name := range names {
			info, err := c.client.Inspect(ctx, name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			infos = append(infos, info)
		}
		if c.json() {
			if infos == nil {
				infos = []api.ContainerInfo{}
			}
			if err := c.printJSON(infos); err != nil {
				return err
			}
		} else {
			for i, info := range infos {
				if i > 0 {
					fmt.Fprintln(c.env.Stdout)
				}
				c.inspectText(info)
			}
		}
		return errors.Join(errs...)
	}
}

func setupLogs(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
	follow := fs.BoolP("follow", "f", false, "keep printing new lines as they come")
	tail := fs.String("tail", "all", "print only the last `N` lines")
	since := fs.String("since", "", "print only the lines since `T`: a time (2006-01-02T15:04:05Z), a duration before now (10m) or Unix seconds")
	stamps := fs.BoolP("timestamps", "t", false, "start each line with the time it was received")
	return func(ctx context.Context, args []string) error {
		opts := api.LogOptions{Tail: -1, Follow: *follow}
		if *tail != "all" {
			n, err := strconv.Atoi(*tail)
			if err != nil || n < 0 {
				return usagef("logs: --tail: %q is not a number of lines", *tail)
			}
			opts.Tail = n
		}
		var err error
		if opts.Since, err = parseSince(*since, c.env.Now()); err != nil {
			return usagef("logs: --since: %v", err)
		}
		err = c.client.Logs(ctx, args[0], opts, func(e api.LogEntry) error {
			if c.json() {
				return c.printJSONLine(e)
			}
			w := c.env.Stdout
			if e.Stream == "stderr" {
				w = c.env.Stderr
			}
			var b strings.Builder
			if *stamps {
				b.WriteString(e.Time.Format(time.RFC3339Nano))
				b.WriteByte(' ')
			}
			b.WriteString(e.Line)
			if !e.Partial {
				b.WriteByte('\n')
			}
			_, err := io.WriteString(w, b.String())
			return err
		})
		if *follow && errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
}

// parseSince parses a --since value: RFC 3339, a duration before now, or
// Unix seconds.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time (2006-01-02T15:04:05Z), a duration (10m) or Unix seconds", v)
}

// each runs op for every name, reporting each failure on stderr and each
// success's name on stdout (for people; nothing with -o json); it fails
// if any failed.
func (c *cmd) each(names []string, op func(name string) error) error {
	failed := 0
	for _, name := range names {
		if err := op(name); err != nil {
			fmt.Fprintf(c.env.Stderr, "%s: %s: %v\n", c.env.Prog, name, err)
			failed++
			continue
		}
		if !c.json() {
			fmt.Fprintln(c.env.Stdout, name)
		}
	}
	if failed > 0 {
		// Already reported, one line each.
		return &exitError{code: ExitError}
	}
	return nil
}

func setupStart(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
	return func(ctx context.Context, names []string) error {
		return c.each(names, func(name string) error { return c.client.Start(ctx, name) })
	}
}

// stopFlags adds -t/--timeout.
func stopFlags(fs *pflag.FlagSet) *string {
	return fs.StringP("timeout", "t", "", "seconds (or a duration: 1m30s) to wait after the stop signal before SIGKILL (default: the manifest's stop_grace_period)")
}

func stopOptions(verb, timeout string) (api.StopOptions, error) {
	var opts api.StopOptions
	if timeout == "" {
		return opts, nil
	}
	d, err := api.ParseTimeout(timeout)
	if err != nil {
		return opts, usagef("%s: --timeout: %q is not a number of seconds or a duration", verb, timeout)
	}
	opts.Timeout = d
	return opts, nil
}

func setupStop(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
	timeout := stopFlags(fs)
	return func(ctx context.Context, names []string) error {
		opts, err := stopOptions("stop", *timeout)
		if err != nil {
			return err
		}
		return c.each(names, func(name string) error { return c.client.Stop(ctx, name, opts) })
	}
}

func setupRestart(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
	timeout := stopFlags(fs)
	return func(ctx context.Context, names []string) error {
		opts, err := stopOptions("restart", *timeout)
		if err != nil {
			return err
		}
		return c.each(names, func(name string) error { return c.client.Restart(ctx, name, opts) })
	}
}

func setupKill(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
	signal := fs.StringP("signal", "s", "SIGKILL", "the `SIGNAL` to send: a name (TERM, SIGHUP, RTMIN+3) or a number")
	return func(ctx context.Context, names []string) error {
		sig, err := api.ParseSignal(*signal)
		if err != nil {
			return usagef("kill: --signal: %v", err)
		}
		return c.each(names, func(name string) error { return c.client.Kill(ctx, name, sig) })
	}
}

func setupEvents(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
	since := fs.String("since", "", "first print the remembered events since `T`: a time, a duration before now (10m) or Unix seconds")
	return func(ctx context.Context, _ []string) error {
		t, err := parseSince(*since, c.env.Now())
		if err != nil {
			return usagef("events: --since: %v", err)
		}
		err = c.client.Events(ctx, t, func(e api.Event) error {
			if c.json() {
				return c.printJSONLine(e)
			}
			_, err := io.WriteString(c.env.Stdout, eventLine(e))
			return err
		})
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
}

func setupTimeline(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
	return func(ctx context.Context, _ []string) error {
		doc, err := c.client.Timeline(ctx)
		if err != nil {
			return err
		}
		if c.json() {
			return c.printJSON(doc)
		}
		return c.timelineTable(doc)
	}
}

func setupPower(action api.PowerAction) func(*pflag.FlagSet, *cmd) func(context.Context, []string) error {
	return func(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
		return func(ctx context.Context, _ []string) error {
			if err := c.client.Power(ctx, action); err != nil {
				return err
			}
			if c.json() {
				return c.printJSON(api.Message{Message: string(action) + " requested"})
			}
			fmt.Fprintf(c.env.Stdout, "%s requested\n", action)
			return nil
		}
	}
}

// versions is the JSON form of the version verb.
type versions struct {
	Client string           `json:"client"`
	Server *api.VersionInfo `json:"server,omitempty"`
}

func setupVersion(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
	return func(ctx context.Context, _ []string) error {
		v := versions{Client: c.env.Version}
		server, err := c.client.Version(ctx)
		if err == nil {
			v.Server = &server
		}
		if c.json() {
			if perr := c.printJSON(v); perr != nil {
				return perr
			}
		} else {
			fmt.Fprintf(c.env.Stdout, "photonctl %s\n", v.Client)
			if v.Server != nil {
				fmt.Fprintf(c.env.Stdout, "server: photon-init %s (API %s, %s)\n", server.Version, server.API, server.Go)
			}
		}
		return err
	}
}

func setupCompletion(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if args[0] != "bash" {
			return usagef("completion: only bash is supported, not %q", args[0])
		}
		_, err := io.WriteString(c.env.Stdout, BashCompletion())
		return err
	}
}

func setupExec(fs *pflag.FlagSet, c *cmd) func(context.Context, []string) error {
	interactive := fs.BoolP("interactive", "i", false, "connect standard input to the command")
	tty := fs.BoolP("tty", "t", false, "give the command a terminal")
	env := fs.StringArrayP("env", "e", nil, "set `KEY=VALUE` in the command's environment (repeatable)")
	workdir := fs.StringP("workdir", "w", "", "run in `DIR` inside the container")
	user := fs.StringP("user", "u", "", "run as `USER[:GROUP]`")
	return func(ctx context.Context, args []string) error {
		for _, kv := range *env {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				return usagef("exec: --env: %q is not KEY=VALUE", kv)
			}
		}
		opts := api.ExecOptions{
			Cmd: args[1:], Env: *env, WorkingDir: *workdir, User: *user,
			TTY: *tty, Stdin: *interactive,
		}
		stdio := client.ExecIO{Stdout: c.env.Stdout, Stderr: c.env.Stderr}
		if *interactive {
			stdio.Stdin = c.env.Stdin
		}
		if *tty {
			if term := openTerminal(c.env.Stdin, c.env.Stdout); term != nil {
				if size, err := term.size(); err == nil {
					opts.Size = size
				}
				if *interactive {
					restore, err := term.makeRaw()
					if err != nil {
						return &exitError{code: ExitExecFailed, err: fmt.Errorf("exec: terminal: %w", err)}
					}
					defer restore()
				}
				if c.env.WatchResize {
					resize, stop := term.watchResize(c.env.Log)
					defer stop()
					stdio.Resize = resize
				}
			}
		}
		code, err := c.client.Exec(ctx, args[0], opts, stdio)
		if err != nil {
			return &exitError{code: ExitExecFailed, err: err}
		}
		return &exitError{code: code}
	}
}
