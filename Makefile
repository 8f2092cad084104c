# metaflow for R on a Go engine.
SHELL := /bin/bash
PREFIX ?= /usr/local
GOBIN_DIR := $(shell go env GOPATH)/bin
PROTOC_GEN_GO_VERSION := v1.36.11
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0

.PHONY: all build deps install install-engine install-rpkg proto test test-go test-r test-rcheck test-e2e test-fault example bench clean

all: build

# Debian packages the project needs on a fresh machine (R, curl for R, testthat).
deps:
	@bash scripts/install-deps.sh

# Static (no cgo): the same binary runs in any linux image a Batch job uses,
# whatever its C library, as the jobs' task runner.
build:
	CGO_ENABLED=0 go build -o bin/metaflow-engine ./cmd/metaflow-engine

# Installs the engine onto PATH and the R package into R's library.
install: deps install-engine install-rpkg

install-engine: build
	install -m 0755 bin/metaflow-engine $(PREFIX)/bin/metaflow-engine

# The R package, with its committed copy of the runtime's msgpack codec
# (shim/codec_copy_test.go keeps the two identical).
install-rpkg:
	@bash scripts/install-rpkg.sh

proto:
	@command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	GOBIN=$(GOBIN_DIR) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(GOBIN_DIR) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH=$(GOBIN_DIR):$$PATH protoc -I proto --go_out=proto/enginepb --go_opt=paths=source_relative \
		--go-grpc_out=proto/enginepb --go-grpc_opt=paths=source_relative proto/engine.proto

test: deps install test-go test-r test-rcheck test-e2e test-fault

test-go:
	go vet ./...
	go test -race ./...

test-r:
	cd rpkg/tests && METAFLOW_REPO_ROOT=$(CURDIR) Rscript -e 'testthat::test_dir("testthat", package = "metaflow", load_package = "installed", stop_on_failure = TRUE)'

# The R package stands alone: R CMD check on the tree as committed, with no
# ERROR, WARNING or NOTE.
test-rcheck:
	@dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; cd "$$dir" && \
	R CMD build --no-build-vignettes $(CURDIR)/rpkg >build.log 2>&1 || { cat build.log; exit 1; }; \
	_R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual metaflow_*.tar.gz >check.log 2>&1; \
	grep -q "^Status: OK" check.log || { cat check.log; cat metaflow.Rcheck/00check.log 2>/dev/null | tail -50; exit 1; }; \
	echo "R CMD check: Status: OK"

test-e2e:
	bash tests/e2e/run.sh

# Fault injection (docs/reliability.md): SIGKILLs of the engine, R and
# tasks, damaged files and a full tmpfs in real runs of the installed
# engine and R package; FAULT_SEED and FAULT_N (default 50) choose them.
# Needs root (the tmpfs).
test-fault:
	go build -o bin/fault ./tests/fault
	FAULT_STRICT=all bin/fault

# Runs the seed's example end to end.
example: deps install
	cd examples && Rscript bigsumflow.R run

bench: install
	bash tests/bench/run.sh

clean:
	rm -rf bin
