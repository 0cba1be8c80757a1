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

log() { printf '==> %s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# strip_v prints a version without a leading "v".
strip_v() { printf '%s' "${1#v}"; }

# elapsed START prints the time since START (a $SECONDS value) as 2m05s.
elapsed() { local s=$((SECONDS - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# build_step TITLE LOGNAME ESTIMATE FUNC runs FUNC with all its output in
# $CSRGUARD_CACHE/logs/LOGNAME.log, and prints one line when it starts and one
# when it ends, with the time taken. On failure it prints the log's tail, names
# a module the proxy refused if that is why, and exits.
build_step() {
  local title="$1" logname="$2" estimate="$3" fn="$4"
  local logdir="$CSRGUARD_CACHE/logs" start=$SECONDS
  mkdir -p "$logdir"
  local logfile="$logdir/$logname.log"
  log "building $title from Go modules (first time only; cold $estimate; log: $logfile)"
  # Not `if ! ("$fn")`: bash ignores set -e inside a condition, so a failed
  # step in the middle of fn would go unnoticed; the subshell sets it itself.
  local rc=0
  set +e
  (set -e; "$fn") >"$logfile" 2>&1
  rc=$?
  set -e
  if ((rc != 0)); then
    echo "error: building $title failed after $(elapsed "$start"); the end of $logfile:" >&2
    tail -n 20 "$logfile" >&2
    local refused
    refused="$(grep -Eo '[A-Za-z0-9.-]+(/[A-Za-z0-9._~-]+)+@v[0-9][^: ]*: .*(not found|403 Forbidden|404|410 Gone|unknown revision|invalid version)' "$logfile" |
      sed 's/:.*//' | sort -u | paste -sd ' ' || true)"
    if [[ -n "$refused" ]]; then
      echo "error: the Go module proxy does not serve what this version needs: $refused" >&2
    fi
    exit 1
  fi
  log "built $title in $(elapsed "$start")"
}

# build_go_tool NAME MODULE VERSION PACKAGE ESTIMATE [LDFLAGS]: go build PACKAGE
# from MODULE@vVERSION in a throwaway tools module into
# $CSRGUARD_CACHE/tools/NAME-vVERSION/NAME, unless that binary exists.
build_go_tool() {
  local name="$1" module="$2" version="$3" pkg="$4" estimate="$5" ldflags="-s -w ${6:-}"
  local dir="$CSRGUARD_CACHE/tools/$name-v$version"
  [[ -x "$dir/$name" ]] && return 0
  local work="$dir.work"
  tool() {
    export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
    rm -rf "$work" && mkdir -p "$work"
    (cd "$work" && go mod init "csrguard.local/$name" && go get "$module@v$version" &&
      go build -trimpath -ldflags "$ldflags" -o "$name" "$pkg")
    mkdir -p "$dir" && mv "$work/$name" "$dir/$name" && rm -rf "$work"
  }
  build_step "$name v$version" "$name-v$version" "$estimate" tool
}
