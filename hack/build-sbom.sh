#!/usr/bin/env bash
# build-sbom.sh builds cyclonedx-gomod (CYCLONEDX_GOMOD_VERSION in
# hack/versions.env), which writes the release's CycloneDX SBOM, from its Go
# module, caches it in $CSRGUARD_CACHE/tools/cyclonedx-gomod-v<version>, and
# prints that directory. Like golangci-lint it stays out of csrguard's go.mod.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CYCLONEDX_GOMOD_VERSION="$(strip_v "$CYCLONEDX_GOMOD_VERSION")"
build_go_tool cyclonedx-gomod github.com/CycloneDX/cyclonedx-gomod "$CYCLONEDX_GOMOD_VERSION" \
  github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod "~1 min"
echo "$CSRGUARD_CACHE/tools/cyclonedx-gomod-v$CYCLONEDX_GOMOD_VERSION"
