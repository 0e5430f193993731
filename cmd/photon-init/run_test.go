package main

import (
	"bufio"
	"fmt"
	"github.com/photon-init/photon-init/internal/nstest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envAsMain makes the test binary behave as photon-init (see TestMain).
const envAsMain = "PHOTON_TEST_AS_MAIN"

// TestMain lets the test binary stand in for photon-init: started with
// envAsMain it runs the command line as photon-init would, and started by
// libcontainer for a container's init (argv[1] "init", an environment of
// libcontainer's own) it runs that.
func TestMain(m *testing.M) {
	if os.Getenv(envAsMain) != "" || (len(os.Args) > 1 && os.Args[1] == "init" && os.Getenv("_LIBCONTAINER_INITPIPE") != "") {
		os.Exit(run(append([]string{"photon-init"}, os.Args[1:]...)))
	}
	os.Exit(m.Run())
}

// TestRunRoot runs "photon-init run --root DIR" on this host, in a private
// mount namespace and a network namespace of its own (the container is
// bridged, the default: its bridge and nftables table stay in there): a
// good container starts and its output reaches stderr
// prefixed with its name, a broken manifest beside it is reported with file
// and line, and SIGTERM stops the container (whose PID 1 ignores SIGTERM,
// so only its grace period ends it) and the command exits 0.
func TestRunRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for containers")
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox (busybox-static) is not installed; scripts/deps.sh installs it")
	}
	root := t.TempDir()
	rootfs := filepath.Join(root, "images", "busybox")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", busybox, filepath.Join(rootfs, "bin", "busybox")).CombinedOutput(); err != nil {
		t.Fatalf("cp busybox: %v\n%s", err, out)
	}
	manifests := filepath.Join(root, "etc", "photon", "containers")
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"hello.yaml": "image: rootfs:" + rootfs + "\n" +
			"command: [/bin/busybox, sh, -c, 'echo hello from $(/bin/busybox cat /etc/hostname); exec /bin/busybox sleep 600']\n" +
			"stop_grace_period: 1s\n",
		"broken.yaml": "image: rootfs:" + rootfs + "\n\ncomand: [x]\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(manifests, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	cgroup := fmt.Sprintf("photon-test-run-%d", os.Getpid())
	t.Cleanup(func() { nstest.RemoveCgroups(cgroup) })
	cmd := exec.Command("unshare", "-m", "-n", "--propagation", "private", os.Args[0], "run", "--root", root, "--cgroup-parent", cgroup)
	cmd.Env = append(os.Environ(), envAsMain+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	waitLine := func(want string, timeout time.Duration) {
		t.Helper()
		deadline := time.After(timeout)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("photon-init run ended before printing %q; it printed:\n%s", want, strings.Join(seen, "\n"))
				}
				seen = append(seen, l)
				if strings.Contains(l, want) {
					return
				}
			case <-deadline:
				t.Fatalf("no line with %q within %v; printed:\n%s", want, timeout, strings.Join(seen, "\n"))
			}
		}
	}
	waitLine("ERROR container broken: "+filepath.Join(manifests, "broken.yaml")+":3: field comand: unknown field", 30*time.Second)
	waitLine("[hello] hello from hello", 30*time.Second)

	// The control socket of the root answers photonctl.
	sock := filepath.Join(root, "run", "photon", "photon.sock")
	ctl := func(args ...string) string {
		t.Helper()
		c := exec.Command(os.Args[0], append([]string{"ctl", "--socket", sock}, args...)...)
		c.Env = append(os.Environ(), envAsMain+"=1")
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("photonctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := ctl("ps"); !strings.Contains(out, "hello") || !strings.Contains(out, "running") || !strings.Contains(out, "broken") {
		t.Errorf("photonctl ps:\n%s", out)
	}
	if out := ctl("inspect", "-o", "json", "hello"); !strings.Contains(out, `"network": "bridge"`) || !strings.Contains(out, `"10.88.`) {
		t.Errorf("photonctl inspect hello: no bridge address:\n%s", out)
	}
	if out := ctl("logs", "hello"); !strings.Contains(out, "hello from hello") {
		t.Errorf("photonctl logs hello:\n%s", out)
	}
	if out := ctl("exec", "hello", "/bin/busybox", "cat", "/etc/hostname"); strings.TrimSpace(out) != "hello" {
		t.Errorf("photonctl exec hello cat /etc/hostname: %q", out)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLine("container hello: stopped", 10*time.Second)
	waitLine("all containers stopped", 10*time.Second)
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("photon-init run: %v", err)
	}
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("stopping took %v; the grace period is 1s", took)
	}
}
