// Package nstest runs a test's body in new Linux namespaces, so that tests
// which mount filesystems, reap processes or change links never touch the
// host's own: the test binary re-executes itself with only that test
// selected, inside the namespaces, and the parent test reports its result.
// Everything the child made dies with its namespaces, even when it fails.
package nstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const envChild = "PHOTON_NSTEST_CHILD"

// InChild reports whether this process is the re-executed child of Run for
// the named test.
func InChild(name string) bool { return os.Getenv(envChild) == name }

// Run re-runs test t in new namespaces (CLONE_NEW* flags) and fails t if
// the child fails. In the child it returns true and the caller runs the
// body; in the parent it returns false after the child finished. Tests that
// need root skip when not root. A new mount namespace is made private
// (recursively) at the start of the child's body by Private.
func Run(t *testing.T, cloneflags uintptr) (child bool) {
	t.Helper()
	if InChild(t.Name()) {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for namespaces")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneflags, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil {
		t.Fatalf("child in new namespaces: %v", err)
	}
	return false
}

// Private makes every mount in the current (new) mount namespace private, so
// that nothing mounted or unmounted propagates back to the host.
func Private(t *testing.T) {
	t.Helper()
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make mounts private: %v", err)
	}
}

// RemoveCgroups removes a test's cgroup parent, and the empty cgroups
// directly below it, from every hierarchy under /sys/fs/cgroup (cgroup v1
// and v2): what a test that runs containers under that parent leaves.
func RemoveCgroups(parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parent))
	for _, d := range dirs {
		subs, _ := filepath.Glob(filepath.Join(d, "*"))
		for _, s := range subs {
			if st, err := os.Stat(s); err == nil && st.IsDir() {
				_ = os.Remove(s)
			}
		}
		_ = os.Remove(d)
	}
}
