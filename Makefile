# photon-init build, test and demo targets. See README.md.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Build tags: netgo, osusergo (pure-Go resolver and user lookup, for a static
# binary), seccomp (libcontainer's filters, through libseccomp), and three that
# leave out code photon-init never runs: nethttpomithttp2 (net/http's bundled
# HTTP/2: the control socket and registry pulls speak HTTP/1.1; -0.5 MiB),
# runc_nocriu (libcontainer's checkpoint/restore) and runc_nosd (the systemd
# cgroup driver and its D-Bus client: cgroupfs only; third_party/runc;
# -0.41 MiB).
BUILD_TAGS = netgo osusergo seccomp nethttpomithttp2 runc_nocriu runc_nosd
GOFLAGS_STATIC = -trimpath -tags '$(BUILD_TAGS)' \
	-ldflags '-s -w -X main.version=$(VERSION) -extldflags -static'

.PHONY: all build deps demo test test-unit test-e2e bench clean

all: build

build: bin/photon-init

bin/photon-init: $(shell find cmd pkg -name '*.go' 2>/dev/null) go.mod go.sum
	@scripts/check-build-deps.sh
	CGO_ENABLED=1 $(GO) build $(GOFLAGS_STATIC) -o $@ ./cmd/photon-init

# --- dependencies, tests, benchmark, demo (see README.md) ---

BENCH_N    ?= 5
# more flags for the benchmark, e.g. make bench BENCH_FLAGS='-sections boot,size'
BENCH_FLAGS ?=
# go test -run pattern for test-e2e, e.g. make test-e2e RUN='TestPoweroff/microvm'
RUN        ?=
E2E_FLAGS  ?= -count=1 -timeout 25m -v

deps:
	scripts/deps.sh

demo: deps build
	$(GO) run ./test/demo

test: deps
	$(GO) vet ./...
	$(MAKE) --no-print-directory test-unit
	$(MAKE) --no-print-directory test-e2e

test-unit:
	$(GO) test -short -count=1 ./...
	# the container runtime as released: with seccomp (its filter tests
	# skip without the tag) and the other build tags
	$(GO) test -short -count=1 -tags '$(BUILD_TAGS)' ./pkg/containers/... ./cmd/...

test-e2e: build
	$(GO) test $(E2E_FLAGS) $(if $(RUN),-run '$(RUN)') ./test/vm/ ./test/e2e/

bench: deps build
	$(GO) run ./test/bench -n $(BENCH_N) $(BENCH_FLAGS)

clean:
	rm -rf bin out
