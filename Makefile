# photon-init build, test and demo targets. See README.md.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOFLAGS_STATIC = -trimpath -tags 'netgo osusergo' \
	-ldflags '-s -w -X main.version=$(VERSION) -extldflags -static'

.PHONY: all build deps demo test test-unit test-e2e bench clean

all: build

build: bin/photon-init

bin/photon-init: $(shell find cmd pkg -name '*.go' 2>/dev/null) go.mod go.sum
	CGO_ENABLED=1 $(GO) build $(GOFLAGS_STATIC) -o $@ ./cmd/photon-init

clean:
	rm -rf bin out
