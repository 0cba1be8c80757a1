# csrguard — `make` lists the targets. Versions of everything built from Go
# modules are pinned in hack/versions.env.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help
include hack/versions.env
export K8S_VERSION ETCD_VERSION PROMETHEUS_VERSION HELM_VERSION METRICS_SERVER_VERSION GOLANGCI_LINT_VERSION GOVULNCHECK_VERSION VULNDB_VERSION CYCLONEDX_GOMOD_VERSION

OUT      := _output
NODES    ?= 3
N        ?= 2000
RECOVERY_NODES   ?= 200
RECOVERY_PENDING ?= 12
FAULTS   ?= all
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

.PHONY: test-matrix
test-matrix: ## The e2e and packaging tests on every Kubernetes version in K8S_MATRIX_VERSIONS, then with kubelets 3 minors older (not in make test; long); MATRIX_VERSIONS="1.36.3 skew" for some
	@hack/test-matrix.sh

.PHONY: build
build: ## Build csrguard, the kubectl plugin kubectl-csrguard and its completion kubectl_complete-csrguard into _output/bin
	@mkdir -p $(OUT)/bin
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(OUT)/bin/csrguard ./cmd/csrguard
	@ln -sf csrguard $(OUT)/bin/kubectl-csrguard
	@ln -sf csrguard $(OUT)/bin/kubectl_complete-csrguard

.PHONY: dev-cluster
dev-cluster: ## A local cluster (a real kubelet, NODES-1 simulated, metrics-server) until Ctrl-C; root: reachable from this host
	@CSRGUARD_KUBE_BIN=$(KUBE_BIN) go run ./test/cmd/localcluster dev --nodes $(NODES) --dir $(OUT)/dev

.PHONY: vulncheck
vulncheck: ## govulncheck with an offline copy of the Go vulnerability database (hack/govulncheck-accepted.txt lists accepted findings, each with why)
	@hack/vulncheck.sh

.PHONY: lint
lint: ## golangci-lint with .golangci.yml (built from its Go module, cached by version); PKGS=./internal/policy/... for some packages
	@hack/lint.sh $(PKGS)

.PHONY: unit
unit: ## Unit tests only, no control plane (go test -short)
	go test -short -race ./...

.PHONY: kube-binaries
kube-binaries: ## Build etcd, kube-apiserver, kube-controller-manager, kubectl, the kubelet and metrics-server from Go modules (cached by version)
	@hack/build-kube.sh

.PHONY: fuzz
fuzz: ## Fuzz CSR parsing (verified and as read from the API server), the policy (both ways), Node address parsing and the config reader for FUZZTIME each (default 2m)
	go test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./internal/servingcsr
	go test -run='^$$' -fuzz='^FuzzParseUnverified$$' -fuzztime=$(FUZZTIME) ./internal/servingcsr
	go test -run='^$$' -fuzz='^FuzzEvaluate$$' -fuzztime=$(FUZZTIME) ./internal/policy
	go test -run='^$$' -fuzz='^FuzzEvaluateFromAPI$$' -fuzztime=$(FUZZTIME) ./internal/policy
	go test -run='^$$' -fuzz='^FuzzNodeAddress$$' -fuzztime=$(FUZZTIME) ./internal/policy
	go test -run='^$$' -fuzz='^FuzzCheck$$' -fuzztime=$(FUZZTIME) ./internal/configcheck

.PHONY: bench
bench: build ## Benchmarks: approving N CSRs (csrguard, capped and not, vs an unthrottled no-check ceiling), probing N kubelets (N=2000; N=2000,10000 gives RSS per node), recovery of RECOVERY_NODES nodes × RECOVERY_PENDING CSRs (200 × 12)
	CGO_ENABLED=0 go build -trimpath -o $(OUT)/bin/nocheck-approver ./test/cmd/nocheck-approver
	CSRGUARD_KUBE_BIN=$(KUBE_BIN) go run ./test/cmd/bench --n $(N) --dir $(OUT)/bench --csrguard $(OUT)/bin/csrguard --nocheck $(OUT)/bin/nocheck-approver \
		--recovery-nodes $(RECOVERY_NODES) --recovery-pending $(RECOVERY_PENDING)

.PHONY: bench-faults
bench-faults: build ## Faults mid-storm: each of FAULTS (all, or some of apiserver-restart,etcd-restart,leader-kill,leader-pause,watch-expiry) while N (2000) nodes file CSRs with a hostile share; checks every outcome
	CSRGUARD_KUBE_BIN=$(KUBE_BIN) go run ./test/cmd/bench --fault $(FAULTS) --n $(N) --dir $(OUT)/bench-faults --csrguard $(OUT)/bin/csrguard

.PHONY: clean
clean: ## Remove _output (the binary cache outside the repo stays)
	rm -rf $(OUT)

# --- Packaging: the Helm chart, deploy/install.yaml and the image ----------

CHART        := deploy/helm/csrguard
TOOLS_BIN     = $(shell hack/build-tools.sh)
IMAGE_REPO   ?= ghcr.io/csrguard/csrguard
IMAGE_TAG    ?= $(VERSION)
IMAGE_ARCH   ?= $(shell go env GOARCH)
IMAGE_CREATED = $(shell git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z)

.PHONY: sync-chart
sync-chart: ## Copy the Prometheus rules and Grafana dashboard into the Helm chart
	cp deploy/prometheus/csrguard.rules.yaml $(CHART)/files/csrguard.rules.yaml
	cp deploy/grafana/csrguard-dashboard.json $(CHART)/files/csrguard-dashboard.json

.PHONY: manifests
manifests: sync-chart ## Render deploy/install.yaml, install-monitoring.yaml and the dashboard ConfigMap from their sources
	CSRGUARD_TOOLS_BIN=$(TOOLS_BIN) go test ./test/packaging -run '^TestInstallManifest$$' -count=1 -update
	go test ./test/alerts -run '^TestDashboardConfigMap$$' -count=1 -update

.PHONY: image
image: ## Build the image tarball _output/csrguard-image.tar without a container engine (docker load / crane push it)
	@mkdir -p $(OUT)/image
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) go build -trimpath -ldflags '$(LDFLAGS)' -o $(OUT)/image/csrguard ./cmd/csrguard
	go run ./test/cmd/ociimage --binary $(OUT)/image/csrguard --output $(OUT)/csrguard-image.tar \
		--tag $(IMAGE_REPO):$(IMAGE_TAG) --version $(VERSION) \
		--revision "$$(git rev-parse HEAD 2>/dev/null)" --created $(IMAGE_CREATED)

# --- Releases: docs/releasing.md ------------------------------------------

CHART_REPO ?= oci://ghcr.io/csrguard/charts

.PHONY: release
release: ## Build release VERSION (vX.Y.Z[-pre], default git describe --tags) of this commit into _output/release/VERSION, offline and reproducibly
	CSRGUARD_TOOLS_BIN=$(TOOLS_BIN) go run ./test/cmd/release build --version '$(VERSION)' --image-repo $(IMAGE_REPO) \
		--cyclonedx-gomod "$$(hack/build-sbom.sh)/cyclonedx-gomod"

.PHONY: release-push
release-push: ## Push _output/release/VERSION's image index to IMAGE_REPO:VERSION and chart to CHART_REPO (docker login, helm registry login first)
	CSRGUARD_TOOLS_BIN=$(TOOLS_BIN) go run ./test/cmd/release push --dir $(OUT)/release/$(VERSION) --image-repo $(IMAGE_REPO) --chart-repo $(CHART_REPO)

.PHONY: chart
chart: ## Lint and render the Helm chart with the pinned helm (the packaging tests run more)
	$(TOOLS_BIN)/helm lint --strict $(CHART)
	$(TOOLS_BIN)/helm template csrguard $(CHART) --namespace csrguard >/dev/null
