package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/safe"
	"github.com/photon-init/photon-init/pkg/boot/console"
	"github.com/photon-init/photon-init/pkg/boot/power"
	"github.com/photon-init/photon-init/pkg/boot/reaper"
	"github.com/photon-init/photon-init/pkg/boot/timeline"
	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/mounts"
	"github.com/photon-init/photon-init/pkg/net/hostnet"
)

// TimelinePath is where the boot timeline is written as JSON.
const TimelinePath = "/run/photon/timeline.json"

// Options configure a boot.
type Options struct {
	// Version is shown on the console.
	Version string
	// PID1Start is timeline.Now() taken first thing in main.
	PID1Start time.Duration
	// Sandbox is "boot --force" outside a real machine, or PID 1 of a child
	// PID namespace: nothing that changes the host kernel is done (modules,
	// sysctl, host name, Ctrl-Alt-Del), and the shutdown ends with exit(0).
	Sandbox bool
	// ConfigPath is the machine configuration; "" means config.DefaultPath.
	ConfigPath string
	// LoadModules loads the declared modules (package kmod): init.yaml's,
	// and what the workload needs (overlay, bridge networking). Nil skips
	// module loading, coldplug included.
	LoadModules func(ctx context.Context, log *slog.Logger, declared []string) error
	// Coldplug loads the modules of the devices present and of those their
	// drivers create. Nil skips it.
	Coldplug func(ctx context.Context, log *slog.Logger) error
	// Reaper is the one owner of wait(2) in PID 1; Main runs it before
	// anything else. Nil means New with the machine's logger. Whatever
	// starts processes later (containers) must start them through it.
	Reaper *reaper.Reaper
	// Workload is what the machine runs once booted (the container
	// supervisor); nil runs nothing.
	Workload Workload
	// TimelinePath is where the timeline is written; "" means
	// TimelinePath.
	TimelinePath string
	// AfterBoot, when set, is called once the boot is complete (every
	// step done, the background ones included): the place to switch from
	// settings that favour the boot's speed to those of a long-running
	// supervisor (the garbage collector's target).
	AfterBoot func()
}

// Workload is what a booted machine runs. Start is a boot step: it must
// start the work and return, not wait for it. Stop is the first shutdown
// step.
type Workload interface {
	Start(ctx context.Context, env WorkloadEnv) error
	Stop(ctx context.Context) error
}

// WorkloadEnv is what the machine gives its workload.
type WorkloadEnv struct {
	Log *slog.Logger
	// Console takes raw lines (container output); writes never block.
	Console io.Writer
	// Reaper must create every child process.
	Reaper *reaper.Reaper
	// Config is the machine configuration (never nil).
	Config *config.Config
	// Sandbox is true when the machine is not a real one (see Options).
	Sandbox bool
	// Machine is the machine itself: its boot timeline and power
	// requests, for the control socket.
	Machine *Machine
	// Network is the machine's network: Online for depends_on:
	// network-online, ResolvConf for containers' copies. Nil when the
	// network step did not run; a nil Manager is never online.
	Network *hostnet.Manager
}

// Machine is the state of a booting and running machine.
type Machine struct {
	opts     Options
	log      *slog.Logger
	level    *slog.LevelVar
	console  *console.Console
	timeline *timeline.Timeline
	requests chan power.Request

	mu       sync.Mutex
	cmdline  Cmdline
	config   *config.Config
	settings Settings
	network  *hostnet.Manager
	// sysctlMissing are sysctl keys that did not exist when the sysctl
	// step ran (a module's or a device's); the devices step applies them
	// again after coldplug.
	sysctlMissing []string

	// background counts the running background steps (Step.Background).
	background sync.WaitGroup

	debug debugConsole // the debug shell on the console (debugshell.go)
}

// Step is one step of the boot plan.
type Step struct {
	Name string
	Run  func(m *Machine, ctx context.Context) error
	// Fatal steps put the machine in the emergency state when they fail.
	Fatal bool
	// Machine steps change the kernel's global state; sandbox mode skips
	// them.
	Machine bool
	// Background steps start with their phase, but the phases after it
	// do not wait for them: a step that needs a background step's work
	// waits for that work itself. The plan (and the boot) is over when
	// they are done too. Their failures are reported, never fatal.
	Background bool
}

// Phase is a group of steps that run in parallel; phases run in order.
type Phase struct {
	Name  string
	Steps []Step
}

// Plan is the boot sequence. Coldplug (the devices step) runs in the
// background at a low CPU priority: nothing up to the containers needs the
// machine's devices unless storage is configured, and the mounts step then
// waits for it; network links are configured as they appear.
func Plan() []Phase {
	return []Phase{
		{"early", []Step{{Name: "apifs", Run: (*Machine).mountAPI, Fatal: true}}},
		{"setup", []Step{{Name: "cmdline", Run: (*Machine).readCmdline}}},
		{"config", []Step{
			{Name: "config", Run: (*Machine).loadConfig},
			{Name: "debug-shell", Run: (*Machine).startDebugShell},
		}},
		{"system", []Step{
			{Name: "modules", Run: (*Machine).loadModules, Machine: true},
			{Name: "hostname", Run: (*Machine).setHostname, Machine: true},
			{Name: "rlimits", Run: (*Machine).setRlimits},
			{Name: "entropy", Run: (*Machine).checkEntropy},
		}},
		{"devices", []Step{{Name: "coldplug", Run: (*Machine).coldplug, Machine: true, Background: true}}},
		{"storage", []Step{{Name: "mounts", Run: (*Machine).mountStorage}}},
		{"late", []Step{{Name: "sysctl", Run: (*Machine).applySysctl, Machine: true}}},
		{"network", []Step{{Name: "network", Run: (*Machine).startNetwork}}},
		{"workload", []Step{{Name: "containers", Run: (*Machine).startWorkload}}},
	}
}

// Main is PID 1: it boots the machine and then serves power requests for
// ever. It never returns on a real machine; in sandbox mode the process
// exits at the end of a shutdown.
func Main(opts Options) {
	m := newMachine(opts, os.Stderr)
	mode := "as PID 1"
	if opts.Sandbox {
		mode = fmt.Sprintf("in sandbox mode (pid %d)", os.Getpid())
	}
	m.notice(fmt.Sprintf("photon-init %s starting %s (uptime %.3fs)", opts.Version, mode, opts.PID1Start.Seconds()))

	ctx := context.Background()
	m.handleSignals(ctx)
	if m.opts.Reaper == nil {
		m.opts.Reaper = reaper.New(reaper.Options{Log: m.log, Subreaper: os.Getpid() != 1})
	}
	safe.Go(m.log, "reaper", func() {
		if err := m.opts.Reaper.Run(ctx); err != nil {
			m.log.Error("reaper stopped", "err", err)
		}
	})
	safe.Go(m.log, "boot", func() { m.boot(ctx) })
	for {
		if err := safe.Call("pid1", func() error { m.serve(); return nil }); err != nil {
			m.log.Error(err.Error())
			time.Sleep(100 * time.Millisecond) // never spin on a repeating panic
		}
	}
}

// newMachine returns a machine whose console starts out on w.
func newMachine(opts Options, w io.Writer) *Machine {
	if opts.ConfigPath == "" {
		opts.ConfigPath = config.DefaultPath
	}
	if opts.TimelinePath == "" {
		opts.TimelinePath = TimelinePath
	}
	m := &Machine{
		opts:     opts,
		level:    new(slog.LevelVar),
		console:  console.New(w),
		timeline: timeline.New(opts.PID1Start, nil),
		requests: make(chan power.Request, 8),
	}
	m.log = slog.New(console.NewHandler(m.console, m.level, timeline.Now))
	return m
}

// boot runs the plan, then reports the boot complete.
func (m *Machine) boot(ctx context.Context) { m.bootPlan(ctx, Plan()) }

// bootPlan runs plan, then reports the boot complete and calls AfterBoot;
// a fatal failure ends in the emergency state instead.
func (m *Machine) bootPlan(ctx context.Context, plan []Phase) {
	if err := m.runPlan(ctx, plan); err != nil {
		m.emergency(err)
		return
	}
	if err := m.timeline.WriteFile(m.opts.TimelinePath); err != nil {
		m.log.Warn("timeline", "err", err)
	}
	var b strings.Builder
	m.timeline.Format(&b)
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		m.log.Info(line)
	}
	sinceKernel, sincePID1 := m.timeline.Complete()
	if err := m.timeline.WriteFile(m.opts.TimelinePath); err != nil {
		m.log.Warn("timeline", "err", err)
	}
	m.notice(fmt.Sprintf("boot complete: %.3fs since kernel start, %.3fs since PID-1 start", sinceKernel.Seconds(), sincePID1.Seconds()))
	if m.opts.AfterBoot != nil {
		if err := safe.Call("after boot", func() error { m.opts.AfterBoot(); return nil }); err != nil {
			m.log.Error(err.Error())
		}
	}
}

// notice shows a line of the machine's life at every level but quiet.
func (m *Machine) notice(msg string) {
	m.log.Log(context.Background(), console.LevelNotice, msg)
}

// runPlan runs phases in order and the steps of a phase in parallel (see
// Step.Background for the steps nothing waits for). It returns the error of
// the first fatal step that failed, after the background steps are done.
func (m *Machine) runPlan(ctx context.Context, plan []Phase) error {
	defer m.background.Wait()
	for _, ph := range plan {
		var wg sync.WaitGroup
		errs := make([]error, len(ph.Steps))
		for i, st := range ph.Steps {
			if st.Machine && m.opts.Sandbox {
				m.log.Debug("sandbox mode: skipping step", "step", st.Name)
				continue
			}
			group := &wg
			if st.Background {
				group = &m.background
			}
			group.Add(1)
			go func() {
				defer group.Done()
				end := m.timeline.Begin(ph.Name, st.Name)
				err := safe.Call(st.Name, func() error { return st.Run(m, ctx) })
				end(err)
				if err != nil {
					m.reportStepError(st.Name, err)
					if !st.Background && (st.Fatal || errors.Is(err, errFatal)) {
						errs[i] = fmt.Errorf("boot step %s: %w", st.Name, err)
					}
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	}
	return nil
}

// waitBackground waits until the background steps started so far are done
// (the devices step: coldplug), or ctx ends. Only foreground steps may call
// it.
func (m *Machine) waitBackground(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		m.background.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errFatal is matched by the error of a step that is not fatal by itself
// but failed in a way the boot cannot go on from (a required mount).
var errFatal = errors.New("fatal")

// fatalError makes a step's error fatal (see errFatal).
type fatalError struct{ error }

func (e fatalError) Unwrap() error        { return e.error }
func (e fatalError) Is(target error) bool { return target == errFatal }

// fatal marks err as one the boot cannot go on from.
func fatal(err error) error { return fatalError{err} }

// reportStepError shows a step's error, one console line per line of it.
func (m *Machine) reportStepError(step string, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		m.log.Error(step + ": " + line)
	}
}

// emergency is where a boot that cannot go on ends: the machine stays up,
// PID 1 keeps reaping and obeying power requests.
func (m *Machine) emergency(err error) {
	m.log.Error(fmt.Sprintf("EMERGENCY: %v", err))
	m.log.Error("EMERGENCY: the boot stopped here; photon-init keeps the machine up, reaping processes and obeying power requests (Ctrl-Alt-Del reboots, the power button and SIGTERM power off)")
	m.emergencyShell(err)
}

// serve carries out power requests for ever.
func (m *Machine) serve() {
	for req := range m.requests {
		m.shutdown(req)
	}
}

// shutdown runs the shutdown sequence; it returns only if reboot(2) failed.
func (m *Machine) shutdown(req power.Request) {
	s := &power.Shutdown{
		Log:             m.log,
		Grace:           5 * time.Second,
		SyncTimeout:     10 * time.Second,
		UnmountTimeout:  2 * time.Second,
		SignalProcesses: os.Getpid() == 1, // kill(-1) only as PID 1 of a PID namespace
		Unmount:         !m.opts.Sandbox,
		Flush:           func() { m.console.Flush(2 * time.Second) },
	}
	if w := m.opts.Workload; w != nil {
		s.Before = append(s.Before, power.Step{Name: "stop-containers", Timeout: 2 * time.Minute, Run: w.Stop})
	}
	if n := m.Network(); n != nil {
		s.Before = append(s.Before, power.Step{Name: "release-dhcp", Timeout: 5 * time.Second, Run: n.Stop})
	}
	if m.opts.Sandbox {
		s.Reboot = func(int) error {
			m.log.Info("sandbox mode: exiting instead of reboot(2)")
			m.console.Flush(2 * time.Second)
			os.Exit(0)
			return nil
		}
	}
	if err := s.Run(req); err != nil {
		m.log.Error("shutdown failed; the machine stays up and obeys the next request", "err", err)
	}
}

// handleSignals turns power signals into requests, and catches every other
// signal that would otherwise end the process: the Go runtime exits on an
// unexpected SIGHUP or SIGQUIT, and PID 1 exiting is a kernel panic.
// (signal.Ignore would be inherited by every child as SIG_IGN.)
func (m *Machine) handleSignals(ctx context.Context) {
	if !m.opts.Sandbox {
		// Ctrl-Alt-Del sends SIGINT to PID 1 instead of an immediate reboot.
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
			m.log.Warn("reboot(CAD_OFF): Ctrl-Alt-Del will reset the machine at once", "err", err)
		}
	}
	powerCh := make(chan os.Signal, 8)
	signal.Notify(powerCh, power.Signals()...)
	otherCh := make(chan os.Signal, 8)
	signal.Notify(otherCh, survivableSignals()...)
	safe.Go(m.log, "signals", func() {
		for {
			select {
			case sig := <-powerCh:
				if req, ok := power.ForSignal(sig); ok {
					m.Request(req)
				}
			case sig := <-otherCh:
				if sig == unix.SIGQUIT {
					m.dumpGoroutines()
					continue
				}
				m.log.Debug("ignored signal", "signal", power.SignalName(sig.(syscall.Signal)))
			case <-ctx.Done():
				return
			}
		}
	})
}

// Timeline returns the boot timeline as recorded so far.
func (m *Machine) Timeline() timeline.Document { return m.timeline.Document() }

// Request asks for a shutdown; a request made while one is under way is
// dropped.
func (m *Machine) Request(req power.Request) {
	select {
	case m.requests <- req:
	default:
		m.log.Warn("power request dropped: a shutdown is already under way", "action", req.Action.String(), "reason", req.Reason)
	}
}

// survivableSignals are the signals whose default action ends a process and
// that PID 1 must therefore catch, apart from the power signals. glibc's two
// internal real-time signals (32, 33) and SIGPROF (the runtime's) are left.
func survivableSignals() []os.Signal {
	sigs := []os.Signal{unix.SIGHUP, unix.SIGQUIT, unix.SIGPIPE, unix.SIGALRM, unix.SIGVTALRM,
		unix.SIGXCPU, unix.SIGXFSZ, unix.SIGSTKFLT, unix.SIGIO, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU}
	taken := map[os.Signal]bool{}
	for _, s := range power.Signals() {
		taken[s] = true
	}
	for s := syscall.Signal(34); s <= 64; s++ {
		if !taken[s] {
			sigs = append(sigs, s)
		}
	}
	return sigs
}

// dumpGoroutines writes every goroutine's stack to the console (SIGQUIT), the
// debugging aid Go programs usually give by exiting.
func (m *Machine) dumpGoroutines() {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	m.log.Info("SIGQUIT: goroutine stacks follow")
	m.console.Write(buf[:n])
}

// mountAPI mounts the API filesystems. On an initramfs root it first makes
// / a mount of its own, so that containers can pivot_root away from it.
func (m *Machine) mountAPI(ctx context.Context) error {
	if !m.opts.Sandbox {
		if initramfs, err := mounts.IsInitramfsRoot(); err != nil {
			m.log.Warn("apifs", "err", err)
		} else if initramfs {
			if err := mounts.MakeRootPivotable(); err != nil {
				m.log.Warn("apifs: the initramfs root stays as it is; containers will not be able to pivot_root", "err", err)
			}
		}
	}
	warnings, fatal := mounts.Create("/", mounts.APIFilesystems())
	for _, w := range warnings {
		m.log.Warn("apifs", "err", w)
	}
	return fatal
}
