#!/usr/bin/env bash
# build-kube.sh builds the cluster's real components from their Go modules (no
# prebuilt downloads) and prints the directory that holds them:
#   etcd, kube-apiserver, kube-controller-manager, kubectl   (K8S_VERSION, ETCD_VERSION)
#   hollowkubelet: the kubelet's own code with a fake runtime (test/hollowkubelet)
#   metrics-server                                            (METRICS_SERVER_VERSION)
# Versions come from hack/versions.env.
#
# Each is cached in $CSRGUARD_CACHE/<component>/v<version> (the hollow kubelet
# also by the hash of its source); a present cache is reused without touching
# the network. Each build prints one line when it starts and one when it ends,
# with its time; the go tool's output goes to $CSRGUARD_CACHE/logs/, which a
# failure names. Cold, on 2 cores: Kubernetes about 12 minutes, the hollow
# kubelet 3 more, metrics-server 9, etcd 1.
#
# hack/build-kube.sh --check only resolves K8S_VERSION's modules (k8s.io/kubernetes
# and every staging module at the matching v0 version) and says whether the
# module proxy serves them all, naming the first it refuses; nothing is built.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

K8S_VERSION="$(strip_v "$K8S_VERSION")"
ETCD_VERSION="$(strip_v "$ETCD_VERSION")"
METRICS_SERVER_VERSION="$(strip_v "$METRICS_SERVER_VERSION")"
HOLLOW_SRC="$REPO_ROOT/test/hollowkubelet"
HOLLOW_HASH="$(cat "$HOLLOW_SRC"/*.go | sha256sum | cut -c1-12)"

KUBE_DIR="$CSRGUARD_CACHE/kube/v$K8S_VERSION"
ETCD_DIR="$CSRGUARD_CACHE/etcd/v$ETCD_VERSION"
HOLLOW_DIR="$CSRGUARD_CACHE/hollowkubelet/v$K8S_VERSION-$HOLLOW_HASH"
MS_DIR="$CSRGUARD_CACHE/metrics-server/v$METRICS_SERVER_VERSION"
BIN_DIR="$CSRGUARD_CACHE/bin/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION-ms-v$METRICS_SERVER_VERSION-hk-$HOLLOW_HASH"

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off

# kube_module DIR writes a tools module into DIR that requires k8s.io/kubernetes
# at K8S_VERSION. k8s.io/kubernetes replaces its staging modules with ./staging
# paths, which only apply inside its own repository; point each at the
# published module of the matching version instead (v1.37.2 -> v0.37.2).
kube_module() {
  local dir="$1" gomod goversion staging="0.${K8S_VERSION#1.}"
  gomod="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [[ -f "$gomod" ]] || { echo "cannot download k8s.io/kubernetes@v$K8S_VERSION" >&2; return 1; }
  goversion="$(sed -n 's/^go \(.*\)/\1/p' "$gomod")"
  {
    echo "module csrguard.local/kubetools"
    echo
    echo "go $goversion"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#replace \1 => \1 v'"$staging"'#p' "$gomod"
  } > "$dir/go.mod"
}

# kube_ldflags stamps the version as Kubernetes' own build does, so that
# kubectl version and the kubelet's Node status report it.
kube_ldflags() {
  local date minor ldflags="-s -w"
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  minor="${K8S_VERSION#1.}"; minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date -X $pkg.gitCommit=module-v$K8S_VERSION"
  done
  printf '%s' "$ldflags"
}

KUBE_PKGS=(cmd/kube-apiserver cmd/kube-controller-manager cmd/kubectl)

# resolve_kube DIR writes the tools module into DIR and resolves every module
# the Kubernetes binaries need; a module the proxy refuses fails it.
resolve_kube() {
  local dir="$1"
  mkdir -p "$dir"
  kube_module "$dir"
  (cd "$dir" && for p in "${KUBE_PKGS[@]}"; do go get "k8s.io/kubernetes/$p@v$K8S_VERSION"; done)
}

build_kube() {
  local work="$KUBE_DIR.work" pkgs=("${KUBE_PKGS[@]}")
  rm -rf "$work" && mkdir -p "$work/bin"
  resolve_kube "$work"
  local ldflags; ldflags="$(kube_ldflags)"
  for p in "${pkgs[@]}"; do
    echo "--- go build k8s.io/kubernetes/$p"
    (cd "$work" && go build -trimpath -ldflags "$ldflags" -o "bin/$(basename "$p")" "k8s.io/kubernetes/$p")
  done
  rm -rf "$KUBE_DIR" && mkdir -p "$KUBE_DIR"
  mv "$work/bin/"* "$KUBE_DIR/" && rm -rf "$work"
}

# hollow_module DIR writes the hollow kubelet's module into DIR and resolves
# what it needs (the kubelet's code needs more staging modules than the
# control plane's, k8s.io/dynamic-resource-allocation among them).
hollow_module() {
  local dir="$1"
  mkdir -p "$dir"
  kube_module "$dir"
  # The root container's cAdvisor types moved to cadvisor/lib/model in v1.37:
  # copy the variant of the version's kubelet (the fake it embeds says which).
  local variant=cadvisor_info.go kube
  kube="$(cd "$dir" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)"
  if grep -q '"github.com/google/cadvisor/lib/model"' "$kube/pkg/kubelet/cadvisor/testing/cadvisor_fake.go"; then
    variant=cadvisor_model.go
  fi
  cp "$HOLLOW_SRC/main.go" "$HOLLOW_SRC/$variant" "$dir/"
  sed -i '/^\/\/go:build ignore$/d' "$dir/main.go" "$dir/$variant"
  # Before 1.36 the CRI streaming server was k8s.io/kubelet/pkg/cri/streaming,
  # with client-go's TerminalSize: the same API under older import paths.
  if ! grep -q 'k8s.io/cri-streaming =>' "$dir/go.mod"; then
    sed -i -e 's#"k8s.io/cri-streaming/pkg/streaming"#"k8s.io/kubelet/pkg/cri/streaming"#' \
      -e 's#"k8s.io/cri-streaming/pkg/streaming/remotecommand"#"k8s.io/client-go/tools/remotecommand"#' "$dir/main.go"
  fi
  # Before 1.34 kubeletapp.InitializeTLS took no context.
  if grep -q '^func InitializeTLS(kf ' "$kube/cmd/kubelet/app/server.go"; then
    sed -i 's#kubeletapp.InitializeTLS(ctx, f, c)#kubeletapp.InitializeTLS(f, c)#' "$dir/main.go"
  fi
  (cd "$dir" && go mod tidy)
}

build_hollow() {
  local work="$HOLLOW_DIR.work"
  rm -rf "$work" && mkdir -p "$work"
  hollow_module "$work"
  (cd "$work" && go build -trimpath -ldflags "$(kube_ldflags)" -o hollowkubelet .)
  # Builds of older versions of the source are of no more use.
  find "$CSRGUARD_CACHE/hollowkubelet" -maxdepth 1 -name "v$K8S_VERSION-*" ! -name '*.work' -exec rm -rf {} +
  rm -rf "$HOLLOW_DIR" && mkdir -p "$HOLLOW_DIR"
  mv "$work/hollowkubelet" "$HOLLOW_DIR/" && rm -rf "$work"
}

build_etcd() {
  local work="$ETCD_DIR.work"
  rm -rf "$work" && mkdir -p "$work/bin"
  (cd "$work" && go mod init csrguard.local/etcdtools &&
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" &&
    go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=module" -o bin/etcd go.etcd.io/etcd/server/v3)
  rm -rf "$ETCD_DIR" && mkdir -p "$ETCD_DIR"
  mv "$work/bin/etcd" "$ETCD_DIR/" && rm -rf "$work"
}

build_metrics_server() {
  local work="$MS_DIR.work" pkg=k8s.io/client-go/pkg/version
  rm -rf "$work" && mkdir -p "$work"
  (cd "$work" && go mod init csrguard.local/metricsserver &&
    go get "sigs.k8s.io/metrics-server@v$METRICS_SERVER_VERSION" &&
    go build -trimpath -ldflags "-s -w -X $pkg.gitVersion=v$METRICS_SERVER_VERSION -X $pkg.gitCommit=module" \
      -o metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server)
  rm -rf "$MS_DIR" && mkdir -p "$MS_DIR"
  mv "$work/metrics-server" "$MS_DIR/" && rm -rf "$work"
}

check_kube() {
  local work; work="$(mktemp -d)"
  resolve_kube "$work/kube"
  hollow_module "$work/hollow"
  rm -rf "$work"
}

if [[ "${1:-}" == "--check" ]]; then
  build_step "nothing: resolving the modules of Kubernetes v$K8S_VERSION" "check-kube-v$K8S_VERSION" "~1 min" check_kube
  echo "ok: the module proxy serves every module Kubernetes v$K8S_VERSION needs"
  exit 0
fi

for b in kube-apiserver kube-controller-manager kubectl; do
  [[ -x "$KUBE_DIR/$b" ]] || { build_step "Kubernetes v$K8S_VERSION (kube-apiserver, kube-controller-manager, kubectl)" "kube-v$K8S_VERSION" "~15 min" build_kube; break; }
done
[[ -x "$ETCD_DIR/etcd" ]] || build_step "etcd v$ETCD_VERSION" "etcd-v$ETCD_VERSION" "~1 min" build_etcd
[[ -x "$HOLLOW_DIR/hollowkubelet" ]] || build_step "the kubelet v$K8S_VERSION (hollow: fake runtime)" "hollowkubelet-v$K8S_VERSION" "~1 min after Kubernetes" build_hollow
[[ -x "$MS_DIR/metrics-server" ]] || build_step "metrics-server v$METRICS_SERVER_VERSION" "metrics-server-v$METRICS_SERVER_VERSION" "~5 min" build_metrics_server

# One directory with every binary, which is what tests and the demo are given.
mkdir -p "$BIN_DIR"
for b in kube-apiserver kube-controller-manager kubectl; do ln -sf "$KUBE_DIR/$b" "$BIN_DIR/$b"; done
ln -sf "$ETCD_DIR/etcd" "$BIN_DIR/etcd"
ln -sf "$HOLLOW_DIR/hollowkubelet" "$BIN_DIR/hollowkubelet"
ln -sf "$MS_DIR/metrics-server" "$BIN_DIR/metrics-server"
echo "$BIN_DIR"
