#!/usr/bin/env bash
# Checks, before `make build`, that what the static build links against is
# installed, and says what to run when it is not (instead of a pkg-config or
# linker error from deep inside the Go build).
set -uo pipefail
missing=()
command -v gcc >/dev/null 2>&1 || missing+=("gcc (cgo, for libcontainer's nsenter)")
command -v pkg-config >/dev/null 2>&1 || missing+=("pkg-config")
if command -v pkg-config >/dev/null 2>&1 && ! pkg-config --exists libseccomp 2>/dev/null; then
	missing+=("libseccomp-dev (the seccomp build tag links libseccomp statically)")
fi
if ((${#missing[@]})); then
	echo "make build: missing build dependencies:" >&2
	printf '  - %s\n' "${missing[@]}" >&2
	echo "run 'make deps' (scripts/deps.sh installs them), then 'make' again" >&2
	exit 1
fi
