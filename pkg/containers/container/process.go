package container

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/photon-init/photon-init/pkg/containers/image"
	"github.com/photon-init/photon-init/pkg/containers/manifest"
)

// DefaultPath is the PATH a container gets when neither its image nor its
// manifest sets one (Docker's).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultUmask is the umask of a container's first process (Docker's).
const defaultUmask = 0o022

// args combines the manifest's entrypoint and command with the image's by
// Docker's rules: an entrypoint in the manifest replaces the image's and
// drops the image's Cmd; a command replaces the Cmd.
func args(m *manifest.Container, cfg *image.Config) ([]string, error) {
	entrypoint, cmd := cfg.Entrypoint, cfg.Cmd
	if m.Entrypoint != nil {
		entrypoint, cmd = m.Entrypoint, nil
	}
	if m.Command != nil {
		cmd = m.Command
	}
	out := slices.Concat(entrypoint, cmd)
	if len(out) == 0 {
		return nil, errors.New("no command: neither the manifest (entrypoint, command) nor the image (Entrypoint, Cmd) gives one")
	}
	if out[0] == "" {
		return nil, errors.New("the command's first word (the program) is empty")
	}
	return out, nil
}

// environment builds the process environment as Docker does: PATH and
// HOSTNAME first, then the image's Env, then the runtime's own entries
// (NOTIFY_SOCKET, WATCHDOG_*: they replace what an image may have baked
// in), then the manifest's entries overriding by key (an entry without "="
// removes the key: the operator has the last word), then HOME from the
// user's passwd entry when nobody set it. TERM is not set: containers
// have no terminal.
func environment(m *manifest.Container, cfg *image.Config, hostname, home string, runtimeEnv []string) []string {
	env := []string{"PATH=" + DefaultPath, "HOSTNAME=" + hostname}
	env = mergeEnv(env, cfg.Env)
	env = mergeEnv(env, runtimeEnv)
	env = mergeEnv(env, m.Environment)
	if _, ok := lookupEnv(env, "HOME"); !ok {
		env = append(env, "HOME="+home)
	}
	return env
}

// mergeEnv applies entries to env, replacing a key in place or appending
// it; an entry without "=" deletes its key.
func mergeEnv(env, entries []string) []string {
	for _, e := range entries {
		key, _, hasValue := strings.Cut(e, "=")
		i := slices.IndexFunc(env, func(x string) bool { return strings.HasPrefix(x, key+"=") })
		switch {
		case !hasValue && i >= 0:
			env = slices.Delete(env, i, i+1)
		case !hasValue:
		case i >= 0:
			env[i] = e
		default:
			env = append(env, e)
		}
	}
	return env
}

func lookupEnv(env []string, key string) (string, bool) {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// execUser resolves a user spec ("", "uid", "uid:gid", "name",
// "name:group") with the image's /etc/passwd and /etc/group, read inside
// rootfs (symlinks resolved within it). "" is root. A numeric uid without a
// passwd entry runs with gid 0 and HOME=/, as in Docker.
func execUser(rootfs, spec string) (*user.ExecUser, error) {
	passwd, err := openInRoot(rootfs, "/etc/passwd")
	if err != nil {
		return nil, err
	}
	if passwd != nil {
		defer passwd.Close()
	}
	group, err := openInRoot(rootfs, "/etc/group")
	if err != nil {
		return nil, err
	}
	if group != nil {
		defer group.Close()
	}
	defaults := &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	// A nil *os.File in an io.Reader is not a nil io.Reader.
	var pr, gr io.Reader
	if passwd != nil {
		pr = bufio.NewReader(passwd)
	}
	if group != nil {
		gr = bufio.NewReader(group)
	}
	u, err := user.GetExecUser(spec, defaults, pr, gr)
	if err != nil {
		return nil, fmt.Errorf("user %q (looked up in the image's /etc/passwd and /etc/group): %w", spec, err)
	}
	return u, nil
}

// openInRoot opens path inside rootfs, resolving symlinks as if rootfs
// were /. A missing file gives (nil, nil).
func openInRoot(rootfs, path string) (*os.File, error) {
	p, err := securejoin.SecureJoin(rootfs, path)
	if err != nil {
		return nil, fmt.Errorf("resolve %s in the image: %w", path, err)
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open the image's %s: %w", path, err)
	}
	return f, nil
}

// processUser fills spec's user from an ExecUser.
func processUser(u *user.ExecUser) specs.User {
	umask := uint32(defaultUmask)
	out := specs.User{UID: uint32(u.Uid), GID: uint32(u.Gid), Umask: &umask}
	for _, g := range u.Sgids {
		if uint32(g) != out.GID && !slices.Contains(out.AdditionalGids, uint32(g)) {
			out.AdditionalGids = append(out.AdditionalGids, uint32(g))
		}
	}
	return out
}
