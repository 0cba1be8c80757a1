# csrguard — `make` lists the targets. Versions of everything built from Go
# modules are pinned in hack/versions.env.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help
include hack/versions.env
export K8S_VERSION ETCD_VERSION PROMETHEUS_VERSION HELM_VERSION

OUT      := _output
NODES    ?= 3
N        ?= 2000
FUZZTIME ?= 2m
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/csrguard/csrguard/internal/buildinfo.Version=$(VERSION)
KUBE_BIN  = $(shell hack/build-kube.sh)

.PHONY: help
help: ## Show this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: demo
demo: build ## The incident on a local control plane, then csrguard fixing it
	@CSRGUARD_KUBE_BIN=$(KUBE_BIN) go run ./test/cmd/localcluster demo --dir $(OUT)/demo --csrguard $(OUT)/bin/csrguard

.PHONY: test
test: ## The whole suite: lint, unit, fuzz smoke, integration and e2e on a real control plane
	@hack/test.sh

.PHONY: build
build: ## Build csrguard and the kubectl plugin kubectl-csrguard into _output/bin
	@mkdir -p $(OUT)/bin
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(OUT)/bin/csrguard ./cmd/csrguard
	@ln -sf csrguard $(OUT)/bin/kubectl-csrguard

.PHONY: dev-cluster
dev-cluster: ## A local control plane with NODES simulated kubelets until Ctrl-C
	@CSRGUARD_KUBE_BIN=$(KUBE_BIN) go run ./test/cmd/localcluster dev --nodes $(NODES) --dir $(OUT)/dev

.PHONY: unit
unit: ## Unit tests only, no control plane (go test -short)
	go test -short -race ./...

.PHONY: kube-binaries
kube-binaries: ## Build etcd, kube-apiserver, kube-controller-manager, kubectl from Go modules (cached by version)
	@hack/build-kube.sh

.PHONY: fuzz
fuzz: ## Fuzz CSR parsing and the policy for FUZZTIME each (default 2m)
	go test -run='^$$' -fuzz=FuzzParse -fuzztime=$(FUZZTIME) ./internal/servingcsr
	go test -run='^$$' -fuzz=FuzzEvaluate -fuzztime=$(FUZZTIME) ./internal/policy

.PHONY: bench
bench: build ## Approval benchmark: N nodes and CSRs, csrguard vs a no-check approver (N=2000)
	CGO_ENABLED=0 go build -trimpath -o $(OUT)/bin/nocheck-approver ./test/cmd/nocheck-approver
	CSRGUARD_KUBE_BIN=$(KUBE_BIN) go run ./test/cmd/bench --n $(N) --dir $(OUT)/bench --csrguard $(OUT)/bin/csrguard --nocheck $(OUT)/bin/nocheck-approver

.PHONY: clean
clean: ## Remove _output (the binary cache outside the repo stays)
	rm -rf $(OUT)
