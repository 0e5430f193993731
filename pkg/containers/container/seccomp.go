package container

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"

	"github.com/opencontainers/runc/libcontainer/configs"
	libseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
)

// seccompCompiler names what turns a libcontainer seccomp config into a
// program: libcontainer's seccomp package and its -ENOSYS patch
// (third_party/runc), with libseccomp (whose version is part of every
// key). Change it when third_party/runc's seccomp code changes.
const seccompCompiler = "runc v1.5.2+photon-init.1 libcontainer/seccomp+patchbpf"

// seccompPrograms compiles seccomp filters once per distinct profile, in
// photon-init rather than in every container's init process, where
// libseccomp compiling Docker's profile (3 architectures, ~400 syscalls,
// binary-tree optimised) was the largest part of a container's start.
// Each container's init loads the ready program (the seccomp.Compile and
// configs.Seccomp.Program patch in third_party/runc): the same
// instructions libcontainer would have compiled there.
type seccompPrograms struct {
	mu sync.Mutex
	m  map[string]*configs.SeccompProgram
}

// withProgram returns a copy of cfg carrying its compiled program, and
// without the rules the program was compiled from (they make the
// container's state file and the configuration that libcontainer sends
// to its init process ~60 KB larger, decoded there for nothing). A
// program built into the binary for Docker's default profile is used
// when its key matches (seccomp_default_*.go); others are compiled on
// first use and kept.
func (s *seccompPrograms) withProgram(cfg *configs.Seccomp) (*configs.Seccomp, error) {
	if cfg == nil || cfg.Program != nil {
		return cfg, nil
	}
	key, err := seccompKey(cfg)
	if err != nil {
		return nil, err
	}
	prog, err := s.program(key, cfg)
	if err != nil {
		return nil, err
	}
	out := *cfg
	out.Syscalls = nil
	out.Program = prog
	return &out, nil
}

// program returns the program of key, compiling cfg on a miss.
func (s *seccompPrograms) program(key string, cfg *configs.Seccomp) (*configs.SeccompProgram, error) {
	if key == builtinSeccompKey && builtinSeccompKey != "" {
		return &configs.SeccompProgram{Filter: builtinSeccompFilter, Flags: builtinSeccompFlags}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.m[key]; ok {
		return p, nil
	}
	p, err := libseccomp.Compile(cfg)
	if err != nil {
		return nil, fmt.Errorf("compile the seccomp profile: %w", err)
	}
	if s.m == nil {
		s.m = map[string]*configs.SeccompProgram{}
	}
	s.m[key] = p
	return p, nil
}

// seccompKey identifies what a program is compiled from: the rules, the
// compiler (libcontainer's code, libseccomp's version) and the machine's
// architecture (the native one is the filter's first).
func seccompKey(cfg *configs.Seccomp) (string, error) {
	c := *cfg
	c.Program = nil
	b, err := json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("seccomp profile: %w", err)
	}
	major, minor, micro := libseccomp.Version()
	h := sha256.New()
	fmt.Fprintf(h, "%s\nlibseccomp %d.%d.%d\n%s\n", seccompCompiler, major, minor, micro, runtime.GOARCH)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}
