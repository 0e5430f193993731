package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// envDir holds the env files the tests refer to.
func envDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"app.env":   "\ufeff# comment\n\nA=1\n  B=two words \nHOST_ONLY\nC=x=y\r\n",
		"more.env":  "A=override\nD=4\n",
		"bad.env":   "OK=1\nBAD KEY=2\n",
		"empty.env": "=novalue\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestParseGood(t *testing.T) {
	dir := envDir(t)
	tests := []struct {
		name string
		text string
		want *Container
	}{
		{
			name: "minimal",
			text: "image: alpine:3.20\n",
			want: &Container{Name: "web", File: "web.yaml", Image: "alpine:3.20"},
		},
		{
			name: "everything",
			text: `name: front_1.a
image: docker.io/library/nginx:1.27
entrypoint: /docker-entrypoint.sh --flag "two words" 'single \q'
command: [nginx, -g, "daemon off;"]
env_file: [app.env, more.env]
environment:
  B: from-manifest
  E: 5
  F: true
  UNSET:
working_dir: /srv
user: "1000:1000"
hostname: front.example
network_mode: bridge
ports:
  - 80
  - "127.0.0.1:8080:80"
  - "[::1]:8443:443/tcp"
  - 9000-9001:9000-9001/udp
  - target: 53
    published: "5353"
    host_ip: 10.0.0.1
    protocol: udp
    mode: host
volumes:
  - /var/data:/data:ro
  - ./conf:/etc/nginx/conf.d
  - cache:/var/cache/nginx:rw
  - /scratch
  - type: tmpfs
    target: /run/tmp
    tmpfs: {size: 64m, mode: 1770}
  - type: volume
    source: logs
    target: /var/log/nginx
    read_only: true
  - type: volume
    target: /anon
tmpfs:
  - /tmp:size=64m,mode=1777,noexec
  - /run
devices:
  - /dev/fuse
  - /dev/sda:/dev/xvda:r
  - /dev/kvm:rw
read_only: true
privileged: false
cap_add: [net_admin, CAP_SYS_TIME, NET_ADMIN]
cap_drop: [ALL]
mem_limit: 512m
cpus: 1.5
pids_limit: 200
ulimits:
  nofile: {soft: 1024, hard: 4096}
  nproc: 512
  core: -1
sysctls:
  net.core.somaxconn: 1024
  kernel.shmmax: "68719476736"
labels: [com.example.team=web, flag]
stop_signal: quit
stop_grace_period: 1m30s
restart: on-failure:5
depends_on:
  db: {condition: service_healthy, restart: true}
  cache:
  setup: {condition: service_completed_successfully, required: false}
healthcheck:
  test: curl -fsS http://localhost/ || exit 1
  interval: 30s
  timeout: 5s
  start_period: 0s
  start_interval: 500ms
  retries: 3
logging: {max_size: 10m, max_files: 3}
x-note: ignored
`,
			want: &Container{
				Name: "front_1.a", File: "web.yaml", Image: "docker.io/library/nginx:1.27",
				Entrypoint:  []string{"/docker-entrypoint.sh", "--flag", "two words", `single \q`},
				Command:     []string{"nginx", "-g", "daemon off;"},
				Environment: []string{"A=override", "B=from-manifest", "C=x=y", "D=4", "E=5", "F=true"},
				EnvFile:     []string{filepath.Join(dir, "app.env"), filepath.Join(dir, "more.env")},
				WorkingDir:  "/srv", User: "1000:1000", Hostname: "front.example", NetworkMode: "bridge",
				Ports: []Port{
					{ContainerPort: 80, Protocol: "tcp"},
					{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
					{HostIP: "::1", HostPort: 8443, ContainerPort: 443, Protocol: "tcp"},
					{HostPort: 9000, ContainerPort: 9000, Protocol: "udp"},
					{HostPort: 9001, ContainerPort: 9001, Protocol: "udp"},
					{HostIP: "10.0.0.1", HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
				},
				Volumes: []Volume{
					{Type: VolumeBind, Source: "/var/data", Target: "/data", ReadOnly: true},
					{Type: VolumeBind, Source: filepath.Join(dir, "conf"), Target: "/etc/nginx/conf.d"},
					{Type: VolumeNamed, Source: "cache", Target: "/var/cache/nginx"},
					{Type: VolumeNoName, Target: "/scratch"},
					{Type: VolumeTmpfs, Target: "/run/tmp", TmpfsSize: 64 << 20, TmpfsMode: 0o1770},
					{Type: VolumeNamed, Source: "logs", Target: "/var/log/nginx", ReadOnly: true},
					{Type: VolumeNoName, Target: "/anon"},
				},
				Tmpfs: []string{"/tmp:size=67108864,mode=1777,noexec", "/run"},
				Devices: []Device{
					{HostPath: "/dev/fuse", ContainerPath: "/dev/fuse"},
					{HostPath: "/dev/sda", ContainerPath: "/dev/xvda", Permissions: "r"},
					{HostPath: "/dev/kvm", ContainerPath: "/dev/kvm", Permissions: "rw"},
				},
				ReadOnly: true,
				CapAdd:   []string{"CAP_NET_ADMIN", "CAP_SYS_TIME"},
				CapDrop:  []string{"ALL"},
				MemLimit: 512 << 20, Cpus: 1.5, PidsLimit: 200,
				Ulimits:    map[string]Ulimit{"nofile": {1024, 4096}, "nproc": {512, 512}, "core": {-1, -1}},
				Sysctls:    map[string]string{"net.core.somaxconn": "1024", "kernel.shmmax": "68719476736"},
				Labels:     map[string]string{"com.example.team": "web", "flag": ""},
				StopSignal: "SIGQUIT", StopGracePeriod: 90 * time.Second, Restart: "on-failure:5",
				DependsOn: map[string]Dependency{
					"db":    {Condition: ConditionHealthy, Required: true, Restart: true},
					"cache": {Condition: ConditionStarted, Required: true},
					"setup": {Condition: ConditionCompleted, Required: false},
				},
				Healthcheck: &Healthcheck{
					Test:     []string{"CMD-SHELL", "curl -fsS http://localhost/ || exit 1"},
					Interval: 30 * time.Second, Timeout: 5 * time.Second, StartInterval: 500 * time.Millisecond, Retries: 3,
				},
				Logging: &Logging{MaxSize: 10 << 20, MaxFiles: 3},
			},
		},
		{
			name: "string forms",
			text: `image: a
command: ""
entrypoint: []
environment: [X=1, "Y=a b", Z]
env_file: app.env
tmpfs: /tmp
depends_on: [db]
network_mode: service:db
healthcheck: {test: [NONE]}
stop_signal: "9"
`,
			want: &Container{
				Name: "web", File: "web.yaml", Image: "a",
				Command: []string{}, Entrypoint: []string{},
				Environment: []string{"A=1", "B=two words ", "C=x=y", "X=1", "Y=a b"},
				EnvFile:     []string{filepath.Join(dir, "app.env")},
				Tmpfs:       []string{"/tmp"},
				DependsOn:   map[string]Dependency{"db": {Condition: ConditionStarted, Required: true}},
				NetworkMode: "container:db",
				Healthcheck: &Healthcheck{Test: []string{"NONE"}, Disable: true},
				StopSignal:  "9",
			},
		},
		{
			name: "anchors and merge keys",
			text: `x-defaults: &defaults
  restart: always
  environment: &env {A: "1"}
image: a
<<: *defaults
labels: *env
healthcheck:
  disable: true
env_file:
  - path: missing.env
    required: false
`,
			want: &Container{
				Name: "web", File: "web.yaml", Image: "a", Restart: "always",
				Environment: []string{"A=1"}, Labels: map[string]string{"A": "1"},
				EnvFile:     []string{filepath.Join(dir, "missing.env")},
				Healthcheck: &Healthcheck{Test: []string{"NONE"}, Disable: true},
			},
		},
		{
			name: "watchdog and network-online",
			text: "image: a\nwatchdog: 1m30s\ndepends_on:\n  network-online:\n  db: {condition: service_ready, restart: true}\n",
			want: &Container{
				Name: "web", File: "web.yaml", Image: "a", Watchdog: 90 * time.Second,
				DependsOn: map[string]Dependency{
					NetworkOnline: {Condition: ConditionStarted, Required: true},
					"db":          {Condition: ConditionReady, Required: true, Restart: true},
				},
			},
		},
		{
			name: "watchdog off",
			text: "image: a\nwatchdog: 0s\ndepends_on: [network-online]\n",
			want: &Container{Name: "web", File: "web.yaml", Image: "a",
				DependsOn: map[string]Dependency{NetworkOnline: {Condition: ConditionStarted, Required: true}}},
		},
		{
			name: "nulls are unset",
			text: "image: a\ncommand:\nports: ~\nrestart: null\n",
			want: &Container{Name: "web", File: "web.yaml", Image: "a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("web.yaml", []byte(tt.text), dir)
			if err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
			if !reflect.DeepEqual(c, tt.want) {
				t.Errorf("decoded\n%#v\nwant\n%#v", c, tt.want)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	dir := envDir(t)
	tests := []struct {
		name string
		file string // default web.yaml
		text string
		want []string // each a prefix of one error, in order; the count must match
	}{
		{name: "empty", text: "", want: []string{"web.yaml:1: field image: required (the manifest is empty)"}},
		{name: "missing image", text: "command: x\n", want: []string{"web.yaml:1: field image: required"}},
		{name: "watchdog unit", text: "image: a\nwatchdog: 10\n", want: []string{`web.yaml:2: field watchdog: "10" needs a unit, such as 10s`}},
		{name: "watchdog tiny", text: "image: a\nwatchdog: 10us\n", want: []string{"web.yaml:2: field watchdog: must be 0 (no watchdog) or at least 1ms"}},
		{name: "watchdog list", text: "image: a\nwatchdog: [1s]\n", want: []string{"web.yaml:2: field watchdog: expected a string, found a list"}},
		{name: "network-online condition", text: "image: a\ndepends_on:\n  network-online: {condition: service_healthy, restart: true}\n", want: []string{
			"web.yaml:3: field depends_on.network-online.condition: network-online takes only service_started",
			"web.yaml:3: field depends_on.network-online.restart: network-online is not a container and never restarts",
		}},
		{name: "network-online reserved", text: "image: a\nname: network-online\n", want: []string{`web.yaml:2: field name: "network-online" is reserved`}},
		{name: "network-online file name", file: "network-online.yaml", text: "image: a\n", want: []string{`network-online.yaml: field name: the file name gives the container name, and "network-online" is reserved`}},
		{name: "unknown field", text: "image: a\nimgae: b\n", want: []string{"web.yaml:2: field imgae: unknown field (did you mean image?)"}},
		{name: "unknown nested", text: "image: a\nhealthcheck:\n  intervall: 1s\n", want: []string{"web.yaml:3: field healthcheck.intervall: unknown field (did you mean interval?)"}},
		{name: "compose only", text: "image: a\ncontainer_name: x\n", want: []string{"web.yaml:2: field container_name: not supported by photon-init: use name"}},
		{name: "duplicate key", text: "image: a\nimage: b\n", want: []string{"web.yaml:2: field image: defined twice (first at line 1)"}},
		{name: "syntax", text: "image: a\n  bad: [\n", want: []string{"web.yaml:2: "}},
		{name: "two documents", text: "image: a\n---\nimage: b\n", want: []string{"web.yaml:2: more than one YAML document"}},
		{name: "not a mapping", text: "- image: a\n", want: []string{"web.yaml:1: a manifest is a mapping of fields"}},
		{name: "image list", text: "image: [a]\n", want: []string{`web.yaml:1: field image: expected a string, found a list`}},
		{name: "image blank", text: "image: \"a b\"\n", want: []string{`web.yaml:1: field image: image reference "a b": invalid reference format`}},
		{name: "image local no path", text: "image: \"oci:\"\n", want: []string{`web.yaml:1: field image: image reference "oci:": no path after "oci:"`}},
		{name: "image uppercase", text: "image: Nginx:1\n", want: []string{`web.yaml:1: field image: image reference "Nginx:1": invalid reference format: repository name (library/Nginx) must be lowercase`}},
		{name: "bad name", text: "image: a\nname: -x\n", want: []string{`web.yaml:2: field name: "-x" is not a valid container name`}},
		{name: "long name", text: "image: a\nname: " + strings.Repeat("a", 64) + "\n", want: []string{`web.yaml:2: field name: "aaaa`}},
		{name: "bad file name", file: "my app.yaml", text: "image: a\n", want: []string{`my app.yaml: field name: the file name gives the container name, and "my app" is not a valid container name`}},
		{name: "command mapping", text: "image: a\ncommand: {a: 1}\n", want: []string{"web.yaml:2: field command: expected a string or a list of strings, found a mapping"}},
		{name: "entrypoint item", text: "image: a\nentrypoint:\n  - sh\n  - {c: d}\n", want: []string{"web.yaml:4: field entrypoint[1]: expected a string, found a mapping"}},
		{name: "command quotes", text: "image: a\ncommand: echo 'unterminated\n", want: []string{`web.yaml:2: field command: "echo 'unterminated": unbalanced quotes`}},
		{name: "command operator", text: "image: a\ncommand: echo a && echo b\n", want: []string{`web.yaml:2: field command: "echo a && echo b": shell operators`}},
		{name: "env dup", text: "image: a\nenvironment:\n  - A=1\n  - A=2\n", want: []string{"web.yaml:4: field environment[1]: A is set twice (first at line 3)"}},
		{name: "env key", text: "image: a\nenvironment:\n  \"A B\": 1\n", want: []string{`web.yaml:3: field environment.A B: variable name "A B" contains a blank or =`}},
		{name: "env empty key", text: "image: a\nenvironment: [=1]\n", want: []string{"web.yaml:2: field environment[0]: empty variable name"}},
		{name: "env value list", text: "image: a\nenvironment:\n  A: [1]\n", want: []string{"web.yaml:3: field environment.A: expected a string, found a list"}},
		{name: "env_file missing", text: "image: a\nenv_file: nope.env\n", want: []string{"web.yaml:2: field env_file: read " + filepath.Join(dir, "nope.env") + ": no such file or directory"}},
		{name: "env_file bad line", text: "image: a\nenv_file:\n  - app.env\n  - bad.env\n", want: []string{"web.yaml:4: field env_file[1]: " + filepath.Join(dir, "bad.env") + `:2: variable name "BAD KEY" contains blanks`}},
		{name: "env_file no name", text: "image: a\nenv_file: [empty.env]\n", want: []string{"web.yaml:2: field env_file[0]: " + filepath.Join(dir, "empty.env") + ":1: no variable name"}},
		{name: "env_file long no path", text: "image: a\nenv_file:\n  - required: true\n", want: []string{"web.yaml:3: field env_file[0].path: required"}},
		{name: "working_dir", text: "image: a\nworking_dir: srv\n", want: []string{`web.yaml:2: field working_dir: "srv" is not an absolute path`}},
		{name: "user", text: "image: a\nuser: a:b:c\n", want: []string{`web.yaml:2: field user: "a:b:c" is not a user`}},
		{name: "hostname", text: "image: a\nhostname: -h\n", want: []string{`web.yaml:2: field hostname: "-h" is not a valid host name`}},
		{name: "network mode", text: "image: a\nnetwork_mode: bridged\n", want: []string{`web.yaml:2: field network_mode: "bridged" is not a network mode`}},
		{name: "network self", text: "image: a\nnetwork_mode: container:web\n", want: []string{"web.yaml:2: field network_mode: a container cannot share its own network"}},
		{name: "network bad name", text: "image: a\nnetwork_mode: \"container:\"\n", want: []string{`web.yaml:2: field network_mode: "" is not a valid container name`}},
		{name: "ports with host", text: "image: a\nnetwork_mode: host\nports: [\"80:80\"]\n", want: []string{"web.yaml:3: field ports: ports are published only with bridge networking, not with network_mode host"}},
		{name: "hostname shared", text: "image: a\nnetwork_mode: container:db\nhostname: x\n", want: []string{"web.yaml:3: field hostname: a container sharing another's network"}},
		{name: "net sysctl host", text: "image: a\nnetwork_mode: host\nsysctls: {net.ipv4.ip_forward: 1}\n", want: []string{"web.yaml:3: field sysctls: net.* sysctls need"}},
		{name: "port range", text: "image: a\nports:\n  - 80:80\n  - \"70000:80\"\n", want: []string{`web.yaml:4: field ports[1]: "70000:80": host port: "70000" is not a port (1-65535)`}},
		{name: "port proto", text: "image: a\nports: [\"80/sctp\"]\n", want: []string{`web.yaml:2: field ports[0]: "80/sctp": protocol must be tcp or udp`}},
		{name: "port ip", text: "image: a\nports: [\"1.2.3:80:80\"]\n", want: []string{`web.yaml:2: field ports[0]: "1.2.3:80:80": "1.2.3" is not an IPv4 address`}},
		{name: "port ipv6 bare", text: "image: a\nports: [\"::1:80:80\"]\n", want: []string{`web.yaml:2: field ports[0]: "::1:80:80": expected [HOST_IP:][HOST:]CONTAINER`}},
		{name: "port ip no host", text: "image: a\nports: [\"127.0.0.1::80\"]\n", want: []string{`web.yaml:2: field ports[0]: "127.0.0.1::80": a host IP needs a host port`}},
		{name: "port ranges differ", text: "image: a\nports: [\"8000-8010:80\"]\n", want: []string{`web.yaml:2: field ports[0]: "8000-8010:80": the host and container ranges differ in size`}},
		{name: "port range backwards", text: "image: a\nports: [\"90-80\"]\n", want: []string{`web.yaml:2: field ports[0]: "90-80": container port: range "90-80" ends before it starts`}},
		{name: "port clash", text: "image: a\nports:\n  - \"8080:80\"\n  - \"127.0.0.1:8080:81\"\n  - \"8080:80/udp\"\n", want: []string{"web.yaml:4: field ports[1]: host port 8080/tcp is already published by ports[0] (line 3)"}},
		{name: "port long no target", text: "image: a\nports:\n  - published: 80\n", want: []string{"web.yaml:3: field ports[0].target: required"}},
		{name: "port long mode", text: "image: a\nports:\n  - {target: 80, mode: swarm}\n", want: []string{`web.yaml:3: field ports[0].mode: "swarm" is not host or ingress`}},
		{name: "volume mode", text: "image: a\nvolumes:\n  - /a:/data:rx\n", want: []string{`web.yaml:3: field volumes[0]: "/a:/data:rx": mode "rx" is not ro or rw`}},
		{name: "volume relative target", text: "image: a\nvolumes: [\"/a:data\"]\n", want: []string{`web.yaml:2: field volumes[0]: "/a:data": target: "data" is not an absolute path`}},
		{name: "volume root target", text: "image: a\nvolumes: [\"/a:/\"]\n", want: []string{`web.yaml:2: field volumes[0]: "/a:/": target: cannot mount over /`}},
		{name: "volume bad name", text: "image: a\nvolumes: [\"~/x:/x\"]\n", want: []string{`web.yaml:2: field volumes[0]: "~/x:/x": source "~/x" is neither a path`}},
		{name: "volume too many parts", text: "image: a\nvolumes: [\"/a:/b:ro:x\"]\n", want: []string{`web.yaml:2: field volumes[0]: "/a:/b:ro:x": expected SOURCE:TARGET`}},
		{name: "volume dup target", text: "image: a\nvolumes:\n  - /a:/data\n  - b:/data/\n", want: []string{"web.yaml:4: field volumes[1]: target /data is already mounted by volumes[0] (line 3)"}},
		{name: "tmpfs clash", text: "image: a\nvolumes: [\"/a:/tmp\"]\ntmpfs: [/tmp]\n", want: []string{"web.yaml:3: field tmpfs[0]: target /tmp is already mounted by volumes[0] (line 2)"}},
		{name: "volume long", text: "image: a\nvolumes:\n  - type: bind\n    target: /x\n  - {type: tmpfs, source: s, target: /y}\n  - {type: volume, target: /z, tmpfs: {size: 1m}}\n  - {type: npipe, target: /w}\n  - {type: volume}\n",
			want: []string{
				"web.yaml:3: field volumes[0].source: required for a bind mount",
				"web.yaml:5: field volumes[1].source: a tmpfs has no source",
				"web.yaml:6: field volumes[2].tmpfs: only for type: tmpfs",
				`web.yaml:7: field volumes[3].type: "npipe" is not bind, volume or tmpfs`,
				"web.yaml:8: field volumes[4].target: required",
			}},
		{name: "volume long unknown", text: "image: a\nvolumes:\n  - {type: bind, source: /a, target: /b, bind: {propagation: rshared}}\n", want: []string{"web.yaml:3: field volumes[0].bind: unknown field"}},
		{name: "tmpfs option", text: "image: a\ntmpfs: \"/tmp:size=1q\"\n", want: []string{`web.yaml:2: field tmpfs: "/tmp:size=1q": size: "1q" is not a size`}},
		{name: "tmpfs unknown option", text: "image: a\ntmpfs: [\"/tmp:sync\"]\n", want: []string{`web.yaml:2: field tmpfs[0]: "/tmp:sync": unknown tmpfs option "sync"`}},
		{name: "tmpfs mode", text: "image: a\ntmpfs: [\"/tmp:mode=999\"]\n", want: []string{`web.yaml:2: field tmpfs[0]: "/tmp:mode=999": mode "999" is not an octal file mode`}},
		{name: "read_only yes", text: "image: a\nread_only: yes\n", want: []string{`web.yaml:2: field read_only: expected true or false, found the string "yes"`}},
		{name: "privileged number", text: "image: a\nprivileged: 1\n", want: []string{"web.yaml:2: field privileged: expected true or false, found a number (1)"}},
		{name: "cap unknown", text: "image: a\ncap_add: [NET_ADMN]\n", want: []string{`web.yaml:2: field cap_add[0]: "NET_ADMN" is not a capability`}},
		{name: "cap string", text: "image: a\ncap_add: NET_ADMIN\n", want: []string{`web.yaml:2: field cap_add: expected a list, found the string "NET_ADMIN"`}},
		{name: "cap both", text: "image: a\ncap_drop: [CAP_CHOWN]\ncap_add: [chown]\n", want: []string{"web.yaml:3: field cap_add[0]: CAP_CHOWN is in both cap_add and cap_drop"}},
		{name: "mem_limit unit", text: "image: a\nmem_limit: 12x\n", want: []string{`web.yaml:2: field mem_limit: "12x" is not a size`}},
		{name: "mem_limit small", text: "image: a\nmem_limit: 1k\n", want: []string{"web.yaml:2: field mem_limit: 1024 bytes is below the smallest limit, 6m"}},
		{name: "cpus", text: "image: a\ncpus: -1\n", want: []string{`web.yaml:2: field cpus: "-1" is not a number of CPUs`}},
		{name: "pids_limit", text: "image: a\npids_limit: -5\n", want: []string{"web.yaml:2: field pids_limit: -5: must be a positive number"}},
		{name: "pids_limit text", text: "image: a\npids_limit: many\n", want: []string{`web.yaml:2: field pids_limit: expected an integer, found the string "many"`}},
		{name: "ulimits", text: "image: a\nulimits:\n  nofiles: 10\n  nproc: {soft: 10}\n  core: {soft: 20, hard: 10}\n  stack: {soft: 1, hard: 2, max: 3}\n  memlock: x\n",
			want: []string{
				`web.yaml:3: field ulimits.nofiles: "nofiles" is not a ulimit`,
				"web.yaml:4: field ulimits.nproc: needs both soft and hard",
				"web.yaml:5: field ulimits.core: soft limit 20 is above hard limit 10",
				"web.yaml:6: field ulimits.stack.max: unknown field",
				`web.yaml:7: field ulimits.memlock: expected an integer, found the string "x"`,
			}},
		{name: "sysctl not namespaced", text: "image: a\nsysctls: [kernel.panic=1]\n", want: []string{`web.yaml:2: field sysctls[0]: "kernel.panic" is not namespaced`}},
		{name: "sysctl no value", text: "image: a\nsysctls:\n  - net.core.somaxconn\n", want: []string{"web.yaml:3: field sysctls[0]: net.core.somaxconn has no value"}},
		{name: "devices", text: "image: a\ndevices:\n  - dev/sda\n  - /dev/sda:/dev/sdb:rx\n  - /dev/a:/dev/b\n  - /dev/c:/dev/b\n",
			want: []string{
				`web.yaml:3: field devices[0]: "dev/sda": host device "dev/sda" is not an absolute path`,
				`web.yaml:4: field devices[1]: "/dev/sda:/dev/sdb:rx": permissions "rx" are not a combination of r, w and m`,
				"web.yaml:6: field devices[3]: device /dev/b is already given by devices[2] (line 5)",
			}},
		{name: "labels dup", text: "image: a\nlabels: [a=1, a=2]\n", want: []string{"web.yaml:2: field labels[1]: a is set twice"}},
		{name: "stop_signal", text: "image: a\nstop_signal: SIGFOO\n", want: []string{`web.yaml:2: field stop_signal: "SIGFOO" is not a signal`}},
		{name: "stop_signal number", text: "image: a\nstop_signal: 65\n", want: []string{`web.yaml:2: field stop_signal: "65" is not a signal`}},
		{name: "stop_grace_period unit", text: "image: a\nstop_grace_period: 10\n", want: []string{`web.yaml:2: field stop_grace_period: "10" needs a unit, such as 10s`}},
		{name: "stop_grace_period bad", text: "image: a\nstop_grace_period: 10x\n", want: []string{`web.yaml:2: field stop_grace_period: "10x" is not a duration`}},
		{name: "stop_grace_period negative", text: "image: a\nstop_grace_period: -1s\n", want: []string{`web.yaml:2: field stop_grace_period: "-1s" is negative`}},
		{name: "restart", text: "image: a\nrestart: sometimes\n", want: []string{`web.yaml:2: field restart: "sometimes" is not a restart policy`}},
		{name: "restart count", text: "image: a\nrestart: on-failure:x\n", want: []string{`web.yaml:2: field restart: "on-failure:x": the retry count`}},
		{name: "depends_on dup", text: "image: a\ndepends_on: [db, db]\n", want: []string{"web.yaml:2: field depends_on[1]: db is listed twice"}},
		{name: "depends_on self", text: "image: a\ndepends_on: [web]\n", want: []string{"web.yaml:2: field depends_on: a container cannot depend on itself (web)"}},
		{name: "depends_on string", text: "image: a\ndepends_on: db\n", want: []string{`web.yaml:2: field depends_on: expected a list of names or a mapping`}},
		{name: "depends_on map", text: "image: a\ndepends_on:\n  db:\n    condition: service_up\n    required: \"yes\"\n  \"bad name\": {}\n",
			want: []string{
				`web.yaml:4: field depends_on.db.condition: "service_up" is not service_started`,
				`web.yaml:5: field depends_on.db.required: expected true or false`,
				`web.yaml:6: field depends_on.bad name: "bad name" is not a valid container name`,
			}},
		{name: "healthcheck", text: "image: a\nhealthcheck:\n  test: [CMD]\n  interval: 0s\n  retries: -1\n",
			want: []string{
				"web.yaml:3: field healthcheck.test: CMD takes a program and its arguments",
				"web.yaml:4: field healthcheck.interval: must be at least 1ms",
				"web.yaml:5: field healthcheck.retries: -1 is not a retry count",
			}},
		{name: "healthcheck kind", text: "image: a\nhealthcheck:\n  test: [RUN, x]\n", want: []string{`web.yaml:3: field healthcheck.test: a list test starts with "CMD", "CMD-SHELL" or "NONE", not "RUN"`}},
		{name: "healthcheck shell args", text: "image: a\nhealthcheck:\n  test: [CMD-SHELL, a, b]\n", want: []string{"web.yaml:3: field healthcheck.test: CMD-SHELL takes exactly one shell command string"}},
		{name: "healthcheck disable and test", text: "image: a\nhealthcheck:\n  test: [CMD, true]\n  disable: true\n", want: []string{"web.yaml:3: field healthcheck.test: disable: true and a test cannot go together"}},
		{name: "healthcheck not mapping", text: "image: a\nhealthcheck: curl x\n", want: []string{`web.yaml:2: field healthcheck: expected a mapping, found the string "curl x"`}},
		{name: "logging driver", text: "image: a\nlogging:\n  driver: json-file\n", want: []string{"web.yaml:3: field logging.driver: not supported: photon-init's logging takes max_size and max_files"}},
		{name: "logging values", text: "image: a\nlogging: {max_size: 1k, max_files: 0}\n",
			want: []string{
				"web.yaml:2: field logging.max_size: 1024 bytes is below the smallest log file, 4k",
				"web.yaml:2: field logging.max_files: 0 is not a number of files (1 to 1000)",
			}},
		{name: "merge key not mapping", text: "image: a\n<<: 3\n", want: []string{"web.yaml:2: field <<: a merge key needs a mapping"}},
		{name: "many errors at once", text: "image: a\nrestart: sometimes\nbogus: 1\nports: [\"x\"]\nuser: \"\"\n",
			want: []string{
				`web.yaml:2: field restart: "sometimes"`,
				"web.yaml:3: field bogus: unknown field",
				`web.yaml:4: field ports[0]: "x": container port`,
				`web.yaml:5: field user: "" is not a user`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := tt.file
			if file == "" {
				file = "web.yaml"
			}
			c, err := Parse(file, []byte(tt.text), dir)
			if err == nil {
				t.Fatalf("no error; decoded %+v", c)
			}
			if c != nil {
				t.Errorf("a failed parse returned a container: %+v", c)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			if len(es) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(es), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(es[i].Error(), w) {
					t.Errorf("error %d:\n got %s\nwant %s...", i, es[i].Error(), w)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db.yml")
	if err := os.WriteFile(path, []byte("image: postgres:16\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || c.Name != "db" || c.File != path || c.Image != "postgres:16" {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	_, err = Load(filepath.Join(dir, "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) error = %v, want ErrNotExist", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, maxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load(big) error = %v", err)
	}
}

// TestParseHostile checks that YAML built to loop or to blow up ends in
// an error, quickly.
func TestParseHostile(t *testing.T) {
	bomb := "image: a\nx-0: &a0 {k0: v}\n"
	for i := 1; i < 30; i++ {
		bomb += fmt.Sprintf("x-%d: &a%d {<<: [*a%d, *a%d, *a%d, *a%d]}\n", i, i, i-1, i-1, i-1, i-1)
	}
	bomb += "labels: {<<: *a29}\n"
	tests := []struct {
		name, text, want string
	}{
		{"self merge", "image: a\nx-a: &x {<<: *x}\n<<: *x\n", "merge keys nested too deep"},
		{"self list", "image: a\nx-a: &x [*x]\nenvironment: *x\n", "expected a string, found a list"},
		{"merge bomb", bomb, "expand too much"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, err := Parse("w.yaml", []byte(tt.text), "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// FuzzParse checks that no input makes Parse panic or loop.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"image: a\n", "image: a\nports: [\"80:80\"]\nvolumes: [/a:/b]\n",
		"image: a\nx-a: &x {restart: always}\n<<: *x\n",
		"image: a\nhealthcheck: {test: [CMD, x], interval: 1s}\ndepends_on: {db: {condition: service_healthy}}\n",
		"image: a\nulimits: {nofile: {soft: 1, hard: 2}}\ntmpfs: /t:size=1m\ndevices: [/dev/x:rw]\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse("f.yaml", []byte(s), t.TempDir())
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse(%q) = %v, %v: want exactly one of them", s, c, err)
		}
	})
}
