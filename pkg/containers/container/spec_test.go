package container

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// specRoot makes a root filesystem with /etc/passwd and /etc/group.
func specRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n" +
			"app:x:1000:1000:App:/home/app:/bin/sh\n" +
			"nohome:x:1001:1001::/nonexistent:/bin/sh\n",
		"etc/group": "root:x:0:\napp:x:1000:\nextra:x:2000:app\nwheel:x:10:app,other\n",
	}
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// build builds the plan of m over an image with config cfg.
func build(t *testing.T, m *manifest.Container, cfg image.Config) (*plan, error) {
	t.Helper()
	l := newLayout("/data", "/data/volumes", "/run/notify", m.Name)
	l.rootfs = specRoot(t)
	img := &image.Image{Ref: "img:1", Digest: "sha256:abc", Layers: []string{"/layers/1"}, Config: cfg}
	return buildSpec(m, img, l, "/photon", nil)
}

func mustBuild(t *testing.T, m *manifest.Container, cfg image.Config) *plan {
	t.Helper()
	p, err := build(t, m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestArgs(t *testing.T) {
	img := image.Config{Entrypoint: []string{"/entry", "-x"}, Cmd: []string{"serve", "--port=80"}}
	tests := []struct {
		name    string
		m       manifest.Container
		cfg     image.Config
		want    []string
		wantErr string
	}{
		{name: "image only", cfg: img, want: []string{"/entry", "-x", "serve", "--port=80"}},
		{name: "command replaces Cmd", m: manifest.Container{Command: []string{"migrate"}}, cfg: img, want: []string{"/entry", "-x", "migrate"}},
		{name: "entrypoint resets Cmd", m: manifest.Container{Entrypoint: []string{"/other"}}, cfg: img, want: []string{"/other"}},
		{name: "entrypoint and command", m: manifest.Container{Entrypoint: []string{"/other"}, Command: []string{"a", "b"}}, cfg: img, want: []string{"/other", "a", "b"}},
		{name: "empty entrypoint runs the command", m: manifest.Container{Entrypoint: []string{}, Command: []string{"/bin/sh", "-c", "true"}}, cfg: img, want: []string{"/bin/sh", "-c", "true"}},
		{name: "empty command keeps entrypoint alone", m: manifest.Container{Command: []string{}}, cfg: img, want: []string{"/entry", "-x"}},
		{name: "image Cmd only", cfg: image.Config{Cmd: []string{"/bin/app"}}, want: []string{"/bin/app"}},
		{name: "nothing", cfg: image.Config{}, wantErr: "no command"},
		{name: "entrypoint reset with nothing else", m: manifest.Container{Entrypoint: []string{}}, cfg: img, wantErr: "no command"},
		{name: "empty program", m: manifest.Container{Command: []string{""}}, cfg: image.Config{}, wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := args(&tt.m, &tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestEnvironment(t *testing.T) {
	tests := []struct {
		name     string
		imageEnv []string
		runtime  []string
		manifest []string
		home     string
		want     []string
	}{
		{
			name: "defaults",
			home: "/root",
			want: []string{"PATH=" + DefaultPath, "HOSTNAME=web", "HOME=/root"},
		},
		{
			name:     "image env, manifest overrides by key",
			imageEnv: []string{"PATH=/img/bin", "A=1", "B=2"},
			manifest: []string{"B=two", "C=3"},
			home:     "/",
			want:     []string{"PATH=/img/bin", "HOSTNAME=web", "A=1", "B=two", "C=3", "HOME=/"},
		},
		{
			name:     "manifest sets PATH, HOSTNAME and HOME",
			imageEnv: []string{"A=1"},
			manifest: []string{"PATH=/m", "HOSTNAME=other", "HOME=/srv"},
			home:     "/root",
			want:     []string{"PATH=/m", "HOSTNAME=other", "A=1", "HOME=/srv"},
		},
		{
			name:     "image HOME kept",
			imageEnv: []string{"HOME=/img"},
			home:     "/root",
			want:     []string{"PATH=" + DefaultPath, "HOSTNAME=web", "HOME=/img"},
		},
		{
			name:     "entry without = removes the key",
			imageEnv: []string{"A=1", "DEBUG=1"},
			manifest: []string{"DEBUG", "NOTSET"},
			home:     "/",
			want:     []string{"PATH=" + DefaultPath, "HOSTNAME=web", "A=1", "HOME=/"},
		},
		{
			name:     "values with = and empty values",
			manifest: []string{"URL=a=b", "EMPTY="},
			home:     "/",
			want:     []string{"PATH=" + DefaultPath, "HOSTNAME=web", "URL=a=b", "EMPTY=", "HOME=/"},
		},
		{
			name:     "runtime entries replace the image's, the manifest replaces or removes them",
			imageEnv: []string{"NOTIFY_SOCKET=/old", "WATCHDOG_USEC=1"},
			runtime:  []string{"NOTIFY_SOCKET=/run/photon/notify/notify.sock", "WATCHDOG_USEC=5000000", "WATCHDOG_PID=1"},
			manifest: []string{"WATCHDOG_USEC", "WATCHDOG_PID"},
			home:     "/",
			want:     []string{"PATH=" + DefaultPath, "HOSTNAME=web", "NOTIFY_SOCKET=/run/photon/notify/notify.sock", "HOME=/"},
		},
		{
			name:     "TERM is not invented",
			imageEnv: []string{},
			home:     "/",
			want:     []string{"PATH=" + DefaultPath, "HOSTNAME=web", "HOME=/"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &manifest.Container{Environment: tt.manifest}
			got := environment(m, &image.Config{Env: tt.imageEnv}, "web", tt.home, tt.runtime)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestUserResolution(t *testing.T) {
	umask := uint32(0o022)
	tests := []struct {
		name      string
		manifest  string
		image     string
		wantUser  specs.User
		wantHome  string
		wantError string
	}{
		{name: "default root", wantUser: specs.User{UID: 0, GID: 0, Umask: &umask}, wantHome: "/root"},
		{name: "image user by name", image: "app", wantUser: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000, 10}, Umask: &umask}, wantHome: "/home/app"},
		{name: "manifest overrides image", manifest: "root", image: "app", wantUser: specs.User{UID: 0, GID: 0, Umask: &umask}, wantHome: "/root"},
		{name: "uid:gid numeric", manifest: "1000:2000", wantUser: specs.User{UID: 1000, GID: 2000, Umask: &umask}, wantHome: "/home/app"},
		{name: "name:group", manifest: "app:wheel", wantUser: specs.User{UID: 1000, GID: 10, Umask: &umask}, wantHome: "/home/app"},
		{name: "unknown uid gets gid 0 and HOME /", manifest: "4242", wantUser: specs.User{UID: 4242, GID: 0, Umask: &umask}, wantHome: "/"},
		{name: "unknown name", manifest: "nobody-here", wantError: "nobody-here"},
		{name: "unknown group", manifest: "app:nogroup", wantError: "nogroup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &manifest.Container{Name: "c", User: tt.manifest, Command: []string{"/x"}}
			p, err := build(t, m, image.Config{User: tt.image})
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("err %v, want %q", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.spec.Process.User, tt.wantUser) {
				t.Errorf("user %+v, want %+v", p.spec.Process.User, tt.wantUser)
			}
			if home, _ := lookupEnv(p.spec.Process.Env, "HOME"); home != tt.wantHome {
				t.Errorf("HOME=%q, want %q", home, tt.wantHome)
			}
		})
	}
}

func TestUserWithoutPasswd(t *testing.T) {
	root := t.TempDir()
	for _, spec := range []string{"", "0", "1000:1000"} {
		if _, err := execUser(root, spec); err != nil {
			t.Errorf("%q without /etc/passwd: %v", spec, err)
		}
	}
	if _, err := execUser(root, "app"); err == nil {
		t.Error("a user name without /etc/passwd resolved")
	}
}

func TestUserPasswdSymlinkStaysInRoot(t *testing.T) {
	root := specRoot(t)
	// An absolute symlink must resolve inside the image, not on the host.
	os.Remove(filepath.Join(root, "etc/passwd"))
	os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/lib/passwd"), []byte("imguser:x:777:777::/img:/bin/sh\n"), 0o644)
	os.Symlink("/usr/lib/passwd", filepath.Join(root, "etc/passwd"))
	u, err := execUser(root, "imguser")
	if err != nil || u.Uid != 777 || u.Home != "/img" {
		t.Fatalf("got %+v, %v", u, err)
	}
}

func TestWorkingDirAndHostname(t *testing.T) {
	tests := []struct {
		m        manifest.Container
		cfg      image.Config
		cwd      string
		hostname string
		err      string
	}{
		{m: manifest.Container{Name: "a"}, cwd: "/", hostname: "a"},
		{m: manifest.Container{Name: "a"}, cfg: image.Config{WorkingDir: "/srv/app/"}, cwd: "/srv/app", hostname: "a"},
		{m: manifest.Container{Name: "a", WorkingDir: "/m", Hostname: "box"}, cfg: image.Config{WorkingDir: "/srv"}, cwd: "/m", hostname: "box"},
		{m: manifest.Container{Name: "a", WorkingDir: "rel"}, err: "not an absolute path"},
	}
	for _, tt := range tests {
		tt.m.Command = []string{"/x"}
		p, err := build(t, &tt.m, tt.cfg)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%+v: err %v, want %q", tt.m, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if p.spec.Process.Cwd != tt.cwd || p.spec.Hostname != tt.hostname {
			t.Errorf("cwd %q hostname %q, want %q %q", p.spec.Process.Cwd, p.spec.Hostname, tt.cwd, tt.hostname)
		}
		if h, _ := lookupEnv(p.spec.Process.Env, "HOSTNAME"); h != tt.hostname {
			t.Errorf("HOSTNAME=%q", h)
		}
	}
}

func TestCapabilities(t *testing.T) {
	all := allCapabilities()
	without := func(list []string, drop ...string) []string {
		return slices.DeleteFunc(slices.Clone(list), func(c string) bool { return slices.Contains(drop, c) })
	}
	tests := []struct {
		name      string
		m         manifest.Container
		want      []string
		wantError string
	}{
		{name: "default", want: defaultCapabilities},
		{name: "add and drop", m: manifest.Container{CapAdd: []string{"CAP_NET_ADMIN"}, CapDrop: []string{"CAP_NET_RAW", "CAP_MKNOD"}},
			want: append(without(defaultCapabilities, "CAP_NET_RAW", "CAP_MKNOD"), "CAP_NET_ADMIN")},
		{name: "short names", m: manifest.Container{CapAdd: []string{"sys_time"}}, want: append(slices.Clone(defaultCapabilities), "CAP_SYS_TIME")},
		{name: "drop ALL keeps cap_add", m: manifest.Container{CapDrop: []string{"ALL"}, CapAdd: []string{"CAP_NET_BIND_SERVICE"}}, want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "drop ALL alone", m: manifest.Container{CapDrop: []string{"ALL"}}, want: []string{}},
		{name: "add ALL less drop", m: manifest.Container{CapAdd: []string{"ALL"}, CapDrop: []string{"CAP_SYS_ADMIN"}}, want: without(all, "CAP_SYS_ADMIN")},
		{name: "privileged", m: manifest.Container{Privileged: true, CapDrop: []string{"CAP_SYS_ADMIN"}}, want: all},
		{name: "adding a default twice", m: manifest.Container{CapAdd: []string{"CAP_KILL"}}, want: defaultCapabilities},
		{name: "unknown", m: manifest.Container{CapAdd: []string{"CAP_FLY"}}, wantError: `cap_add: "CAP_FLY"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := capabilities(&tt.m)
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("err %v, want %q", err, tt.wantError)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, %v\nwant %v", got, err, tt.want)
			}
		})
	}
}

func TestSecurityDefaults(t *testing.T) {
	p := mustBuild(t, &manifest.Container{Name: "c", Command: []string{"/x"}}, image.Config{})
	s := p.spec
	if !s.Process.NoNewPrivileges {
		t.Error("no_new_privileges not set")
	}
	caps := s.Process.Capabilities
	if !slices.Equal(caps.Bounding, defaultCapabilities) || !slices.Equal(caps.Effective, defaultCapabilities) ||
		!slices.Equal(caps.Permitted, defaultCapabilities) || len(caps.Inheritable) != 0 || len(caps.Ambient) != 0 {
		t.Errorf("capabilities %+v", caps)
	}
	if !slices.Equal(s.Linux.MaskedPaths, presentPaths(maskedPaths)) || !slices.Equal(s.Linux.ReadonlyPaths, presentPaths(readonlyPaths)) ||
		!slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	var ns []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		ns = append(ns, n.Type)
	}
	wantNS := []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace, specs.CgroupNamespace, specs.NetworkNamespace}
	if !slices.Equal(ns, wantNS) {
		t.Errorf("namespaces %v, want %v (bridge network by default)", ns, wantNS)
	}
	if d := s.Linux.Resources.Devices; len(d) != 1 || d[0].Allow || d[0].Access != "rwm" {
		t.Errorf("device rules %+v, want deny all (runc adds its defaults)", d)
	}
	if (s.Linux.Seccomp != nil) != SeccompEnabled {
		t.Errorf("seccomp %v with SeccompEnabled %v", s.Linux.Seccomp != nil, SeccompEnabled)
	}
	if s.Root.Readonly {
		t.Error("root read-only by default")
	}
	if s.Linux.CgroupsPath != "/photon/c" {
		t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
	}
	if *s.Process.User.Umask != 0o022 {
		t.Errorf("umask %o", *s.Process.User.Umask)
	}
	if s.Process.Terminal {
		t.Error("terminal")
	}

	priv := mustBuild(t, &manifest.Container{Name: "c", Command: []string{"/x"}, Privileged: true, ReadOnly: true}, image.Config{})
	ps := priv.spec
	if ps.Process.NoNewPrivileges || ps.Linux.MaskedPaths != nil || ps.Linux.ReadonlyPaths != nil || ps.Linux.Seccomp != nil {
		t.Errorf("privileged keeps restrictions: nnp %v masked %v ro %v", ps.Process.NoNewPrivileges, ps.Linux.MaskedPaths, ps.Linux.ReadonlyPaths)
	}
	if d := ps.Linux.Resources.Devices; len(d) != 1 || !d[0].Allow {
		t.Errorf("privileged device rules %+v", d)
	}
	if !ps.Root.Readonly {
		t.Error("read_only ignored")
	}
	for _, m := range ps.Mounts {
		if (m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup") && !slices.Contains(m.Options, "rw") {
			t.Errorf("privileged %s not rw: %v", m.Destination, m.Options)
		}
	}
}

func TestNetworkModes(t *testing.T) {
	tests := []struct {
		mode  string
		netns bool
		err   string
	}{
		{mode: "", netns: true}, // bridge
		{mode: "bridge", netns: true},
		{mode: "host", netns: false},
		{mode: "none", netns: true},
		{mode: "container:db", netns: false}, // joined by path (network.go)
		{mode: "container:", err: "not a network mode"},
		{mode: "weird", err: "not a network mode"},
	}
	for _, tt := range tests {
		p, err := build(t, &manifest.Container{Name: "c", Command: []string{"/x"}, NetworkMode: tt.mode}, image.Config{})
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.mode, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		has := slices.ContainsFunc(p.spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
		if has != tt.netns {
			t.Errorf("%q: network namespace %v", tt.mode, has)
		}
	}
}

func TestResources(t *testing.T) {
	m := &manifest.Container{
		Name: "c", Command: []string{"/x"}, NetworkMode: "none",
		MemLimit: 64 << 20, Cpus: 1.5, PidsLimit: 100,
		Ulimits: map[string]manifest.Ulimit{"nofile": {Soft: 1024, Hard: 2048}, "core": {Soft: 0, Hard: 0}},
		Sysctls: map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"},
	}
	s := mustBuild(t, m, image.Config{}).spec
	r := s.Linux.Resources
	if r.Memory == nil || *r.Memory.Limit != 64<<20 {
		t.Errorf("memory %+v", r.Memory)
	}
	if r.CPU == nil || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 {
		t.Errorf("cpu %+v", r.CPU)
	}
	if r.Pids == nil || *r.Pids.Limit != 100 {
		t.Errorf("pids %+v", r.Pids)
	}
	want := []specs.POSIXRlimit{{Type: "RLIMIT_CORE"}, {Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 2048}}
	if !reflect.DeepEqual(s.Process.Rlimits, want) {
		t.Errorf("rlimits %+v", s.Process.Rlimits)
	}
	if s.Linux.Sysctl["net.ipv4.ip_forward"] != "1" || s.Linux.Sysctl["kernel.shmmax"] != "1000" {
		t.Errorf("sysctls %v", s.Linux.Sysctl)
	}
	lp, err := newProcess(s.Process)
	if err != nil {
		t.Fatal(err)
	}
	if len(lp.Rlimits) != 2 || lp.Rlimits[1].Type != unix.RLIMIT_NOFILE || lp.Rlimits[1].Soft != 1024 {
		t.Errorf("libcontainer rlimits %+v", lp.Rlimits)
	}

	none := mustBuild(t, &manifest.Container{Name: "c", Command: []string{"/x"}, PidsLimit: -1}, image.Config{}).spec.Linux.Resources
	if none.Memory != nil || none.CPU != nil || none.Pids != nil {
		t.Errorf("limits without a manifest limit: %+v", none)
	}

	errs := []struct {
		m   manifest.Container
		err string
	}{
		{manifest.Container{NetworkMode: "host", Sysctls: map[string]string{"net.core.somaxconn": "1"}}, "own network namespace"},
		{manifest.Container{Ulimits: map[string]manifest.Ulimit{"bogus": {}}}, `"bogus" is not a ulimit`},
		{manifest.Container{Ulimits: map[string]manifest.Ulimit{"nofile": {Soft: 10, Hard: 5}}}, "soft ≤ hard"},
		{manifest.Container{Devices: []manifest.Device{{HostPath: "/nonexistent-device"}}}, "devices[0]"},
		{manifest.Container{StopSignal: "SIGNOPE"}, "stop signal"},
		{manifest.Container{Name: "bad/name"}, "not a container name"},
	}
	for _, tt := range errs {
		if tt.m.Name == "" {
			tt.m.Name = "c"
		}
		tt.m.Command = []string{"/x"}
		if _, err := build(t, &tt.m, image.Config{}); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%+v: err %v, want %q", tt.m, err, tt.err)
		}
	}
}

func TestDevices(t *testing.T) {
	m := &manifest.Container{Name: "c", Command: []string{"/x"}, Devices: []manifest.Device{
		{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rw"},
		{HostPath: "/dev/zero"},
	}}
	s := mustBuild(t, m, image.Config{}).spec
	if len(s.Linux.Devices) != 2 {
		t.Fatalf("devices %+v", s.Linux.Devices)
	}
	d := s.Linux.Devices[0]
	if d.Path != "/dev/mynull" || d.Type != "c" || d.Major != 1 || d.Minor != 3 {
		t.Errorf("device %+v", d)
	}
	rules := s.Linux.Resources.Devices
	if len(rules) != 3 || !rules[1].Allow || rules[1].Access != "rw" || *rules[1].Major != 1 || *rules[1].Minor != 3 || rules[2].Access != "rwm" {
		t.Errorf("rules %+v", rules)
	}
}

func TestMounts(t *testing.T) {
	m := &manifest.Container{
		Name: "c", Command: []string{"/x"},
		Volumes: []manifest.Volume{
			{Type: manifest.VolumeBind, Source: "/host/conf", Target: "/etc/app", ReadOnly: true},
			{Type: manifest.VolumeNamed, Source: "dbdata", Target: "/var/lib/db"},
			{Type: manifest.VolumeNoName, Target: "/cache"},
			{Type: manifest.VolumeTmpfs, Target: "/run", TmpfsSize: 1 << 20, TmpfsMode: 0o755},
			{Type: manifest.VolumeBind, Source: "/host/hosts", Target: "/etc/hosts"},
		},
		Tmpfs: []string{"/tmp:size=1048576,mode=1777,exec", "/dev/shm:size=2097152"},
	}
	cfg := image.Config{Volumes: []string{"/var/lib/db", "/data", "/cache/"}}
	p := mustBuild(t, m, cfg)
	var got []string
	for _, mt := range p.spec.Mounts {
		got = append(got, mt.Destination+" "+mt.Type+" "+mt.Source+" "+strings.Join(mt.Options, ","))
	}
	want := []string{
		"/proc proc proc nosuid,noexec,nodev",
		"/dev tmpfs tmpfs nosuid,strictatime,mode=755,size=65536k",
		"/dev/pts devpts devpts nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5",
		"/sys sysfs sysfs nosuid,noexec,nodev,ro",
		"/sys/fs/cgroup " + cgroupMountType() + " cgroup nosuid,noexec,nodev,relatime,ro",
		"/dev/mqueue mqueue mqueue nosuid,noexec,nodev",
		// user mounts and /etc files, by depth
		"/cache  /data/containers/c/volumes/cache rbind,rprivate",
		"/run tmpfs tmpfs nosuid,nodev,noexec,size=1048576,mode=755",
		"/tmp tmpfs tmpfs nosuid,nodev,noexec,size=1048576,mode=1777,exec",
		"/data  /data/containers/c/volumes/data rbind,rprivate",
		"/etc/app  /host/conf rbind,rprivate,ro",
		"/etc/hosts  /host/hosts rbind,rprivate",
		"/dev/shm tmpfs tmpfs nosuid,nodev,noexec,size=2097152",
		"/etc/hostname  /data/containers/c/hostname rbind,rprivate",
		"/etc/resolv.conf  /data/containers/c/resolv.conf rbind,rprivate",
		"/var/lib/db  /data/volumes/dbdata rbind,rprivate",
		"/run/photon/notify  /run/notify/c rbind,rprivate,ro,nosuid,nodev,noexec",
	}
	if !slices.Equal(got, want) {
		t.Errorf("mounts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var vols []string
	for _, v := range p.volumes {
		vols = append(vols, v.target+"="+v.source)
	}
	wantVols := []string{"/etc/app=/host/conf", "/var/lib/db=/data/volumes/dbdata", "/cache=/data/containers/c/volumes/cache",
		"/etc/hosts=/host/hosts", "/data=/data/containers/c/volumes/data"}
	if !slices.Equal(vols, wantVols) {
		t.Errorf("volumes %v\nwant %v", vols, wantVols)
	}

	errs := []struct {
		m   manifest.Container
		err string
	}{
		{manifest.Container{Volumes: []manifest.Volume{{Type: manifest.VolumeNoName, Target: "/a"}, {Type: manifest.VolumeTmpfs, Target: "/a/"}}}, "already the target"},
		{manifest.Container{Tmpfs: []string{"/t:bogus"}}, "tmpfs[0]"},
		{manifest.Container{Volumes: []manifest.Volume{{Type: manifest.VolumeNamed, Source: "../x", Target: "/a"}}}, "not a volume name"},
		{manifest.Container{Volumes: []manifest.Volume{{Type: manifest.VolumeBind, Source: "rel", Target: "/a"}}}, "not absolute"},
		{manifest.Container{Volumes: []manifest.Volume{{Type: manifest.VolumeNoName, Target: "rel"}}}, "absolute path"},
	}
	for _, tt := range errs {
		tt.m.Name, tt.m.Command = "c", []string{"/x"}
		if _, err := build(t, &tt.m, image.Config{}); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%+v: err %v, want %q", tt.m, err, tt.err)
		}
	}
}

func TestAnonymousVolumeDirNames(t *testing.T) {
	a := anonymousVolumeDir("/v", "/a/b")
	b := anonymousVolumeDir("/v", "/a_b")
	c := anonymousVolumeDir("/v", "/a%2Fb")
	if a == b || a == c || b == c || filepath.Dir(a) != "/v" || filepath.Dir(c) != "/v" {
		t.Errorf("%s %s %s", a, b, c)
	}
}

func TestStopSettings(t *testing.T) {
	tests := []struct {
		m      manifest.Container
		cfg    image.Config
		signal syscall.Signal
		grace  time.Duration
	}{
		{signal: syscall.SIGTERM, grace: DefaultStopGrace},
		{cfg: image.Config{StopSignal: "SIGQUIT"}, signal: syscall.SIGQUIT, grace: DefaultStopGrace},
		{m: manifest.Container{StopSignal: "SIGINT", StopGracePeriod: 3 * time.Second}, cfg: image.Config{StopSignal: "SIGQUIT"}, signal: syscall.SIGINT, grace: 3 * time.Second},
		{m: manifest.Container{StopSignal: "RTMIN+3"}, signal: syscall.Signal(37), grace: DefaultStopGrace},
	}
	for _, tt := range tests {
		tt.m.Name, tt.m.Command = "c", []string{"/x"}
		p := mustBuild(t, &tt.m, tt.cfg)
		c := newContainer(nil, "c", nil, p, nil, modeOverlay, nil)
		if c.StopSignal() != tt.signal || c.StopGrace() != tt.grace {
			t.Errorf("%+v: %v %v, want %v %v", tt.m, c.StopSignal(), c.StopGrace(), tt.signal, tt.grace)
		}
	}
}

func TestNotifyEnvironment(t *testing.T) {
	tests := []struct {
		name string
		m    manifest.Container
		want []string // NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID
	}{
		{name: "every container gets the socket", want: []string{NotifySocketPath, "", ""}},
		{name: "watchdog", m: manifest.Container{Watchdog: 2500 * time.Millisecond}, want: []string{NotifySocketPath, "2500000", "1"}},
		{name: "a user mount takes the socket's place", m: manifest.Container{Watchdog: time.Second,
			Volumes: []manifest.Volume{{Type: manifest.VolumeTmpfs, Target: NotifySocketDir}}}, want: []string{"", "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.m.Name, tt.m.Command = "c", []string{"/x"}
			p := mustBuild(t, &tt.m, image.Config{})
			var got []string
			for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
				v, _ := lookupEnv(p.spec.Process.Env, k)
				got = append(got, v)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("env %q, want %q", got, tt.want)
			}
			if p.notify != (tt.want[0] != "") {
				t.Errorf("plan.notify %v", p.notify)
			}
			var socketMounts int
			for _, mt := range p.spec.Mounts {
				if mt.Destination == NotifySocketDir {
					socketMounts++
				}
			}
			if socketMounts != 1 {
				t.Errorf("%d mounts on %s", socketMounts, NotifySocketDir)
			}
		})
	}
	m := &manifest.Container{Name: "c", Command: []string{"/x"}, Watchdog: -time.Second}
	if _, err := build(t, m, image.Config{}); err == nil || !strings.Contains(err.Error(), "watchdog") {
		t.Errorf("negative watchdog: %v", err)
	}
}

func TestAnnotationsAndDeterminism(t *testing.T) {
	m := &manifest.Container{Name: "c", Command: []string{"/x"}, Sysctls: map[string]string{"kernel.shmmax": "1", "kernel.msgmax": "2"}}
	a := mustBuild(t, m, image.Config{}).spec
	b := mustBuild(t, m, image.Config{}).spec
	a.Root, b.Root = nil, nil // the test roots differ
	if !reflect.DeepEqual(a, b) {
		t.Error("two builds of one manifest differ")
	}
	if a.Annotations[AnnotationName] != "c" || a.Annotations[AnnotationImageDigest] != "sha256:abc" {
		t.Errorf("annotations %v", a.Annotations)
	}
}

func TestInputsDigest(t *testing.T) {
	img := &image.Image{Digest: "sha256:a", Layers: []string{"/l"}}
	m := &manifest.Container{Name: "c", File: "/etc/photon/containers/c.yaml", Environment: []string{"A=1"}}
	d1, _ := inputsDigest(m, img)
	m2 := *m
	m2.File = "/elsewhere/c.yml"
	d2, _ := inputsDigest(&m2, img)
	if d1 != d2 {
		t.Error("the manifest's file name changes the digest")
	}
	m3 := *m
	m3.Environment = []string{"A=2"}
	d3, _ := inputsDigest(&m3, img)
	img2 := *img
	img2.Digest = "sha256:b"
	d4, _ := inputsDigest(m, &img2)
	if d3 == d1 || d4 == d1 {
		t.Error("a changed manifest or image keeps the digest")
	}
}

func TestRootIsInitramfs(t *testing.T) {
	info := func(id, parent int, fstype string) *mountinfo.Info {
		return &mountinfo.Info{ID: id, Parent: parent, Mountpoint: "/", FSType: fstype}
	}
	tests := []struct {
		name  string
		magic int64
		roots []*mountinfo.Info
		want  bool
	}{
		{"initramfs root", unix.RAMFS_MAGIC, []*mountinfo.Info{info(1, 1, "rootfs")}, true},
		{"tmpfs initramfs root", unix.TMPFS_MAGIC, []*mountinfo.Info{info(1, 1, "rootfs")}, true},
		{"made pivotable (bind over /)", unix.RAMFS_MAGIC, []*mountinfo.Info{info(1, 1, "rootfs"), info(30, 1, "rootfs")}, false},
		{"only the bind visible after chroot", unix.TMPFS_MAGIC, []*mountinfo.Info{info(30, 1, "rootfs")}, false},
		{"disk root", unix.EXT4_SUPER_MAGIC, []*mountinfo.Info{info(27, 1, "ext4")}, false},
		{"tmpfs mounted on /", unix.TMPFS_MAGIC, []*mountinfo.Info{info(40, 2, "tmpfs")}, false},
		{"no mountinfo", unix.RAMFS_MAGIC, nil, false},
	}
	for _, tt := range tests {
		if got := rootIsInitramfs(tt.magic, tt.roots); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	// On this machine (a disk or a made-pivotable root) pivot_root works.
	if no, err := needNoPivotRoot(); err != nil || no {
		t.Errorf("needNoPivotRoot on the test machine = %v, %v", no, err)
	}
}

func TestOverlayData(t *testing.T) {
	d, err := overlayData([]string{"/l/1", "/l/2", "/l/3"}, "/c/upper", "/c/work", true)
	if err != nil || d != "lowerdir=/l/3:/l/2:/l/1,upperdir=/c/upper,workdir=/c/work,index=off" {
		t.Errorf("%q %v", d, err)
	}
	if _, err := overlayData([]string{"/l/a:b"}, "/u", "/w", false); err == nil {
		t.Error("a ':' in a layer path accepted")
	}
}

func TestExitString(t *testing.T) {
	tests := []struct {
		e    Exit
		want string
	}{
		{Exit{Code: 0}, "exit 0"},
		{Exit{Code: 3}, "exit 3"},
		{Exit{Code: 137, Signal: syscall.SIGKILL}, "exit 137 (SIGKILL)"},
		{Exit{Code: 137, Signal: syscall.SIGKILL, OOM: true}, "exit 137 (SIGKILL, OOM killed)"},
		{Exit{Code: 1, OOM: true}, "exit 1 (OOM killed)"},
	}
	for _, tt := range tests {
		if got := tt.e.String(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestHostsFile(t *testing.T) {
	h := hostsFile("web")
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost ip6-localhost ip6-loopback\n", "127.0.1.1\tweb\n"} {
		if !strings.Contains(h, want) {
			t.Errorf("hosts lacks %q:\n%s", want, h)
		}
	}
}
