package container

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	// The test binary is also libcontainer's "init" re-exec: nsenter's
	// constructor joins the container's namespaces before Go starts.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/internal/nstest"
	"github.com/photon-init/photon-init/pkg/boot/reaper"
	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/logs"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
	"github.com/photon-init/photon-init/pkg/net/link"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		// libcontainer re-executes this binary as "ARGV0 init" to set up
		// a container; Init never returns.
		libcontainer.Init()
	}
}

// envProbe passes the probe binary's path to the tests' namespace
// children.
const envProbe = "PHOTON_CONTAINER_TEST_PROBE"

var (
	probeOnce sync.Once
	probeDir  string
	probeErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if probeDir != "" {
		os.RemoveAll(probeDir)
	}
	os.Exit(code)
}

// probeBinary builds testdata/probe (static) once per test binary and
// exports its path to the namespace children.
func probeBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envProbe); p != "" {
		return p
	}
	probeOnce.Do(func() {
		probeDir, probeErr = os.MkdirTemp("", "photon-probe-")
		if probeErr != nil {
			return
		}
		out := filepath.Join(probeDir, "probe")
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./testdata/probe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			probeErr = fmt.Errorf("build the probe: %v\n%s", err, b)
			return
		}
		probeErr = os.Setenv(envProbe, out)
	})
	if probeErr != nil {
		t.Fatal(probeErr)
	}
	return os.Getenv(envProbe)
}

// lockedBuffer is a console for tests.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the console lines of one container, without the prefix.
func (b *lockedBuffer) lines(name string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "["+name+"] "); ok {
			out = append(out, rest)
		}
	}
	return out
}

// lineCapture is a log destination that records every line of one
// container as the console would show it ("[NAME] TEXT", "[NAME]+ TEXT"
// for a continued piece), without the console's rate limit, so that tests
// see all of the output.
type lineCapture struct {
	name string
	buf  *lockedBuffer
}

func (d lineCapture) Write(lines []logs.Line) error {
	for _, l := range lines {
		sep := " "
		if l.Continued {
			sep = "+ "
		}
		d.buf.Write([]byte("[" + d.name + "]" + sep + string(l.Text) + "\n"))
	}
	return nil
}

func (lineCapture) Close() error { return nil }

// testEnv is a runtime in the test's own namespaces.
type testEnv struct {
	rt *Runtime
	// console holds every output line of the containers (lineCapture);
	// the runtime's rate-limited console goes to realConsole.
	console     *lockedBuffer
	realConsole *lockedBuffer
	dir         string
	probe       string
	cgParent    string
}

// rootEnv re-runs the test in new mount, PID and network namespaces
// (returning nil in the parent) and gives the child a Runtime under a
// temporary directory, with its own reaper and a test cgroup parent that
// is removed afterwards. (Bridge networking, the default, makes its
// bridge and nftables table in the test's network namespace.)
// before, if given, runs in the child before the Runtime is made.
func rootEnv(t *testing.T, before ...func(t *testing.T)) *testEnv {
	t.Helper()
	probe := probeBinary(t)
	if !nstest.Run(t, unix.CLONE_NEWNS|unix.CLONE_NEWPID|unix.CLONE_NEWNET) {
		return nil
	}
	nstest.Private(t)
	if err := link.LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		t.Fatalf("mount /proc: %v", err)
	}
	for _, f := range before {
		f(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := reaper.New(reaper.Options{Subreaper: true})
	go r.Run(ctx)
	t.Cleanup(cancel)

	dir := t.TempDir()
	e := &testEnv{
		console:     &lockedBuffer{},
		realConsole: &lockedBuffer{},
		dir:         dir,
		probe:       probe,
		cgParent:    fmt.Sprintf("/photon-test-%d", time.Now().UnixNano()),
	}
	t.Cleanup(func() { removeCgroupParent(t, e.cgParent) })
	// The runtime makes the netns directory a bind mount of itself.
	t.Cleanup(func() { unix.Unmount(filepath.Join(dir, "netns"), unix.MNT_DETACH) })
	os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 192.0.2.53\n"), 0o644)
	rt, err := New(Options{
		StateDir:     filepath.Join(dir, "state"),
		NotifyDir:    filepath.Join(dir, "notify"),
		DataDir:      filepath.Join(dir, "data"),
		LogDir:       filepath.Join(dir, "log"),
		CgroupParent: e.cgParent,
		ResolvConf:   filepath.Join(dir, "resolv.conf"),
		Reaper:       r,
		Log:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Console:      e.realConsole,
		LogDestinations: func(name string) []logs.Destination {
			return []logs.Destination{lineCapture{name, e.console}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.rt = rt
	return e
}

// removeCgroupParent removes the test's parent cgroup in every hierarchy.
func removeCgroupParent(t *testing.T, parent string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	if cgroups.IsCgroup2UnifiedMode() {
		dirs = []string{"/sys/fs/cgroup" + parent}
	}
	for _, d := range dirs {
		if err := cgroups.RemovePath(d); err != nil {
			t.Errorf("remove test cgroup %s: %v", d, err)
		}
	}
}

// testImage is a one-layer image: the probe as /probe, an app user and
// group, and some files.
func (e *testEnv) testImage(t *testing.T) *image.Image {
	t.Helper()
	layer := filepath.Join(t.TempDir(), "layer0")
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n",
		"etc/group":      "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
		"data/seed.txt":  "seeded by the image\n",
		"home/app/.keep": "",
		"tmp/.keep":      "",
	}
	for p, c := range files {
		full := filepath.Join(layer, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(layer, "tmp"), 0o1777)
	os.Chown(filepath.Join(layer, "home/app"), 1000, 1000)
	copyExecutable(t, e.probe, filepath.Join(layer, "probe"))
	return &image.Image{
		Ref: "test/probe", Digest: "sha256:probe", Layers: []string{layer},
		Config: image.Config{Entrypoint: []string{"/probe"}, Env: []string{"IMAGE_VAR=from-image", "SHARED=image"}},
	}
}

func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// run creates and starts a container, waits for it and destroys it.
func (e *testEnv) run(t *testing.T, m *manifest.Container, img *image.Image) Exit {
	t.Helper()
	c := e.start(t, m, img)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	exit, err := c.Wait(ctx)
	if err != nil {
		t.Fatalf("wait for %s: %v", m.Name, err)
	}
	if err := c.Destroy(); err != nil {
		t.Fatalf("destroy %s: %v", m.Name, err)
	}
	return exit
}

// start creates and starts a container that the test's cleanup destroys.
func (e *testEnv) start(t *testing.T, m *manifest.Container, img *image.Image) *Container {
	t.Helper()
	c, err := e.rt.Create(context.Background(), m, img)
	if err != nil {
		t.Fatalf("create %s: %v", m.Name, err)
	}
	t.Cleanup(func() { c.Destroy() })
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("start %s: %v", m.Name, err)
	}
	return c
}

// report parses probe report lines into a map (env lines into env).
func report(lines []string) (map[string]string, []string) {
	kv := map[string]string{}
	var env []string
	for _, l := range lines {
		k, v, _ := strings.Cut(l, "=")
		if k == "env" {
			env = append(env, v)
			continue
		}
		kv[k] = v
	}
	return kv, env
}

func TestRunExitCodeAndLogs(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	if exit := e.run(t, &manifest.Container{Name: "exits", Command: []string{"exit", "3"}}, img); exit.Code != 3 || exit.Signal != 0 || exit.OOM {
		t.Errorf("exit %v, want exit 3", exit)
	}
	long := strings.Repeat("y", logs.DefaultMaxLine+10)
	if exit := e.run(t, &manifest.Container{Name: "talks", Command: []string{"out", "first line", "second line", long}}, img); exit.Code != 0 {
		t.Errorf("exit %v", exit)
	}
	e.run(t, &manifest.Container{Name: "errs", Command: []string{"err", "to stderr"}}, img)
	e.run(t, &manifest.Container{Name: "partial", Command: []string{"partial", "no newline at the end"}}, img)

	got := e.console.lines("talks")
	if len(got) != 3 || got[0] != "first line" || got[1] != "second line" || got[2] != long[:logs.DefaultMaxLine] {
		t.Errorf("console lines of talks: %.200q", got)
	}
	if !slices.Contains(e.console.lines("errs"), "to stderr") {
		t.Errorf("stderr not on the console: %q", e.console.lines("errs"))
	}
	if !slices.Contains(e.console.lines("partial"), "no newline at the end") {
		t.Errorf("partial line not on the console: %q", e.console.lines("partial"))
	}
	b, err := os.ReadFile(filepath.Join(e.dir, "log", "talks.log"))
	if err != nil {
		t.Fatal(err)
	}
	var recs []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		l, err := logs.ParseRecord([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		tag := "F"
		if l.Partial {
			tag = "P"
		}
		recs = append(recs, fmt.Sprintf("%s %s %d", l.Stream, tag, len(l.Text)))
	}
	want := []string{"stdout F 10", "stdout F 11", fmt.Sprintf("stdout P %d", logs.DefaultMaxLine), "stdout F 10"}
	if !slices.Equal(recs, want) {
		t.Errorf("log file records %v, want %v", recs, want)
	}
	b, _ = os.ReadFile(filepath.Join(e.dir, "log", "errs.log"))
	if !strings.Contains(string(b), " stderr F to stderr\n") {
		t.Errorf("errs.log: %q", b)
	}
	if st, err := os.Stat(filepath.Join(e.dir, "log", "errs.log")); err != nil || st.Mode().Perm()&0o137 != 0 {
		t.Errorf("log file mode: %v %v", st.Mode(), err)
	}
}

func TestProcessEnvironmentUserAndFiles(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	img.Config.User = "root"
	img.Config.WorkingDir = "/image-dir"
	m := &manifest.Container{
		Name: "reporter", Command: []string{"report"},
		User: "app", WorkingDir: "/work/dir", Hostname: "box",
		Environment: []string{"SHARED=manifest", "EXTRA=1"},
	}
	if exit := e.run(t, m, img); exit.Code != 0 {
		t.Fatalf("exit %v: %q", exit, e.console.lines("reporter"))
	}
	kv, env := report(e.console.lines("reporter"))
	checks := map[string]string{
		"uid": "1000", "gid": "1000", "groups": "2000", "cwd": "/work/dir", "hostname": "box", "pid": "1",
		"NoNewPrivs": "1", "CapEff": "0000000000000000", // non-root: no effective capabilities
	}
	for k, want := range checks {
		if kv[k] != want {
			t.Errorf("%s = %q, want %q", k, kv[k], want)
		}
	}
	wantEnv := []string{"PATH=" + DefaultPath, "HOSTNAME=box", "IMAGE_VAR=from-image", "SHARED=manifest", "NOTIFY_SOCKET=" + NotifySocketPath, "EXTRA=1", "HOME=/home/app"}
	if !slices.Equal(env, wantEnv) {
		t.Errorf("env %q\nwant %q", env, wantEnv)
	}

	// The generated /etc files, seen from inside.
	e.run(t, &manifest.Container{Name: "etc", Command: []string{"cat", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}}, img)
	out := strings.Join(e.console.lines("etc"), "\n")
	for _, want := range []string{"etc\n", "127.0.0.1\tlocalhost", "10.88.0.3\tetc\n" /* bridged: its address */, "nameserver 192.0.2.53"} {
		if !strings.Contains(out, want) {
			t.Errorf("/etc files lack %q:\n%s", want, out)
		}
	}

	// Root: Docker's capabilities, effective.
	e.run(t, &manifest.Container{Name: "rootcaps", Command: []string{"report"}}, img)
	kv, _ = report(e.console.lines("rootcaps"))
	if kv["CapEff"] != "00000000a80425fb" || kv["CapBnd"] != "00000000a80425fb" {
		t.Errorf("root capabilities eff %s bnd %s, want Docker's a80425fb", kv["CapEff"], kv["CapBnd"])
	}
	if kv["cwd"] != "/image-dir" || kv["uid"] != "0" {
		t.Errorf("image working dir / user: %v", kv)
	}
	wantSeccomp := "0"
	if SeccompEnabled {
		wantSeccomp = "2"
	}
	if kv["Seccomp"] != wantSeccomp {
		t.Errorf("Seccomp: %s, want %s", kv["Seccomp"], wantSeccomp)
	}
	if denied := kv["keyctl"] == "operation not permitted"; denied != SeccompEnabled {
		t.Errorf("keyctl: %s with seccomp %v", kv["keyctl"], SeccompEnabled)
	}
	t.Logf("seccomp built in: %v; keyctl in a container: %s", SeccompEnabled, kv["keyctl"])
}

func TestStop(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	ctx := context.Background()

	// A PID 1 that does not react to SIGTERM is killed after grace.
	c := e.start(t, &manifest.Container{Name: "stubborn", Command: []string{"ignore"}, StopGracePeriod: 300 * time.Millisecond}, img)
	waitLine(t, e.console, "stubborn", "ignoring")
	if c.Pid() <= 0 {
		t.Fatalf("Pid %d", c.Pid())
	}
	start := time.Now()
	if err := c.Stop(ctx, 0, 0); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	exit, err := c.Wait(ctx)
	if err != nil || exit.Signal != unix.SIGKILL || exit.Code != 137 {
		t.Errorf("exit %v %v, want SIGKILL", exit, err)
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("stop took %v with a 300ms grace", took)
	}
	if c.Pid() != 0 {
		t.Errorf("Pid after exit %d", c.Pid())
	}
	if err := c.Signal(unix.SIGTERM); err == nil {
		t.Error("signalling an exited container succeeded")
	}

	// A handler: the stop signal ends it at once.
	c = e.start(t, &manifest.Container{Name: "polite", Command: []string{"trap"}}, img)
	waitLine(t, e.console, "polite", "trapping")
	start = time.Now()
	if err := c.Stop(ctx, 0, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	exit, _ = c.Wait(ctx)
	if exit.Code != 0 || time.Since(start) > 2*time.Second {
		t.Errorf("exit %v after %v", exit, time.Since(start))
	}
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := c.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}

	// Destroy kills a running container and removes its state.
	c = e.start(t, &manifest.Container{Name: "doomed", Command: []string{"sleep"}}, img)
	waitLine(t, e.console, "doomed", "sleeping")
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	exit, _ = c.Wait(ctx)
	if exit.Signal != unix.SIGKILL {
		t.Errorf("destroyed container exit %v", exit)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "state", "doomed")); !os.IsNotExist(err) {
		t.Errorf("libcontainer state left: %v", err)
	}
	if isMountPoint(c.Rootfs()) {
		t.Error("rootfs still mounted after Destroy")
	}
}

// waitLine waits until the container has printed line.
func waitLine(t *testing.T, b *lockedBuffer, name, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(b.lines(name), line) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never printed %q: %q", name, line, b.lines(name))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCgroupLimits(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	m := &manifest.Container{Name: "limited", Command: []string{"sleep"}, MemLimit: 64 << 20, PidsLimit: 20, Cpus: 0.5}
	c := e.start(t, m, img)
	waitLine(t, e.console, "limited", "sleeping")
	st, err := c.lc.State()
	if err != nil {
		t.Fatal(err)
	}
	read := func(controller, file string) string {
		dir := st.CgroupPaths[controller]
		if cgroups.IsCgroup2UnifiedMode() {
			dir = st.CgroupPaths[""]
		}
		if !strings.HasSuffix(dir, e.cgParent+"/limited") {
			t.Errorf("cgroup %s not under the parent %s", dir, e.cgParent)
		}
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if cgroups.IsCgroup2UnifiedMode() {
		if v := read("", "memory.max"); v != "67108864" {
			t.Errorf("memory.max %s", v)
		}
		if v := read("", "pids.max"); v != "20" {
			t.Errorf("pids.max %s", v)
		}
		if v := read("", "cpu.max"); v != "50000 100000" {
			t.Errorf("cpu.max %s", v)
		}
	} else {
		if v := read("memory", "memory.limit_in_bytes"); v != "67108864" {
			t.Errorf("memory.limit_in_bytes %s", v)
		}
		if v := read("pids", "pids.max"); v != "20" {
			t.Errorf("pids.max %s", v)
		}
		if v := read("cpu", "cpu.cfs_quota_us"); v != "50000" {
			t.Errorf("cpu.cfs_quota_us %s", v)
		}
	}
	if err := c.Destroy(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range st.CgroupPaths {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("cgroup %s left after Destroy: %v", dir, err)
		}
	}

	// The pids limit holds inside.
	e.start(t, &manifest.Container{Name: "forks", Command: []string{"fork", "40"}, PidsLimit: 10}, img)
	deadline := time.Now().Add(10 * time.Second)
	var started string
	for started == "" && time.Now().Before(deadline) {
		for _, l := range e.console.lines("forks") {
			if n, ok := strings.CutPrefix(l, "started "); ok {
				started = n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if started == "" || started == "40" {
		t.Errorf("started %q children under pids_limit 10", started)
	}

	// Out of memory: the exit says so.
	exit := e.run(t, &manifest.Container{Name: "hog", Command: []string{"alloc", "256"}, MemLimit: 32 << 20}, img)
	if !exit.OOM || exit.Signal != unix.SIGKILL {
		t.Errorf("exit of a container over its memory limit: %v", exit)
	}
}

func TestReadOnlyRootfsAndTmpfs(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	exit := e.run(t, &manifest.Container{Name: "ro", Command: []string{"write", "/file", "x"}, ReadOnly: true}, img)
	if exit.Code != 1 || !strings.Contains(strings.Join(e.console.lines("ro"), "\n"), "read-only file system") {
		t.Errorf("write to a read-only root: %v %q", exit, e.console.lines("ro"))
	}
	exit = e.run(t, &manifest.Container{Name: "rotmp", Command: []string{"write", "/scratch/file", "x"}, ReadOnly: true,
		Tmpfs: []string{"/scratch:size=1048576"}}, img)
	if exit.Code != 0 {
		t.Errorf("write to a tmpfs in a read-only container: %v %q", exit, e.console.lines("rotmp"))
	}
	exit = e.run(t, &manifest.Container{Name: "rw", Command: []string{"write", "/file", "x"}}, img)
	if exit.Code != 0 {
		t.Errorf("write to a writable root: %v %q", exit, e.console.lines("rw"))
	}
}

func TestVolumes(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	img.Config.Volumes = []string{"/anon"}
	vol := []manifest.Volume{{Type: manifest.VolumeNamed, Source: "shared", Target: "/data"}}
	exit := e.run(t, &manifest.Container{Name: "writer", Command: []string{"write", "/data/new.txt", "from writer"}, Volumes: vol}, img)
	if exit.Code != 0 {
		t.Fatalf("writer: %v %q", exit, e.console.lines("writer"))
	}
	// Another container sees the image's seed (copied into the new
	// volume) and the first one's file.
	exit = e.run(t, &manifest.Container{Name: "reader", Command: []string{"cat", "/data/seed.txt", "/data/new.txt"}, Volumes: vol}, img)
	got := e.console.lines("reader")
	if exit.Code != 0 || !slices.Equal(got, []string{"seeded by the image", "from writer"}) {
		t.Errorf("reader: %v %q", exit, got)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "data", "volumes", "shared", "new.txt")); err != nil {
		t.Errorf("named volume on the host: %v", err)
	}

	// A bind mount (created when missing), read-only.
	host := filepath.Join(e.dir, "hostdir")
	exit = e.run(t, &manifest.Container{Name: "bind", Command: []string{"write", "/mnt/x", "y"},
		Volumes: []manifest.Volume{{Type: manifest.VolumeBind, Source: host, Target: "/mnt", ReadOnly: true}}}, img)
	if exit.Code != 1 {
		t.Errorf("write to a read-only bind: %v", exit)
	}
	if st, err := os.Stat(host); err != nil || !st.IsDir() {
		t.Errorf("bind source not created: %v", err)
	}

	// The image's volume is an anonymous volume of the container.
	exit = e.run(t, &manifest.Container{Name: "anon", Command: []string{"write", "/anon/f", "z"}}, img)
	if exit.Code != 0 {
		t.Errorf("write to the anonymous volume: %v %q", exit, e.console.lines("anon"))
	}
	if b, err := os.ReadFile(filepath.Join(e.dir, "data", "containers", "anon", "volumes", "anon", "f")); err != nil || string(b) != "z" {
		t.Errorf("anonymous volume content %q %v", b, err)
	}
	// A changed manifest gets a fresh writable layer but keeps the
	// anonymous volume (as Compose); Remove discards it.
	exit = e.run(t, &manifest.Container{Name: "anon", Command: []string{"cat", "/anon/f"}}, img)
	if got := e.console.lines("anon"); exit.Code != 0 || got[len(got)-1] != "z" {
		t.Errorf("anonymous volume after a manifest change: %v %q", exit, got)
	}
	if err := e.rt.Remove("anon"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "data", "containers", "anon")); !os.IsNotExist(err) {
		t.Errorf("Remove left %v", err)
	}
}

func TestNetworkNone(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	e.run(t, &manifest.Container{Name: "isolated", Command: []string{"report"}, NetworkMode: "none"}, img)
	kv, _ := report(e.console.lines("isolated"))
	if kv["links"] != "lo:up" {
		t.Errorf("links in network_mode none: %q, want lo:up only", kv["links"])
	}
	e.run(t, &manifest.Container{Name: "hostnet", Command: []string{"report"}, NetworkMode: "host"}, img)
	kv, _ = report(e.console.lines("hostnet"))
	hostLinks, _ := net.Interfaces()
	if n := len(strings.Split(kv["links"], ",")); n != len(hostLinks) {
		t.Errorf("host network: %q, the machine has %d links", kv["links"], len(hostLinks))
	}
}

func TestWritableLayerKeptUntilManifestChanges(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	m := &manifest.Container{Name: "keeper", Command: []string{"write", "/state.txt", "kept"}}
	e.run(t, m, img)
	check := func(want int) {
		t.Helper()
		c, err := e.rt.Create(context.Background(), m, img)
		if err != nil {
			t.Fatal(err)
		}
		_, err = os.Stat(filepath.Join(c.Rootfs(), "state.txt"))
		if (err == nil) != (want == 1) {
			t.Errorf("state.txt present: %v, want %v", err == nil, want == 1)
		}
		c.Destroy()
	}
	check(1) // re-created from the same manifest: the layer is kept
	m.Environment = []string{"CHANGED=1"}
	check(0) // a changed manifest starts afresh
	// Remove discards the layer on request.
	m.Environment = nil
	e.run(t, m, img)
	check(1)
	if err := e.rt.Remove("keeper"); err != nil {
		t.Fatal(err)
	}
	check(0)
}

func TestDuplicateAndCleanup(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	m := &manifest.Container{Name: "once", Command: []string{"sleep"}}
	c := e.start(t, m, img)
	waitLine(t, e.console, "once", "sleeping")
	if _, err := e.rt.Create(context.Background(), m, img); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second Create: %v", err)
	}
	if err := e.rt.Remove("once"); err == nil {
		t.Error("Remove of a live container succeeded")
	}

	// A new runtime over the same directories (photon-init restarted)
	// kills and removes what the first one left.
	rt2, err := New(e.rt.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt2.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	exit, err := c.Wait(context.Background())
	if err != nil || exit.Signal != unix.SIGKILL {
		t.Errorf("exit after cleanup: %v %v", exit, err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "state", "once")); !os.IsNotExist(err) {
		t.Errorf("state after cleanup: %v", err)
	}
	if isMountPoint(c.Rootfs()) {
		t.Error("rootfs mounted after cleanup")
	}
	c2, err := rt2.Create(context.Background(), m, img)
	if err != nil {
		t.Fatal(err)
	}
	c2.Destroy()
}

func TestFlattenFallback(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	// A second layer with a whiteout and an opaque directory.
	base := img.Layers[0]
	os.MkdirAll(filepath.Join(base, "opq"), 0o755)
	os.WriteFile(filepath.Join(base, "opq", "old.txt"), []byte("old"), 0o644)
	os.WriteFile(filepath.Join(base, "gone.txt"), []byte("gone"), 0o644)
	os.Symlink("/data/seed.txt", filepath.Join(base, "link"))
	upper := filepath.Join(t.TempDir(), "layer1")
	os.MkdirAll(filepath.Join(upper, "opq"), 0o755)
	os.WriteFile(filepath.Join(upper, "opq", "new.txt"), []byte("new\n"), 0o644)
	if err := unix.Setxattr(filepath.Join(upper, "opq"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(upper, "gone.txt"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	img.Layers = append(img.Layers, upper)

	for _, copyMode := range []bool{false, true} {
		e.rt.forceCopy = copyMode
		name := fmt.Sprintf("layers-copy-%v", copyMode)
		c, err := e.rt.Create(context.Background(), &manifest.Container{Name: name, Command: []string{"cat", "/opq/new.txt", "/link"}}, img)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{false: modeOverlay, true: modeCopy}[copyMode]; c.mode != want {
			t.Errorf("mode %s, want %s", c.mode, want)
		}
		root := c.Rootfs()
		for p, want := range map[string]bool{"opq/new.txt": true, "opq/old.txt": false, "gone.txt": false, "data/seed.txt": true, "probe": true} {
			if _, err := os.Lstat(filepath.Join(root, p)); (err == nil) != want {
				t.Errorf("%s: %s present %v, want %v", name, p, err == nil, want)
			}
		}
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		exit, _ := c.Wait(context.Background())
		if got := e.console.lines(name); exit.Code != 0 || !slices.Equal(got, []string{"new", "seeded by the image"}) {
			t.Errorf("%s: %v %q", name, exit, got)
		}
		c.Destroy()
	}
}

func TestStartFailures(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	c, err := e.rt.Create(context.Background(), &manifest.Container{Name: "missing", Command: []string{"/no/such/program"}, Entrypoint: []string{}}, img)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Start(context.Background())
	t.Logf("start error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "/no/such/program") {
		t.Errorf("start of a missing program: %v", err)
	}
	if _, werr := c.Wait(context.Background()); werr == nil {
		t.Error("Wait after a failed start gave no error")
	}
	if err := c.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	if err := c.Destroy(); err != nil {
		t.Errorf("destroy after a failed start: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "state", "missing")); !os.IsNotExist(err) {
		t.Errorf("state left: %v", err)
	}
	// The name is free again.
	if exit := e.run(t, &manifest.Container{Name: "missing", Command: []string{"exit", "0"}}, img); exit.Code != 0 {
		t.Errorf("re-created container: %v", exit)
	}
}

func TestNoPivotRootAndParallelStarts(t *testing.T) {
	e := rootEnv(t)
	if e == nil {
		return
	}
	img := e.testImage(t)
	// The MS_MOVE+chroot entry used when / is the initramfs.
	e.rt.forceNoPivot = true
	if exit := e.run(t, &manifest.Container{Name: "nopivot", Command: []string{"report"}, ReadOnly: true}, img); exit.Code != 0 {
		t.Fatalf("no pivot_root: %v %q", exit, e.console.lines("nopivot"))
	}
	kv, _ := report(e.console.lines("nopivot"))
	if kv["rootfs"] != "ro" || kv["pid"] != "1" {
		t.Errorf("no pivot_root: %v", kv)
	}
	e.rt.forceNoPivot = false

	// Containers started at once, as the supervisor starts independent
	// ones, all run and report their own exit.
	const n = 6
	var wg sync.WaitGroup
	exits := make([]Exit, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &manifest.Container{Name: fmt.Sprintf("par%d", i), Command: []string{"exit", fmt.Sprint(i)}}
			c, err := e.rt.Create(context.Background(), m, img)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Destroy()
			if err := c.Start(context.Background()); err != nil {
				t.Error(err)
				return
			}
			exits[i], err = c.Wait(context.Background())
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, x := range exits {
		if x.Code != i {
			t.Errorf("par%d: %v", i, x)
		}
	}
}
