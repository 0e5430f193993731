package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/photon-init/photon-init/pkg/config"
	"github.com/photon-init/photon-init/pkg/containers/image"
)

// DefaultDir is where the manifests live (init.yaml's containers.dir may
// say otherwise).
const DefaultDir = config.DefaultContainersDir

// VolumesDir is where named volumes are kept: /var/lib/photon/volumes/NAME.
const VolumesDir = "/var/lib/photon/volumes"

// maxFileSize bounds a manifest or an env_file: PID 1 reads them.
const maxFileSize = 1 << 20

// Load reads and checks the manifest at path. Relative paths in it
// (env_file, bind sources) are taken from path's directory. On failure it
// returns nil and an Errors value naming every problem with its file, line
// and field; a read failure is an Errors whose one entry wraps the
// os error (errors.Is(err, fs.ErrNotExist) works).
func Load(path string) (*Container, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error(), Err: err}}
	}
	return Parse(path, data, filepath.Dir(path))
}

// readLimited reads a file of at most maxFileSize bytes.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return data, nil
}

// Parse decodes and checks one manifest's text. file names it in errors
// and gives the default container name (the base name without its
// extension); dir is the directory that env_file and relative bind
// sources are relative to ("" means file's directory). env_file files are
// read now. On failure it returns nil and an Errors value.
func Parse(file string, data []byte, dir string) (*Container, error) {
	c, _, errs := parse(file, data, dir)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// parse is Parse, also returning where the fields that cross-file checks
// name were written.
func parse(file string, data []byte, dir string) (c *Container, d *decoder, errs Errors) {
	if dir == "" {
		dir = filepath.Dir(file)
	}
	d = &decoder{file: file, dir: dir, placedCaps: map[string][]placed{}, placedDeps: map[string]placed{}}
	defer func() {
		// PID 1 parses manifests: a bug here must cost one file, not
		// the machine.
		if r := recover(); r != nil {
			c, errs = nil, Errors{{File: file, Msg: fmt.Sprintf("internal error while decoding (please report): %v", r)}}
		}
	}()
	c = d.document(data)
	if len(d.errs) > 0 {
		sortErrors(d.errs)
		return nil, d, Errors(d.errs)
	}
	return c, d, nil
}

// The regular expressions are compiled on first use, not at package init,
// which every exec of the binary pays (PID 1 and each container's init).
var yamlLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`) })

// document parses the YAML text: exactly one document holding a mapping.
func (d *decoder) document(data []byte) *Container {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			e := &Error{File: d.file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
			if m := yamlLine().FindStringSubmatch(err.Error()); m != nil {
				e.Line, _ = strconv.Atoi(m[1])
				e.Msg = m[2]
			}
			d.errs = append(d.errs, e)
			return nil
		}
		docs = append(docs, &n)
	}
	if len(docs) > 1 {
		d.errorf(docs[1], "", "more than one YAML document: a manifest holds one container")
		return nil
	}
	if len(docs) == 0 || len(docs[0].Content) == 0 || isNull(docs[0].Content[0]) {
		d.errs = append(d.errs, &Error{File: d.file, Line: 1, Field: "image", Msg: "required (the manifest is empty)"})
		return nil
	}
	root := docs[0].Content[0]
	if resolve(root).Kind != yaml.MappingNode {
		d.errorf(root, "", "a manifest is a mapping of fields (image: ..., command: ...), found %s", describe(root))
		return nil
	}
	return d.container(root)
}

// composeOnly explains Compose service keys that photon-init does not take.
var composeOnly = map[string]string{
	"container_name": "use name",
	"build":          "photon-init runs images, it does not build them",
	"networks":       "use network_mode",
	"links":          "use depends_on",
	"expose":         "image ports need no exposing; use ports to publish",
	"deploy":         "use restart, mem_limit, cpus and pids_limit",
	"extends":        "use a YAML anchor in the same file",
}

// container decodes the top-level mapping.
func (d *decoder) container(root *yaml.Node) *Container {
	c := &Container{File: d.file}
	var (
		envFile, environment []keyValue
		imageSet, nameSet    bool
		lines                = map[string]*yaml.Node{} // field -> value node, for cross-checks
	)
	setStr := func(dst *string, check func(string) error) fieldFunc {
		return func(n *yaml.Node, f string) {
			s, ok := d.str(n, f)
			if !ok {
				return
			}
			if check != nil {
				if err := check(s); err != nil {
					d.errorf(n, f, "%v", err)
					return
				}
			}
			*dst = s
		}
	}
	setBool := func(dst *bool) fieldFunc {
		return func(n *yaml.Node, f string) {
			if v, ok := d.boolean(n, f); ok {
				*dst = v
			}
		}
	}
	known := map[string]fieldFunc{
		"name": func(n *yaml.Node, f string) {
			setStr(&c.Name, checkContainerName)(n, f)
			nameSet = true
		},
		"image": func(n *yaml.Node, f string) {
			imageSet = true
			setStr(&c.Image, checkImage)(n, f)
		},
		"entrypoint":  func(n *yaml.Node, f string) { c.Entrypoint = d.command(n, f) },
		"command":     func(n *yaml.Node, f string) { c.Command = d.command(n, f) },
		"environment": func(n *yaml.Node, f string) { environment, _ = d.keyValues(n, f) },
		"env_file":    func(n *yaml.Node, f string) { envFile = d.envFiles(n, f, c) },
		"working_dir": setStr(&c.WorkingDir, checkWorkingDir),
		"user":        setStr(&c.User, checkUser),
		"hostname":    setStr(&c.Hostname, checkHostname),
		"network_mode": func(n *yaml.Node, f string) {
			setStr(&c.NetworkMode, nil)(n, f)
			mode, err := normalizeNetworkMode(c.NetworkMode)
			if err != nil {
				d.errorf(n, f, "%v", err)
			}
			c.NetworkMode = mode
		},
		"ports":             func(n *yaml.Node, f string) { c.Ports = d.ports(n, f) },
		"volumes":           func(n *yaml.Node, f string) { c.Volumes = d.volumes(n, f) },
		"tmpfs":             func(n *yaml.Node, f string) { c.Tmpfs = d.tmpfs(n, f) },
		"devices":           func(n *yaml.Node, f string) { c.Devices = d.devices(n, f) },
		"read_only":         setBool(&c.ReadOnly),
		"privileged":        setBool(&c.Privileged),
		"cap_add":           func(n *yaml.Node, f string) { c.CapAdd = d.caps(n, f) },
		"cap_drop":          func(n *yaml.Node, f string) { c.CapDrop = d.caps(n, f) },
		"mem_limit":         func(n *yaml.Node, f string) { c.MemLimit = d.memLimit(n, f) },
		"cpus":              func(n *yaml.Node, f string) { c.Cpus = d.cpus(n, f) },
		"pids_limit":        func(n *yaml.Node, f string) { c.PidsLimit = d.pidsLimit(n, f) },
		"ulimits":           func(n *yaml.Node, f string) { c.Ulimits = d.ulimits(n, f) },
		"sysctls":           func(n *yaml.Node, f string) { c.Sysctls = d.sysctls(n, f) },
		"labels":            func(n *yaml.Node, f string) { c.Labels = d.labels(n, f) },
		"stop_signal":       func(n *yaml.Node, f string) { c.StopSignal = d.stopSignal(n, f) },
		"stop_grace_period": func(n *yaml.Node, f string) { c.StopGracePeriod, _ = d.duration(n, f) },
		"restart": setStr(&c.Restart, func(s string) error {
			_, _, err := ParseRestart(s)
			return err
		}),
		"depends_on":  func(n *yaml.Node, f string) { c.DependsOn = d.dependsOn(n, f) },
		"healthcheck": func(n *yaml.Node, f string) { c.Healthcheck = d.healthcheck(n, f) },
		"watchdog":    func(n *yaml.Node, f string) { c.Watchdog = d.watchdog(n, f) },
		"logging":     func(n *yaml.Node, f string) { c.Logging = d.logging(n, f) },
	}
	for k, h := range known {
		known[k] = func(n *yaml.Node, f string) {
			lines[k] = n
			h(n, f)
		}
	}
	d.fields(root, "", known, func(key string) string {
		if strings.HasPrefix(key, "x-") {
			return "-" // Compose extension field: ignored (a home for anchors)
		}
		if why, ok := composeOnly[key]; ok {
			return "not supported by photon-init: " + why
		}
		return ""
	})
	if !imageSet {
		d.errorf(root, "image", "required")
	}
	if !nameSet {
		base := filepath.Base(d.file)
		c.Name = strings.TrimSuffix(base, filepath.Ext(base))
		if err := checkContainerName(c.Name); err != nil {
			d.errs = append(d.errs, &Error{File: d.file, Field: "name",
				Msg: fmt.Sprintf("the file name gives the container name, and %v; rename the file or set name", err)})
		}
	}
	c.Environment = d.mergeEnv(envFile, environment)
	d.crossChecks(c, lines)
	d.nameNode, d.networkNode = lines["name"], lines["network_mode"]
	return c
}

// checkContainerName validates the name a container is given: a valid
// name that is not reserved for a pseudo-dependency.
func checkContainerName(s string) error {
	if s == NetworkOnline {
		return fmt.Errorf("%q is reserved: depends_on: [%s] waits for the machine's network", s, NetworkOnline)
	}
	return checkName(s)
}

// checkName validates a container name.
func checkName(s string) error {
	if !ValidName(s) {
		return fmt.Errorf("%q is not a valid container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, at most %d characters)", s, MaxNameLen)
	}
	return nil
}

// checkImage parses the reference as the image store will.
func checkImage(s string) error {
	_, err := image.ParseReference(s)
	return err
}

func isBlank(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == 0 }

func checkWorkingDir(s string) error {
	if !filepath.IsAbs(s) {
		return fmt.Errorf("%q is not an absolute path", s)
	}
	return nil
}

func checkUser(s string) error {
	if !userPattern().MatchString(s) {
		return fmt.Errorf("%q is not a user (uid, uid:gid, name or name:group)", s)
	}
	return nil
}

func checkHostname(s string) error {
	if !config.ValidHostname(s) {
		return fmt.Errorf("%q is not a valid host name", s)
	}
	return nil
}

// normalizeNetworkMode accepts host, none, bridge, container:NAME and
// Compose's service:NAME (written as container:NAME).
func normalizeNetworkMode(s string) (string, error) {
	switch s {
	case "host", "none", "bridge":
		return s, nil
	}
	for _, p := range []string{"container:", "service:"} {
		if name, ok := strings.CutPrefix(s, p); ok {
			if err := checkName(name); err != nil {
				return "", err
			}
			return "container:" + name, nil
		}
	}
	return "", fmt.Errorf("%q is not a network mode (host, none, bridge or container:NAME)", s)
}

// NetworkContainer returns NAME for network_mode container:NAME, else "".
func (c *Container) NetworkContainer() string {
	name, _ := strings.CutPrefix(c.NetworkMode, "container:")
	if name == c.NetworkMode {
		return ""
	}
	return name
}

// command decodes entrypoint or command: a list of strings, or one string
// split into words with shell-like quoting (as Compose does, with
// go-shellwords, and no variable expansion). An empty string or list
// gives an empty, non-nil slice (reset the image's value).
func (d *decoder) command(n *yaml.Node, field string) []string {
	r := resolve(n)
	if r != nil && r.Kind == yaml.ScalarNode {
		s, ok := d.str(n, field)
		if !ok {
			return nil
		}
		words, err := splitCommand(s)
		if err != nil {
			d.errorf(n, field, "%v", err)
			return nil
		}
		return words
	}
	items, ok := d.stringList(n, field)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, it.val)
	}
	return out
}

// envFiles reads every env_file entry (a path, or {path, required}).
func (d *decoder) envFiles(n *yaml.Node, field string, c *Container) []keyValue {
	var nodes []*yaml.Node
	r := resolve(n)
	if r != nil && r.Kind == yaml.SequenceNode {
		nodes = r.Content
	} else {
		nodes = []*yaml.Node{n}
	}
	var out []keyValue
	for i, item := range nodes {
		f := field
		if len(nodes) > 1 || item != n {
			f = index(field, i)
		}
		path, required := "", true
		if ri := resolve(item); ri != nil && ri.Kind == yaml.MappingNode {
			d.fields(item, f, map[string]fieldFunc{
				"path": func(n *yaml.Node, f string) { path, _ = d.str(n, f) },
				"required": func(n *yaml.Node, f string) {
					if v, ok := d.boolean(n, f); ok {
						required = v
					}
				},
			}, nil)
			if path == "" {
				d.errorf(item, join(f, "path"), "required")
				continue
			}
		} else {
			var ok bool
			if path, ok = d.str(item, f); !ok {
				continue
			}
		}
		full := hostPath(path, d.dir)
		c.EnvFile = append(c.EnvFile, full)
		data, err := readLimited(full)
		if err != nil {
			if !required && errors.Is(err, os.ErrNotExist) {
				continue
			}
			d.errorf(item, f, "read %s: %v", full, unwrapPathError(err))
			continue
		}
		kvs, err := parseEnvFile(full, data)
		if err != nil {
			d.errorf(item, f, "%v", err)
			continue
		}
		for j := range kvs {
			kvs[j].node, kvs[j].field = item, f
		}
		out = append(out, kvs...)
	}
	return out
}

// unwrapPathError drops the path from an *os.PathError (it is already in
// the message).
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// mergeEnv combines env_file entries and environment: later entries
// override earlier ones by key, keeping the first position; entries
// without a value are dropped (there is no host environment to take them
// from). A key given twice in environment is an error.
func (d *decoder) mergeEnv(files, env []keyValue) []string {
	var keys []string
	vals := map[string]string{}
	set := func(kv keyValue) {
		if !kv.hasVal {
			return
		}
		if _, ok := vals[kv.key]; !ok {
			keys = append(keys, kv.key)
		}
		vals[kv.key] = kv.val
	}
	for _, kv := range files {
		set(kv)
	}
	seen := map[string]int{}
	for _, kv := range env {
		if err := checkEnvKey(kv.key); err != nil {
			d.errorf(kv.node, kv.field, "%v", err)
			continue
		}
		if first, dup := seen[kv.key]; dup {
			d.errorf(kv.node, kv.field, "%s is set twice (first at line %d)", kv.key, first)
			continue
		}
		seen[kv.key] = kv.node.Line
		set(kv)
	}
	if len(keys) == 0 {
		return nil
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + vals[k]
	}
	return out
}

// checkEnvKey refuses empty names and names with blanks or "=".
func checkEnvKey(k string) error {
	if k == "" {
		return errors.New("empty variable name")
	}
	if strings.ContainsFunc(k, isBlank) || strings.Contains(k, "=") {
		return fmt.Errorf("variable name %q contains a blank or =", k)
	}
	return nil
}

// ports decodes `ports`: short strings, bare numbers, or long-syntax
// mappings {target, published, host_ip, protocol, mode}.
func (d *decoder) ports(n *yaml.Node, field string) []Port {
	long := func(it *yaml.Node, f string) ([]Port, bool) {
		spec := d.longPort(it, f)
		if spec == "" {
			return nil, false
		}
		ps, err := parsePorts(spec)
		if err != nil {
			d.errorf(it, f, "%v", err)
			return nil, false
		}
		return ps, true
	}
	return decodeList(d, n, field, parsePorts, long, func(p Port, f string, it *yaml.Node) {
		d.placedPorts = append(d.placedPorts, placedPort{p, f, it})
	})
}

// longPort turns Compose's long port syntax into the short one.
func (d *decoder) longPort(n *yaml.Node, field string) string {
	var target, published, hostIP, proto string
	d.fields(n, field, map[string]fieldFunc{
		"target":    func(n *yaml.Node, f string) { target, _ = d.str(n, f) },
		"published": func(n *yaml.Node, f string) { published, _ = d.str(n, f) },
		"host_ip":   func(n *yaml.Node, f string) { hostIP, _ = d.str(n, f) },
		"protocol":  func(n *yaml.Node, f string) { proto, _ = d.str(n, f) },
		"mode": func(n *yaml.Node, f string) {
			if m, ok := d.str(n, f); ok && m != "host" && m != "ingress" {
				d.errorf(n, f, "%q is not host or ingress", m)
			}
		},
	}, nil)
	if target == "" {
		d.errorf(n, join(field, "target"), "required")
		return ""
	}
	spec := target
	if published != "" {
		spec = published + ":" + spec
		if hostIP != "" {
			if strings.Contains(hostIP, ":") {
				hostIP = "[" + hostIP + "]"
			}
			spec = hostIP + ":" + spec
		}
	} else if hostIP != "" {
		d.errorf(n, join(field, "host_ip"), "needs published")
		return ""
	}
	if proto != "" {
		spec += "/" + proto
	}
	return spec
}

// volumes decodes `volumes`: short strings or long-syntax mappings.
func (d *decoder) volumes(n *yaml.Node, field string) []Volume {
	short := func(s string) ([]Volume, error) {
		v, err := parseVolume(s, d.dir)
		return []Volume{v}, err
	}
	long := func(it *yaml.Node, f string) ([]Volume, bool) {
		v, ok := d.longVolume(it, f)
		return []Volume{v}, ok
	}
	return decodeList(d, n, field, short, long, func(v Volume, f string, it *yaml.Node) {
		d.placedMounts = append(d.placedMounts, placed{v.Target, f, it})
	})
}

// longVolume decodes {type, source, target, read_only, tmpfs: {size, mode}}.
func (d *decoder) longVolume(n *yaml.Node, field string) (Volume, bool) {
	var v Volume
	var typ, source, target string
	var tmpfsNode *yaml.Node
	good := true
	d.fields(n, field, map[string]fieldFunc{
		"type":   func(n *yaml.Node, f string) { typ, _ = d.str(n, f) },
		"source": func(n *yaml.Node, f string) { source, _ = d.str(n, f) },
		"target": func(n *yaml.Node, f string) { target, _ = d.str(n, f) },
		"read_only": func(n *yaml.Node, f string) {
			v.ReadOnly, _ = d.boolean(n, f)
		},
		"tmpfs": func(n *yaml.Node, f string) {
			tmpfsNode = n
			d.fields(n, f, map[string]fieldFunc{
				"size": func(n *yaml.Node, f string) { v.TmpfsSize, _ = d.byteSize(n, f) },
				"mode": func(n *yaml.Node, f string) {
					if s, ok := d.str(n, f); ok {
						m, err := parseMode(s)
						if err != nil {
							d.errorf(n, f, "%v", err)
						}
						v.TmpfsMode = m
					}
				},
			}, nil)
		},
	}, nil)
	bad := func(f, format string, a ...any) {
		d.errorf(n, join(field, f), format, a...)
		good = false
	}
	switch typ {
	case "bind":
		v.Type = VolumeBind
		if source == "" {
			bad("source", "required for a bind mount")
		} else {
			v.Source = hostPath(source, d.dir)
		}
	case "volume":
		v.Type = VolumeNamed
		if source == "" {
			v.Type = VolumeNoName
		} else if !ValidName(source) {
			bad("source", "%q is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)", source)
		} else {
			v.Source = source
		}
	case "tmpfs":
		v.Type = VolumeTmpfs
		if source != "" {
			bad("source", "a tmpfs has no source")
		}
	case "":
		bad("type", "required (bind, volume or tmpfs)")
	default:
		bad("type", "%q is not bind, volume or tmpfs", typ)
	}
	if tmpfsNode != nil && typ != "tmpfs" {
		d.errorf(tmpfsNode, join(field, "tmpfs"), "only for type: tmpfs")
		good = false
	}
	if target == "" {
		bad("target", "required")
	} else if t, err := containerPath(target); err != nil {
		bad("target", "%v", err)
	} else {
		v.Target = t
	}
	return v, good
}

// tmpfs decodes `tmpfs`: one entry or a list, normalised (size in bytes).
func (d *decoder) tmpfs(n *yaml.Node, field string) []string {
	items, ok := d.stringList(n, field)
	if !ok {
		return nil
	}
	out := []string{}
	for _, it := range items {
		v, rest, err := ParseTmpfs(it.val)
		if err != nil {
			d.errorf(it.node, it.field, "%v", err)
			continue
		}
		d.placedMounts = append(d.placedMounts, placed{v.Target, it.field, it.node})
		out = append(out, formatTmpfs(v, rest))
	}
	return out
}

// devices decodes `devices`.
func (d *decoder) devices(n *yaml.Node, field string) []Device {
	short := func(s string) ([]Device, error) {
		dev, err := parseDevice(s)
		return []Device{dev}, err
	}
	return decodeList(d, n, field, short, nil, func(dev Device, f string, it *yaml.Node) {
		d.placedDevices = append(d.placedDevices, placed{dev.ContainerPath, f, it})
	})
}

// caps decodes cap_add or cap_drop, normalised to "CAP_X" and without
// repeats.
func (d *decoder) caps(n *yaml.Node, field string) []string {
	items, ok := d.list(n, field)
	if !ok {
		return nil
	}
	known := knownCaps()
	out := []string{}
	seen := map[string]bool{}
	for i, it := range items {
		f := index(field, i)
		s, ok := d.str(it, f)
		if !ok {
			continue
		}
		c, err := normalizeCap(s, known)
		if err != nil {
			d.errorf(it, f, "%v", err)
			continue
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
			d.placedCaps[field] = append(d.placedCaps[field], placed{c, f, it})
		}
	}
	return out
}

// minMemLimit is Docker's smallest memory limit.
const minMemLimit = 6 << 20

func (d *decoder) memLimit(n *yaml.Node, field string) int64 {
	v, ok := d.byteSize(n, field)
	if !ok {
		return 0
	}
	if v != 0 && v < minMemLimit {
		d.errorf(n, field, "%d bytes is below the smallest limit, 6m", v)
		return 0
	}
	return v
}

func (d *decoder) cpus(n *yaml.Node, field string) float64 {
	s, ok := d.str(n, field)
	if !ok {
		return 0
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v > 1<<20 || v != v {
		d.errorf(n, field, "%q is not a number of CPUs (such as 0.5 or 2)", s)
		return 0
	}
	return v
}

func (d *decoder) pidsLimit(n *yaml.Node, field string) int64 {
	v, ok := d.integer(n, field)
	if ok && v < -1 {
		d.errorf(n, field, "%d: must be a positive number, or 0 or -1 for no limit", v)
		return 0
	}
	return v
}

// ulimits decodes {NAME: N} or {NAME: {soft: N, hard: N}}; -1 is
// unlimited.
func (d *decoder) ulimits(n *yaml.Node, field string) map[string]Ulimit {
	es, ok := d.entries(n, field)
	if !ok {
		return nil
	}
	out := map[string]Ulimit{}
	for _, e := range es {
		f := join(field, e.key)
		if err := checkUlimitName(e.key); err != nil {
			d.errorf(e.keyNode, f, "%v", err)
			continue
		}
		var u Ulimit
		if r := resolve(e.val); r != nil && r.Kind == yaml.MappingNode {
			var soft, hard *int64
			d.fields(e.val, f, map[string]fieldFunc{
				"soft": func(n *yaml.Node, f string) {
					if v, ok := d.integer(n, f); ok {
						soft = &v
					}
				},
				"hard": func(n *yaml.Node, f string) {
					if v, ok := d.integer(n, f); ok {
						hard = &v
					}
				},
			}, nil)
			if soft == nil || hard == nil {
				d.errorf(e.val, f, "needs both soft and hard")
				continue
			}
			u = Ulimit{Soft: *soft, Hard: *hard}
		} else {
			v, ok := d.integer(e.val, f)
			if !ok {
				continue
			}
			u = Ulimit{Soft: v, Hard: v}
		}
		if err := checkUlimit(u); err != nil {
			d.errorf(e.val, f, "%v", err)
			continue
		}
		out[e.key] = u
	}
	return out
}

// checkUlimit accepts values ≥ 0 or -1 (unlimited), soft ≤ hard.
func checkUlimit(u Ulimit) error {
	if u.Soft < -1 || u.Hard < -1 {
		return fmt.Errorf("limits are 0 or more, or -1 for unlimited")
	}
	if u.Hard != -1 && (u.Soft == -1 || u.Soft > u.Hard) {
		return fmt.Errorf("soft limit %d is above hard limit %d", u.Soft, u.Hard)
	}
	return nil
}

// sysctls decodes a mapping or a KEY=VALUE list of namespaced sysctls.
func (d *decoder) sysctls(n *yaml.Node, field string) map[string]string {
	return d.stringMap(n, field, func(kv keyValue) error {
		if err := checkSysctl(kv.key); err != nil {
			return err
		}
		if !kv.hasVal {
			return fmt.Errorf("%s has no value", kv.key)
		}
		return nil
	})
}

// labels decodes a mapping or a KEY=VALUE list ("KEY" alone is an empty
// value, as in Compose).
func (d *decoder) labels(n *yaml.Node, field string) map[string]string {
	return d.stringMap(n, field, func(kv keyValue) error {
		if kv.key == "" {
			return errors.New("empty label name")
		}
		return nil
	})
}

// stringMap decodes a mapping or a KEY=VALUE list into a map, refusing
// entries that check refuses and keys given twice.
func (d *decoder) stringMap(n *yaml.Node, field string, check func(keyValue) error) map[string]string {
	kvs, _ := d.keyValues(n, field)
	out := map[string]string{}
	for _, kv := range kvs {
		if err := check(kv); err != nil {
			d.errorf(kv.node, kv.field, "%v", err)
			continue
		}
		if _, dup := out[kv.key]; dup {
			d.errorf(kv.node, kv.field, "%s is set twice", kv.key)
			continue
		}
		out[kv.key] = kv.val
	}
	return out
}

func (d *decoder) stopSignal(n *yaml.Node, field string) string {
	s, ok := d.str(n, field)
	if !ok {
		return ""
	}
	v, err := normalizeSignal(s)
	if err != nil {
		d.errorf(n, field, "%v", err)
	}
	return v
}

// Dependency conditions.
const (
	ConditionStarted   = "service_started"
	ConditionHealthy   = "service_healthy"
	ConditionCompleted = "service_completed_successfully"
	ConditionReady     = "service_ready"
)

// NetworkOnline is the pseudo-dependency on the machine's network:
// `depends_on: [network-online]` holds a container until the network is
// online. It is not a container: no manifest defines it and no container
// may take its name; its only condition is service_started, and it takes
// no restart.
const NetworkOnline = "network-online"

// dependsOn decodes a list of names or a mapping name -> {condition,
// required, restart}.
func (d *decoder) dependsOn(n *yaml.Node, field string) map[string]Dependency {
	out := map[string]Dependency{}
	r := resolve(n)
	if r != nil && r.Kind == yaml.SequenceNode {
		for i, it := range r.Content {
			f := index(field, i)
			name, ok := d.str(it, f)
			if !ok {
				continue
			}
			if err := checkName(name); err != nil {
				d.errorf(it, f, "%v", err)
				continue
			}
			if _, dup := out[name]; dup {
				d.errorf(it, f, "%s is listed twice", name)
				continue
			}
			out[name] = Dependency{Condition: ConditionStarted, Required: true}
			d.placedDeps[name] = placed{name, f, it}
		}
		return out
	}
	if r == nil || r.Kind != yaml.MappingNode {
		d.errorf(n, field, "expected a list of names or a mapping of name to {condition, required, restart}, found %s", describe(n))
		return nil
	}
	es, _ := d.entries(n, field)
	for _, e := range es {
		f := join(field, e.key)
		if err := checkName(e.key); err != nil {
			d.errorf(e.keyNode, f, "%v", err)
			continue
		}
		dep := Dependency{Condition: ConditionStarted, Required: true}
		if !isNull(e.val) {
			d.fields(e.val, f, map[string]fieldFunc{
				"condition": func(n *yaml.Node, f string) {
					s, ok := d.str(n, f)
					if !ok {
						return
					}
					switch s {
					case ConditionStarted, ConditionHealthy, ConditionCompleted, ConditionReady:
						dep.Condition = s
					default:
						d.errorf(n, f, "%q is not %s, %s, %s or %s", s, ConditionStarted, ConditionHealthy, ConditionCompleted, ConditionReady)
					}
				},
				"required": func(n *yaml.Node, f string) { dep.Required, _ = d.boolean(n, f) },
				"restart":  func(n *yaml.Node, f string) { dep.Restart, _ = d.boolean(n, f) },
			}, nil)
		}
		if e.key == NetworkOnline {
			d.checkNetworkOnline(e.val, f, dep)
		}
		out[e.key] = dep
		d.placedDeps[e.key] = placed{e.key, f, e.keyNode}
	}
	return out
}

// checkNetworkOnline refuses what the network pseudo-dependency cannot
// mean: a condition other than service_started, or restart.
func (d *decoder) checkNetworkOnline(n *yaml.Node, field string, dep Dependency) {
	if dep.Condition != ConditionStarted {
		d.errorf(n, join(field, "condition"), "%s takes only %s (the network is online or not)", NetworkOnline, ConditionStarted)
	}
	if dep.Restart {
		d.errorf(n, join(field, "restart"), "%s is not a container and never restarts", NetworkOnline)
	}
}

// watchdog decodes the sd_notify watchdog interval: a Compose duration,
// 0 for none, else at least 1ms.
func (d *decoder) watchdog(n *yaml.Node, field string) time.Duration {
	v, ok := d.duration(n, field)
	if ok && v > 0 && v < time.Millisecond {
		d.errorf(n, field, "must be 0 (no watchdog) or at least 1ms")
		return 0
	}
	return v
}

// healthcheck decodes Compose's healthcheck block.
func (d *decoder) healthcheck(n *yaml.Node, field string) *Healthcheck {
	h := &Healthcheck{}
	var testNode *yaml.Node
	positive := func(dst *time.Duration) fieldFunc {
		return func(n *yaml.Node, f string) {
			v, ok := d.duration(n, f)
			if ok && v < time.Millisecond {
				d.errorf(n, f, "must be at least 1ms")
				return
			}
			*dst = v
		}
	}
	d.fields(n, field, map[string]fieldFunc{
		"test": func(n *yaml.Node, f string) {
			testNode = n
			h.Test = d.healthTest(n, f)
		},
		"interval":       positive(&h.Interval),
		"timeout":        positive(&h.Timeout),
		"start_period":   func(n *yaml.Node, f string) { h.StartPeriod, _ = d.duration(n, f) },
		"start_interval": positive(&h.StartInterval),
		"retries": func(n *yaml.Node, f string) {
			v, ok := d.integer(n, f)
			if ok && (v < 0 || v > 1<<31-1) {
				d.errorf(n, f, "%d is not a retry count (0 or more)", v)
				return
			}
			h.Retries = int(v)
		},
		"disable": func(n *yaml.Node, f string) { h.Disable, _ = d.boolean(n, f) },
	}, nil)
	none := len(h.Test) == 1 && h.Test[0] == "NONE"
	switch {
	case h.Disable && testNode != nil && !none:
		d.errorf(testNode, join(field, "test"), "disable: true and a test cannot go together")
	case h.Disable || none:
		h.Disable, h.Test = true, []string{"NONE"}
	}
	return h
}

// healthTest decodes test: ["CMD", ...], ["CMD-SHELL", "..."], ["NONE"],
// or a string (CMD-SHELL).
func (d *decoder) healthTest(n *yaml.Node, field string) []string {
	if r := resolve(n); r != nil && r.Kind == yaml.ScalarNode {
		s, ok := d.str(n, field)
		if !ok {
			return nil
		}
		if s == "" {
			d.errorf(n, field, "empty command")
			return nil
		}
		return []string{"CMD-SHELL", s}
	}
	items, ok := d.list(n, field)
	if !ok {
		return nil
	}
	var out []string
	for i, it := range items {
		s, ok := d.str(it, index(field, i))
		if !ok {
			return nil
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		d.errorf(n, field, `empty: write ["CMD", ...], ["CMD-SHELL", "..."] or ["NONE"]`)
		return nil
	}
	switch {
	case out[0] == "CMD" && len(out) >= 2,
		out[0] == "CMD-SHELL" && len(out) == 2,
		out[0] == "NONE" && len(out) == 1:
		return out
	case out[0] == "CMD" || out[0] == "CMD-SHELL" || out[0] == "NONE":
		d.errorf(n, field, `%s takes %s`, out[0], map[string]string{"CMD": "a program and its arguments", "CMD-SHELL": "exactly one shell command string", "NONE": "nothing after it"}[out[0]])
	default:
		d.errorf(n, field, `a list test starts with "CMD", "CMD-SHELL" or "NONE", not %q`, out[0])
	}
	return nil
}

// logging decodes {max_size, max_files}.
func (d *decoder) logging(n *yaml.Node, field string) *Logging {
	l := &Logging{}
	d.fields(n, field, map[string]fieldFunc{
		"max_size": func(n *yaml.Node, f string) {
			v, ok := d.byteSize(n, f)
			if ok && v < 4096 {
				d.errorf(n, f, "%d bytes is below the smallest log file, 4k", v)
				return
			}
			l.MaxSize = v
		},
		"max_files": func(n *yaml.Node, f string) {
			v, ok := d.integer(n, f)
			if ok && (v < 1 || v > 1000) {
				d.errorf(n, f, "%d is not a number of files (1 to 1000)", v)
				return
			}
			l.MaxFiles = int(v)
		},
	}, func(key string) string {
		if key == "driver" || key == "options" {
			return "not supported: photon-init's logging takes max_size and max_files, not Compose's driver and options"
		}
		return ""
	})
	return l
}
