#!/usr/bin/env bash
# build-lint.sh builds golangci-lint (GOLANGCI_LINT_VERSION in
# hack/versions.env) from its Go module, caches it in
# $CSRGUARD_CACHE/tools/golangci-lint-v<version>, and prints that directory.
# hack/lint.sh runs it; it is apart from build-tools.sh so that linting does
# not wait for promtool and helm. Cold, on 2 cores: about 30 s of module
# downloads, then 7 CPU-minutes of compiling (measured 2026-11-30: 16m50s
# wall on the shared, loaded 2-core machine; about 5 min idle, estimated).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GOLANGCI_LINT_VERSION="$(strip_v "$GOLANGCI_LINT_VERSION")"
# golangci-lint reads its version from these (goreleaser sets them); built in
# a tools module, it would otherwise report "(devel)".
build_go_tool golangci-lint github.com/golangci/golangci-lint/v2 "$GOLANGCI_LINT_VERSION" \
  github.com/golangci/golangci-lint/v2/cmd/golangci-lint "~5 min" \
  "-X main.version=$GOLANGCI_LINT_VERSION -X main.commit=module-v$GOLANGCI_LINT_VERSION -X main.date=unknown"
echo "$CSRGUARD_CACHE/tools/golangci-lint-v$GOLANGCI_LINT_VERSION"
