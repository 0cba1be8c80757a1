#!/usr/bin/env bash
# test.sh runs csrguard's whole suite, the way `make test` and CI do: static
# checks (gofmt, golangci-lint, go vet, go mod tidy), every Go test with the
# race detector (unit, integration and e2e on a real control plane, real
# kubelet and metrics-server built by build-kube.sh, in private network
# namespaces), and a short fuzz run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

log "gofmt"
unformatted="$(gofmt -l $(git ls-files '*.go'))"
if [[ -n "$unformatted" ]]; then
  echo "gofmt needed on:" >&2; echo "$unformatted" >&2; exit 1
fi

# golangci-lint before the cluster and tool builds: a finding fails the run
# in minutes, not after them.
log "golangci-lint v$GOLANGCI_LINT_VERSION (.golangci.yml)"
hack/lint.sh

log "govulncheck v$GOVULNCHECK_VERSION, offline database $VULNDB_VERSION (accepted: hack/govulncheck-accepted.txt)"
hack/vulncheck.sh

log "cluster components (Kubernetes v$K8S_VERSION with the kubelet, etcd v$ETCD_VERSION, metrics-server v$METRICS_SERVER_VERSION)"
CSRGUARD_KUBE_BIN="$(hack/build-kube.sh)"
export CSRGUARD_KUBE_BIN
log "using $CSRGUARD_KUBE_BIN"

log "test tools (promtool v$PROMETHEUS_VERSION, helm v$HELM_VERSION)"
CSRGUARD_TOOLS_BIN="$(hack/build-tools.sh)"
export CSRGUARD_TOOLS_BIN
log "using $CSRGUARD_TOOLS_BIN"

log "go vet"
go vet ./...

log "go mod tidy is clean"
cp go.mod /tmp/csrguard-go.mod.$$ && cp go.sum /tmp/csrguard-go.sum.$$
go mod tidy
if ! diff -q go.mod /tmp/csrguard-go.mod.$$ >/dev/null || ! diff -q go.sum /tmp/csrguard-go.sum.$$ >/dev/null; then
  git --no-pager diff go.mod go.sum >&2 || true
  echo "go.mod/go.sum are not tidy: run go mod tidy" >&2; exit 1
fi
rm -f /tmp/csrguard-go.mod.$$ /tmp/csrguard-go.sum.$$

log "go test -race ./... (unit, integration, e2e)"
go test -race -count=1 -timeout 40m ./...

# test/talos is a module of its own, so that Talos's machinery stays out of
# csrguard's go.mod: ./... above does not reach it. -mod=readonly: its go.mod
# and go.sum are used as committed, never rewritten. No -race: it runs no
# goroutines of its own. Cold, with empty module and build caches: about
# 400 MB downloaded and 6 CPU-minutes of building (11 min on a busy 2-core
# machine); warm: about 15 s.
log "Talos machinery v$TALOS_MACHINERY_VERSION: the deploy/talos patches and check-config against Talos's own config code (test/talos)"
(
  cd test/talos
  export GOWORK=off GOFLAGS="${GOFLAGS:-} -mod=readonly"
  if ! go mod tidy -diff; then
    echo "test/talos: go.mod/go.sum are not tidy: run go mod tidy in test/talos" >&2; exit 1
  fi
  go vet ./...
  go test -count=1 -timeout 20m ./...
)

# Budgets are input counts (about 5-10 s each here), not durations: when a
# -fuzztime duration ends while a worker is busy, Go 1.26's fuzz coordinator
# can fail the target with a bare "context deadline exceeded" and no input
# (internal/fuzz's stop compares the error with the workers' context, which may
# not be cancelled yet). A count has no deadline to race; a real finding still
# fails, with its input written to testdata/fuzz.
log "fuzz smoke (a fixed number of inputs each; make fuzz runs longer)"
go test -run='^$' -fuzz='^FuzzParse$' -fuzztime=30000x -fuzzminimizetime=500x ./internal/servingcsr
go test -run='^$' -fuzz='^FuzzParseUnverified$' -fuzztime=30000x -fuzzminimizetime=500x ./internal/servingcsr
go test -run='^$' -fuzz='^FuzzEvaluate$' -fuzztime=8000x -fuzzminimizetime=500x ./internal/policy
go test -run='^$' -fuzz='^FuzzEvaluateFromAPI$' -fuzztime=8000x -fuzzminimizetime=500x ./internal/policy
go test -run='^$' -fuzz='^FuzzNodeAddress$' -fuzztime=20000x -fuzzminimizetime=500x ./internal/policy
go test -run='^$' -fuzz='^FuzzCheck$' -fuzztime=5000x -fuzzminimizetime=500x ./internal/configcheck

log "all tests passed"
