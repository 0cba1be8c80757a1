#!/usr/bin/env bash
# test-matrix.sh runs the e2e suite (approval, hostile corpus, monitoring,
# laptop commands, the real kubelet: test/e2e) and the packaging tests
# (test/packaging) against every Kubernetes version in K8S_MATRIX_VERSIONS,
# each built by build-kube.sh once and cached by version, then the skew run:
# the suite against the API server of K8S_SKEW_APISERVER with kubelets of
# K8S_SKEW_KUBELET (the real kubelet of that version, and simulated kubelets
# with its CSR shape). Versions come from hack/versions.env; MATRIX_VERSIONS
# (space-separated, "skew" for the skew run, "skew-simulated" for one with
# simulated old kubelets only, which needs no older build) picks some of them.
#
# It prints a table (version, patch, date, result, build and test time) and
# records each row in docs/support-matrix.tsv, from which it rewrites the
# table between the support-matrix markers in README.md: the README's table
# is this script's output. Logs: _output/matrix/.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

OUT="$REPO_ROOT/_output/matrix"
TSV="$REPO_ROOT/docs/support-matrix.tsv"
mkdir -p "$OUT"
read -r -a versions <<< "${MATRIX_VERSIONS:-${K8S_MATRIX_VERSIONS//,/ } skew}"

log "test tools (promtool v$PROMETHEUS_VERSION, helm v$HELM_VERSION)"
CSRGUARD_TOOLS_BIN="$(hack/build-tools.sh)"
export CSRGUARD_TOOLS_BIN

# record KEY PATCH RESULT BUILD TEST NOTE replaces KEY's row in the TSV.
record() {
  local row
  row="$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s' "$1" "$2" "$(date -u +%Y-%m-%d)" "$3" "$4" "$5" "$6")"
  [[ -f "$TSV" ]] || printf 'kubernetes\tpatch\ttested\tresult\tbuild\te2e\tnote\n' > "$TSV"
  { head -n 1 "$TSV"; { tail -n +2 "$TSV" | awk -F '\t' -v k="$1" '$1 != k'; echo "$row"; } | sort -t $'\t' -k1,1Vr; } > "$TSV.new"
  mv "$TSV.new" "$TSV"
  ROWS+=("$row")
}

# build VERSION sets BIN to the binary directory of VERSION, building it if
# it is not cached, and BUILD_TIME to how long that took ("cached").
build() {
  local start=$SECONDS
  BIN="$(K8S_VERSION="$1" hack/build-kube.sh)" || return 1
  BUILD_TIME="$(elapsed "$start")"
  if ((SECONDS - start < 10)); then BUILD_TIME=cached; fi
}

# suite LOG runs the tests with the environment it is given; sets TEST_TIME.
suite() {
  local start=$SECONDS rc=0
  go test -count=1 -timeout 60m ./test/e2e ./test/packaging > "$1" 2>&1 || rc=$?
  TEST_TIME="$(elapsed "$start")"
  return "$rc"
}

minor() { local m="${1#1.}"; printf 'v1.%s' "${m%%.*}"; }

ROWS=()
failed=0
for v in "${versions[@]}"; do
  if [[ "$v" == skew-simulated ]]; then
    # Without building the older kubelet: simulated kubelets only, the real
    # kubelet of the API server's version.
    api="$K8S_SKEW_APISERVER" kl="$K8S_SKEW_KUBELET"
    key="$(minor "$api") API server, $(minor "$kl") simulated kubelets"
    log "skew: the suite on Kubernetes v$api with simulated kubelets v$kl"
    if ! build "$api"; then
      record "$key" "v$api / v$kl" "build failed" "-" "-" "see $OUT"; failed=1; continue
    fi
    if CSRGUARD_KUBE_BIN="$BIN" CSRGUARD_KUBELET_VERSION="v$kl" suite "$OUT/e2e-skew-simulated-v$api-v$kl.log"; then
      record "$key" "v$api / v$kl" pass "$BUILD_TIME" "$TEST_TIME" "simulated kubelets with v$kl's CSR shape; the real kubelet is v$api's"
    else
      record "$key" "v$api / v$kl" FAIL "$BUILD_TIME" "$TEST_TIME" "log: _output/matrix/e2e-skew-simulated-v$api-v$kl.log"; failed=1
    fi
    continue
  fi
  if [[ "$v" == skew ]]; then
    api="$K8S_SKEW_APISERVER" kl="$K8S_SKEW_KUBELET"
    key="$(minor "$api") API server, $(minor "$kl") kubelets"
    log "skew: the suite on Kubernetes v$api with kubelets v$kl"
    apidir="" kldir=""
    if build "$api"; then apidir="$BIN"; fi
    if build "$kl"; then kldir="$BIN"; fi
    if [[ -z "$apidir" || -z "$kldir" ]]; then
      record "$key" "v$api / v$kl" "build failed" "-" "-" "see $OUT"; failed=1; continue
    fi
    if CSRGUARD_KUBE_BIN="$apidir" CSRGUARD_KUBELET_BIN="$kldir/hollowkubelet" CSRGUARD_KUBELET_VERSION="v$kl" \
      suite "$OUT/e2e-skew-v$api-v$kl.log"; then
      record "$key" "v$api / v$kl" pass "-" "$TEST_TIME" "real kubelet v$kl; simulated kubelets with v$kl's CSR shape"
    else
      record "$key" "v$api / v$kl" FAIL "-" "$TEST_TIME" "log: _output/matrix/e2e-skew-v$api-v$kl.log"; failed=1
    fi
    continue
  fi
  log "Kubernetes v$v: build (cached by version), then test/e2e and test/packaging"
  if ! build "$v"; then
    record "$(minor "$v")" "v$v" "build failed" "-" "-" "hack/build-kube.sh failed; it names its log"; failed=1; continue
  fi
  if CSRGUARD_KUBE_BIN="$BIN" suite "$OUT/e2e-v$v.log"; then
    record "$(minor "$v")" "v$v" pass "$BUILD_TIME" "$TEST_TIME" ""
  else
    record "$(minor "$v")" "v$v" FAIL "$BUILD_TIME" "$TEST_TIME" "log: _output/matrix/e2e-v$v.log"; failed=1
  fi
done

# The table: this run's rows on the terminal, every recorded row in the README.
table() {
  echo "| Kubernetes | patch | tested | result | build | e2e + packaging | note |"
  echo "|---|---|---|---|---|---|---|"
  awk -F '\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7 }'
}
echo
printf '%s\n' "${ROWS[@]}" | table
tail -n +2 "$TSV" | table > "$OUT/support-matrix.md"
awk -v table="$OUT/support-matrix.md" '
  /<!-- support-matrix:end -->/ { skip = 0 }
  !skip { print }
  /<!-- support-matrix:begin/ { while ((getline line < table) > 0) print line; skip = 1 }
' README.md > "$OUT/README.md" && cp "$OUT/README.md" README.md
log "recorded in docs/support-matrix.tsv and README.md (Support)"
exit "$failed"
