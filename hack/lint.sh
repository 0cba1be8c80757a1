#!/usr/bin/env bash
# lint.sh runs golangci-lint, built and cached by hack/build-lint.sh, with the
# checked-in .golangci.yml on the whole module, or on the packages given:
#   hack/lint.sh                       # ./...
#   hack/lint.sh ./internal/policy/... # some packages
# It exits non-zero on any finding. Its analysis cache lives with the other
# csrguard caches, in $CSRGUARD_CACHE/golangci-lint.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

LINT_BIN="$(hack/build-lint.sh)"
export GOLANGCI_LINT_CACHE="${GOLANGCI_LINT_CACHE:-$CSRGUARD_CACHE/golangci-lint}"
if [[ $# -eq 0 ]]; then
  set -- ./...
fi
# --allow-serial-runners: a second run (another clone, make test beside make
# lint) waits for the first instead of failing on the shared cache's lock.
exec "$LINT_BIN/golangci-lint" run --allow-serial-runners "$@"
