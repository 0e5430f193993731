package aci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/photon-init/photon-init/pkg/containers/image"
)

// imageManifest is an appc image manifest (spec v0.8.11, "ImageManifest").
type imageManifest struct {
	ACKind        string       `json:"acKind"`
	ACVersion     string       `json:"acVersion"`
	Name          string       `json:"name"`
	Labels        []nameValue  `json:"labels"`
	App           *app         `json:"app"`
	Annotations   []nameValue  `json:"annotations"`
	Dependencies  []dependency `json:"dependencies"`
	PathWhitelist []string     `json:"pathWhitelist"`
}

// nameValue is a label, an annotation or an environment variable.
type nameValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// dependency is another image an ACI is layered on.
type dependency struct {
	ImageName string `json:"imageName"`
}

// app is the app section of an image manifest.
type app struct {
	Exec              []string          `json:"exec"`
	EventHandlers     []json.RawMessage `json:"eventHandlers"`
	User              string            `json:"user"`
	Group             string            `json:"group"`
	SupplementaryGIDs []int             `json:"supplementaryGIDs"`
	WorkingDirectory  string            `json:"workingDirectory"`
	Environment       []nameValue       `json:"environment"`
	MountPoints       []mountPoint      `json:"mountPoints"`
	Ports             []port            `json:"ports"`
	Isolators         []json.RawMessage `json:"isolators"`
}

// mountPoint is a place in the image where the pod mounts a volume.
type mountPoint struct {
	Name     string `json:"name"`
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly"`
}

// port is a port the app listens on; Count ports from Port on.
type port struct {
	Name            string `json:"name"`
	Protocol        string `json:"protocol"`
	Port            uint   `json:"port"`
	Count           uint   `json:"count"`
	SocketActivated bool   `json:"socketActivated"`
}

// The regular expressions are compiled on first use, not at package init,
// which every exec of the binary pays (PID 1 and each container's init).
var (
	// acIdentifier is appc's ACIdentifier (image names, labels,
	// annotations).
	acIdentifier = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]+([-._~/][a-z0-9]+)*$`) })
	// acName is appc's ACName (port and mount point names).
	acName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`) })
	// envName is appc's pattern for environment variable names.
	envName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z_0-9.-]*$`) })
)

// appcArch maps GOARCH to the values of the appc "arch" label that run
// on it (appc spec, "Image Labels", and schema/types ToAppcOSArch).
var appcArch = map[string][]string{
	"amd64":   {"amd64"},
	"386":     {"i386"},
	"arm64":   {"aarch64"},
	"arm":     {"armv7l", "armv6l"},
	"ppc64":   {"ppc64"},
	"ppc64le": {"ppc64le"},
	"s390x":   {"s390x"},
}

// knownArch are all architectures appc defines for linux.
var knownArch = []string{"amd64", "i386", "aarch64", "aarch64_be", "armv6l", "armv7l", "armv7b", "ppc64", "ppc64le", "s390x"}

// parseManifest decodes and checks an image manifest and maps it to an
// image.Config for an image running on goarch.
func parseManifest(data []byte, goarch string) (*imageManifest, image.Config, error) {
	var m imageManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, image.Config{}, jsonError(data, err)
	}
	if err := m.validate(goarch); err != nil {
		return nil, image.Config{}, err
	}
	cfg, err := m.config()
	if err != nil {
		return nil, image.Config{}, err
	}
	return &m, cfg, nil
}

// jsonError adds the line to a JSON decoding error.
func jsonError(data []byte, err error) error {
	var offset int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		offset = se.Offset
	case errors.As(err, &te):
		offset = te.Offset
	}
	if offset < 0 || offset > int64(len(data)) {
		return fmt.Errorf("decode JSON: %w", err)
	}
	line := 1 + bytes.Count(data[:offset], []byte("\n"))
	return fmt.Errorf("line %d: %w", line, err)
}

// validate makes appc's checks of an image manifest and refuses what
// photon-init cannot run on goarch.
func (m *imageManifest) validate(goarch string) error {
	if m.ACKind != "ImageManifest" {
		return fmt.Errorf("acKind is %q, not \"ImageManifest\"", m.ACKind)
	}
	if m.ACVersion == "" {
		return errors.New("acVersion is not set")
	}
	if m.Name == "" {
		return errors.New("name is not set")
	}
	if !acIdentifier().MatchString(m.Name) {
		return fmt.Errorf("name %q: not a valid AC identifier (lower case letters, digits and -._~/ between them)", m.Name)
	}
	labels, err := checkNameValues("labels", m.Labels)
	if err != nil {
		return err
	}
	if _, err := checkNameValues("annotations", m.Annotations); err != nil {
		return err
	}
	if err := checkPlatform(labels, goarch); err != nil {
		return err
	}
	if len(m.Dependencies) > 0 {
		names := make([]string, len(m.Dependencies))
		for i, d := range m.Dependencies {
			names[i] = strconv.Quote(d.ImageName)
		}
		return fmt.Errorf("dependencies: ACIs built on other images are not supported (this one depends on %s); flatten it into one ACI", strings.Join(names, ", "))
	}
	if len(m.PathWhitelist) > 0 {
		return errors.New("pathWhitelist is not supported (it only makes sense with dependencies)")
	}
	return nil
}

// checkNameValues checks that the names of labels or annotations are AC
// identifiers, each used once, and returns them as a map.
func checkNameValues(field string, list []nameValue) (map[string]string, error) {
	out := make(map[string]string, len(list))
	for i, nv := range list {
		if !acIdentifier().MatchString(nv.Name) {
			return nil, fmt.Errorf("%s[%d]: name %q is not a valid AC identifier", field, i, nv.Name)
		}
		if _, dup := out[nv.Name]; dup {
			return nil, fmt.Errorf("%s[%d]: %q given twice", field, i, nv.Name)
		}
		out[nv.Name] = nv.Value
	}
	return out, nil
}

// checkPlatform checks the os and arch labels: appc's list of valid
// values, then that the image runs here (linux, goarch).
func checkPlatform(labels map[string]string, goarch string) error {
	osName, hasOS := labels["os"]
	arch, hasArch := labels["arch"]
	if hasOS && osName != "linux" {
		return fmt.Errorf("labels: os is %q, this machine runs linux", osName)
	}
	if !hasArch {
		return nil
	}
	if !slices.Contains(knownArch, arch) {
		return fmt.Errorf("labels: arch %q is not an appc architecture (%s)", arch, strings.Join(knownArch, ", "))
	}
	if !slices.Contains(appcArch[goarch], arch) {
		return fmt.Errorf("labels: arch is %q, this machine is %s (appc %s)", arch, goarch, strings.Join(appcArch[goarch], " or "))
	}
	return nil
}

// config maps the app section to image.Config.
func (m *imageManifest) config() (image.Config, error) {
	var cfg image.Config
	if len(m.Annotations) > 0 {
		cfg.Labels = make(map[string]string, len(m.Annotations))
		for _, a := range m.Annotations {
			cfg.Labels[a.Name] = a.Value
		}
	}
	a := m.App
	if a == nil {
		return cfg, nil
	}
	switch {
	case len(a.EventHandlers) > 0:
		return cfg, errors.New("app.eventHandlers: pre-start and post-stop handlers are not supported")
	case len(a.SupplementaryGIDs) > 0:
		return cfg, errors.New("app.supplementaryGIDs: not supported (give the groups in the container manifest's user instead)")
	case a.User == "":
		return cfg, errors.New("app.user is required")
	case a.Group == "":
		return cfg, errors.New("app.group is required")
	case strings.HasPrefix(a.User, "/"), strings.HasPrefix(a.Group, "/"):
		return cfg, fmt.Errorf("app.user %q, app.group %q: the owner-of-a-file form is not supported; use a name or a number", a.User, a.Group)
	case a.WorkingDirectory != "" && !path.IsAbs(a.WorkingDirectory):
		return cfg, fmt.Errorf("app.workingDirectory %q is not an absolute path", a.WorkingDirectory)
	}
	cfg.Entrypoint = slices.Clone(a.Exec)
	cfg.User = a.User + ":" + a.Group
	cfg.WorkingDir = a.WorkingDirectory

	seen := map[string]bool{}
	for i, e := range a.Environment {
		if !envName().MatchString(e.Name) {
			return cfg, fmt.Errorf("app.environment[%d]: %q is not a valid variable name", i, e.Name)
		}
		if seen[e.Name] {
			return cfg, fmt.Errorf("app.environment[%d]: %q given twice", i, e.Name)
		}
		seen[e.Name] = true
		cfg.Env = append(cfg.Env, e.Name+"="+e.Value)
	}

	for i, p := range a.Ports {
		ports, err := p.exposed()
		if err != nil {
			return cfg, fmt.Errorf("app.ports[%d] (%q): %w", i, p.Name, err)
		}
		for _, e := range ports {
			if !slices.Contains(cfg.ExposedPorts, e) {
				cfg.ExposedPorts = append(cfg.ExposedPorts, e)
			}
		}
	}

	for i, mp := range a.MountPoints {
		if !acName().MatchString(mp.Name) {
			return cfg, fmt.Errorf("app.mountPoints[%d]: name %q is not a valid AC name", i, mp.Name)
		}
		if !path.IsAbs(mp.Path) {
			return cfg, fmt.Errorf("app.mountPoints[%d] (%q): path %q is not absolute", i, mp.Name, mp.Path)
		}
		if p := path.Clean(mp.Path); !slices.Contains(cfg.Volumes, p) {
			cfg.Volumes = append(cfg.Volumes, p)
		}
	}
	return cfg, nil
}

// exposed returns the "port/protocol" entries of a port declaration.
func (p port) exposed() ([]string, error) {
	if !acName().MatchString(p.Name) {
		return nil, fmt.Errorf("name is not a valid AC name")
	}
	if p.SocketActivated {
		return nil, errors.New("socket activation is not supported")
	}
	proto := strings.ToLower(p.Protocol)
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return nil, fmt.Errorf("protocol %q: want tcp, udp or sctp", p.Protocol)
	}
	count := max(p.Count, 1)
	if p.Port < 1 || p.Port > 65535 || p.Port+count-1 > 65535 {
		return nil, fmt.Errorf("port %d (count %d) is outside 1-65535", p.Port, p.Count)
	}
	out := make([]string, 0, count)
	for n := p.Port; n < p.Port+count; n++ {
		out = append(out, strconv.FormatUint(uint64(n), 10)+"/"+proto)
	}
	return out, nil
}
