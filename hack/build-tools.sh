#!/usr/bin/env bash
# build-tools.sh builds the test tools csrguard pins — promtool (Prometheus
# rule tests) and helm (chart lint and render) — from their Go modules, caches
# them in $CSRGUARD_CACHE/tools/<tool>-v<version>, and prints the directory
# holding them. Versions come from hack/versions.env; golangci-lint is built
# apart, by hack/build-lint.sh, so that `make lint` needs neither of these.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROMETHEUS_VERSION="$(strip_v "$PROMETHEUS_VERSION")"
HELM_VERSION="$(strip_v "$HELM_VERSION")"
build_go_tool promtool github.com/prometheus/prometheus "$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/promtool "~7 min"
build_go_tool helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "~3 min"

BIN_DIR="$CSRGUARD_CACHE/bin/tools-prom-v$PROMETHEUS_VERSION-helm-v$HELM_VERSION"
mkdir -p "$BIN_DIR"
ln -sf "$CSRGUARD_CACHE/tools/promtool-v$PROMETHEUS_VERSION/promtool" "$BIN_DIR/promtool"
ln -sf "$CSRGUARD_CACHE/tools/helm-v$HELM_VERSION/helm" "$BIN_DIR/helm"
echo "$BIN_DIR"
