#!/usr/bin/env bash
# build-tools.sh builds the test tools csrguard pins — promtool (Prometheus
# rule tests) and helm (chart lint and render) — from their Go modules, caches
# them in $CSRGUARD_CACHE/tools/<tool>-v<version>, and prints the directory
# holding them. Versions come from hack/versions.env.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off

# build NAME MODULE VERSION PACKAGE: go build PACKAGE from MODULE@VERSION in a
# throwaway tools module, unless the cached binary exists.
build() {
  local name="$1" module="$2" version="$3" pkg="$4"
  local dir="$CSRGUARD_CACHE/tools/$name-v$version"
  [[ -x "$dir/$name" ]] && return 0
  local work="$dir.work"
  tool() {
    rm -rf "$work" && mkdir -p "$work"
    (cd "$work" && go mod init "csrguard.local/$name" && go get "$module@v$version" &&
      go build -trimpath -ldflags "-s -w" -o "$name" "$pkg")
    mkdir -p "$dir" && mv "$work/$name" "$dir/$name" && rm -rf "$work"
  }
  build_step "$name v$version" "$name-v$version" "$5" tool
}

PROMETHEUS_VERSION="$(strip_v "$PROMETHEUS_VERSION")"
HELM_VERSION="$(strip_v "$HELM_VERSION")"
build promtool github.com/prometheus/prometheus "$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/promtool "~7 min"
build helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "~3 min"

BIN_DIR="$CSRGUARD_CACHE/bin/tools-prom-v$PROMETHEUS_VERSION-helm-v$HELM_VERSION"
mkdir -p "$BIN_DIR"
ln -sf "$CSRGUARD_CACHE/tools/promtool-v$PROMETHEUS_VERSION/promtool" "$BIN_DIR/promtool"
ln -sf "$CSRGUARD_CACHE/tools/helm-v$HELM_VERSION/helm" "$BIN_DIR/helm"
echo "$BIN_DIR"
