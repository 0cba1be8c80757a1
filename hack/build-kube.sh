#!/usr/bin/env bash
# build-kube.sh builds etcd, kube-apiserver, kube-controller-manager and kubectl
# from their Go modules (no prebuilt downloads) and prints the directory that
# holds them. Versions come from hack/versions.env (K8S_VERSION, ETCD_VERSION).
#
# The result is cached in $CSRGUARD_CACHE/kube/v$K8S_VERSION and
# $CSRGUARD_CACHE/etcd/v$ETCD_VERSION; a present cache is reused without
# touching the network. A cold build takes about 15 minutes on 2 cores.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_VERSION="$(strip_v "$K8S_VERSION")"
ETCD_VERSION="$(strip_v "$ETCD_VERSION")"
KUBE_DIR="$CSRGUARD_CACHE/kube/v$K8S_VERSION"
ETCD_DIR="$CSRGUARD_CACHE/etcd/v$ETCD_VERSION"
BIN_DIR="$CSRGUARD_CACHE/bin/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION"

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off

build_kube() {
  local work="$KUBE_DIR.work"
  rm -rf "$work" && mkdir -p "$work"
  log "building Kubernetes v$K8S_VERSION from k8s.io/kubernetes (cold: ~12 min on 2 cores)"
  local gomod
  gomod="$(cd "$work" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [[ -f "$gomod" ]] || { echo "cannot download k8s.io/kubernetes@v$K8S_VERSION" >&2; exit 1; }
  local goversion staging="0.${K8S_VERSION#1.}"
  goversion="$(sed -n 's/^go \(.*\)/\1/p' "$gomod")"
  {
    echo "module csrguard.local/kubetools"
    echo
    echo "go $goversion"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    # k8s.io/kubernetes replaces its staging modules with ./staging paths, which
    # only apply inside its own repository. Point each at the published module of
    # the matching version instead (v1.37.2 -> v0.37.2).
    sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#replace \1 => \1 v'"$staging"'#p' "$gomod"
  } > "$work/go.mod"
  (cd "$work" && go mod tidy >/dev/null 2>&1 || true)
  local pkgs=(cmd/kube-apiserver cmd/kube-controller-manager cmd/kubectl)
  (cd "$work" && for p in "${pkgs[@]}"; do go get "k8s.io/kubernetes/$p@v$K8S_VERSION"; done)
  local date minor
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  minor="${K8S_VERSION#1.}"; minor="${minor%%.*}"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date -X $pkg.gitCommit=module-v$K8S_VERSION"
  done
  mkdir -p "$work/bin"
  for p in "${pkgs[@]}"; do
    log "go build k8s.io/kubernetes/$p"
    (cd "$work" && go build -trimpath -ldflags "$ldflags" -o "bin/$(basename "$p")" "k8s.io/kubernetes/$p")
  done
  rm -rf "$KUBE_DIR" && mkdir -p "$KUBE_DIR"
  mv "$work/bin/"* "$KUBE_DIR/" && rm -rf "$work"
}

build_etcd() {
  local work="$ETCD_DIR.work"
  rm -rf "$work" && mkdir -p "$work/bin"
  log "building etcd v$ETCD_VERSION from go.etcd.io/etcd/server/v3"
  (cd "$work" && go mod init csrguard.local/etcdtools >/dev/null 2>&1 &&
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" &&
    go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module" -o bin/etcd go.etcd.io/etcd/server/v3)
  rm -rf "$ETCD_DIR" && mkdir -p "$ETCD_DIR"
  mv "$work/bin/etcd" "$ETCD_DIR/" && rm -rf "$work"
}

for b in kube-apiserver kube-controller-manager kubectl; do
  [[ -x "$KUBE_DIR/$b" ]] || { build_kube; break; }
done
[[ -x "$ETCD_DIR/etcd" ]] || build_etcd

# One directory with all four, which is what tests and the demo are given.
mkdir -p "$BIN_DIR"
for b in kube-apiserver kube-controller-manager kubectl; do ln -sf "$KUBE_DIR/$b" "$BIN_DIR/$b"; done
ln -sf "$ETCD_DIR/etcd" "$BIN_DIR/etcd"
echo "$BIN_DIR"
