# Shared helpers for the scripts in hack/. Source it; it defines functions and
# loads hack/versions.env (values already in the environment win).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# CSRGUARD_CACHE holds binaries built from Go modules, keyed by version. It lives
# outside the repository so that a fresh clone on the same machine reuses it.
CSRGUARD_CACHE="${CSRGUARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/csrguard}"

while IFS= read -r line; do
  case "$line" in ''|'#'*) continue ;; esac
  key="${line%%\?=*}"
  value="${line#*\?=}"
  if [[ -z "${!key:-}" ]]; then
    export "$key=$value"
  fi
done < "$REPO_ROOT/hack/versions.env"

log() { printf '==> %s\n' "$*" >&2; }

# strip_v prints a version without a leading "v".
strip_v() { printf '%s' "${1#v}"; }
