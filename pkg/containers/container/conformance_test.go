package container

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// runtimetestModule is the runtime-tools version whose runtimetest checks
// our containers; the binary is cached in the repository's .cache/bin.
const runtimetestModule = "github.com/opencontainers/runtime-tools/cmd/runtimetest@v0.9.1-0.20251205004911-5e639034dcdc"

const envRuntimetest = "PHOTON_CONTAINER_TEST_RUNTIMETEST"

var runtimetestOnce sync.Once

// runtimetestBinary returns the cached runtimetest, installing it
// (statically linked) when it is missing.
func runtimetestBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envRuntimetest); p != "" {
		return p
	}
	var err error
	runtimetestOnce.Do(func() {
		var gomod []byte
		gomod, err = exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			return
		}
		bin := filepath.Join(filepath.Dir(strings.TrimSpace(string(gomod))), ".cache", "bin")
		path := filepath.Join(bin, "runtimetest")
		if _, serr := os.Stat(path); serr != nil {
			cmd := exec.Command("go", "install", runtimetestModule)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOBIN="+bin)
			if out, ierr := cmd.CombinedOutput(); ierr != nil {
				err = fmt.Errorf("go install runtimetest: %v\n%s", ierr, out)
				return
			}
		}
		err = os.Setenv(envRuntimetest, path)
	})
	if p := os.Getenv(envRuntimetest); p != "" {
		return p
	}
	if err == nil {
		err = fmt.Errorf("runtimetest unavailable")
	}
	if testing.Short() {
		t.Skipf("runtimetest cannot be installed: %v", err)
	}
	t.Fatal(err)
	return ""
}

// tap is the summary of a TAP stream.
type tap struct {
	plan, pass, fail, skip, todo int
	failures                     []string
}

func parseTAP(lines []string) tap {
	var r tap
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "1.."):
			fmt.Sscanf(l, "1..%d", &r.plan)
		case strings.HasPrefix(l, "ok "):
			if strings.Contains(l, "# SKIP") {
				r.skip++
			} else {
				r.pass++
			}
		case strings.HasPrefix(l, "not ok "):
			if strings.Contains(l, "# TODO") {
				r.todo++
			} else {
				r.fail++
				r.failures = append(r.failures, l)
			}
		}
	}
	return r
}

// TestRuntimetestConformance runs runtime-tools' runtimetest as the
// process of containers built from manifests, with the config.json that
// Create wrote, and requires every check it makes to pass, on the
// machine's cgroup setup (v1 on the development machines, v2 in the VM).
func TestRuntimetestConformance(t *testing.T) {
	conformance(t)
}

// TestRuntimetestConformanceCgroup2 does the same with a cgroup2
// hierarchy mounted on /sys/fs/cgroup in the test's mount namespace, so
// that a cgroup v1 machine also checks the v2 configuration. Where the v1
// hierarchies hold the memory, pids and cpu controllers, the v2 one has
// none of them and the limits are left out.
func TestRuntimetestConformanceCgroup2(t *testing.T) {
	conformance(t, func(t *testing.T) {
		// Not cgroups.IsCgroup2UnifiedMode: it remembers its first answer.
		var st unix.Statfs_t
		if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			t.Skip("the machine runs cgroup v2 already: TestRuntimetestConformance checks it")
		}
		if err := unix.Unmount("/sys/fs/cgroup", unix.MNT_DETACH); err != nil {
			t.Fatalf("unmount the v1 hierarchies: %v", err)
		}
		if err := unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
			t.Skipf("no cgroup2 here: %v", err)
		}
		if !cgroups.IsCgroup2UnifiedMode() {
			t.Fatal("libcontainer does not see cgroup v2")
		}
	})
}

// hasControllers reports whether the cgroup setup can limit memory, pids
// and CPU.
func hasControllers() bool {
	if !cgroups.IsCgroup2UnifiedMode() {
		return true
	}
	b, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	f := strings.Fields(string(b))
	return slices.Contains(f, "memory") && slices.Contains(f, "pids") && slices.Contains(f, "cpu")
}

func conformance(t *testing.T, before ...func(t *testing.T)) {
	rtBin := runtimetestBinary(t)
	e := rootEnv(t, before...)
	if e == nil {
		return
	}
	img := e.testImage(t)
	copyExecutable(t, rtBin, filepath.Join(img.Layers[0], "runtimetest"))
	featureful := manifest.Container{
		User: "app", WorkingDir: "/home/app", Hostname: "conform", NetworkMode: "none", ReadOnly: true,
		Environment: []string{"GREETING=hello", "SHARED=manifest"},
		CapAdd:      []string{"CAP_NET_ADMIN", "CAP_SYS_TIME"}, CapDrop: []string{"CAP_MKNOD"},
		// Go programs (runtimetest is one) raise their soft NOFILE
		// limit at startup: a soft limit below the hard one cannot be
		// checked from inside, so nofile has soft = hard.
		Ulimits: map[string]manifest.Ulimit{"nofile": {Soft: 2000, Hard: 2000}, "nproc": {Soft: 500, Hard: 1000}, "core": {Soft: 0, Hard: 0}},
		Sysctls: map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "268435456"},
		Tmpfs:   []string{"/scratch:size=1048576,mode=1777"},
		Volumes: []manifest.Volume{
			{Type: manifest.VolumeNamed, Source: "conformvol", Target: "/data"},
			{Type: manifest.VolumeBind, Source: filepath.Join(e.dir, "bind"), Target: "/mnt/bind", ReadOnly: true},
		},
		Devices: []manifest.Device{{HostPath: "/dev/null", ContainerPath: "/dev/extra-null", Permissions: "rw"}},
	}
	if hasControllers() {
		featureful.MemLimit, featureful.PidsLimit, featureful.Cpus = 256<<20, 100, 1
	}
	tests := []struct {
		name string
		m    manifest.Container
	}{
		{name: "default", m: manifest.Container{}},
		{name: "featureful", m: featureful},
		{name: "privileged", m: manifest.Container{Privileged: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.m
			m.Name = "conformance-" + tt.name
			m.Entrypoint = []string{"/runtimetest", "--path", "/"}
			c, err := e.rt.Create(context.Background(), &m, img)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Destroy()
			// runtimetest reads config.json from --path: put ours there.
			cfg, err := os.ReadFile(c.ConfigPath())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(c.Rootfs(), "config.json"), cfg, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := c.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			exit, err := c.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			lines := e.console.lines(m.Name)
			r := parseTAP(lines)
			cgroupVersion := "v1"
			if cgroups.IsCgroup2UnifiedMode() {
				cgroupVersion = "v2"
			}
			t.Logf("runtimetest %s (cgroup %s): %v; plan 1..%d: %d passed, %d failed, %d skipped, %d todo",
				tt.name, cgroupVersion, exit, r.plan, r.pass, r.fail, r.skip, r.todo)
			failures := r.failures
			if cgroupVersion == "v1" {
				// On cgroup v1, runc mounts a tmpfs on /sys/fs/cgroup
				// with one mount per hierarchy below it; runtimetest
				// wants one mount of type "cgroup" there.
				failures = slices.DeleteFunc(failures, func(f string) bool {
					if strings.HasSuffix(f, "(/sys/fs/cgroup) found") {
						t.Logf("known runtimetest limitation on cgroup v1: %s", f)
						return true
					}
					return false
				})
			}
			if exit.Code != 0 || r.plan == 0 || r.pass+r.fail+r.skip+r.todo != r.plan || len(failures) > 0 {
				t.Errorf("runtimetest output:\n%s", strings.Join(lines, "\n"))
			}
			for _, f := range failures {
				t.Errorf("failed: %s", f)
			}
		})
	}
}
