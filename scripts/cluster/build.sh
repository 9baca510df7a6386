#!/usr/bin/env bash
# Builds the test cluster's binaries from Go modules into .controlplane/bin (git-ignored).
#
#   control plane (default): etcd, etcdctl, kube-apiserver, kubectl, helm
#   --node adds the real node's: kubelet, kube-controller-manager, kube-scheduler,
#                                kube-proxy, coredns
#
# Versions come from test/controlplane/go.mod (CoreDNS from test/controlplane/coredns/go.mod,
# a module of its own so that its dependencies never move Kubernetes'); each binary is stamped
# with them through -ldflags so that `/version`, `kubectl version` and `helm version` tell the
# truth.
#
# A binary is rebuilt only when it is missing or when its module's go.mod/go.sum or this script
# changed since it was built (a stamp file records their digest), so a warm run costs a hash.
#
# Usage: scripts/cluster/build.sh [--force] [--node]
# Env:   KEYWARD_CP_BIN overrides the output folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MOD="$ROOT/test/controlplane"
DNS_MOD="$MOD/coredns"
BIN="${KEYWARD_CP_BIN:-$ROOT/.controlplane/bin}"
FORCE=0
NODE=0
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --node) NODE=1 ;;
    -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument '$arg' (use --force, --node)" >&2; exit 2 ;;
  esac
done

command -v go >/dev/null || { echo "build.sh: Go is required (go.mod says which version)" >&2; exit 1; }
mkdir -p "$BIN"

# One build at a time: the vitest global setup and a person may both call us.
exec 9>"$BIN/.build.lock"
flock 9

DIGEST="$(cat "$MOD/go.mod" "$MOD/go.sum" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
DNS_DIGEST="$(cat "$DNS_MOD/go.mod" "$DNS_MOD/go.sum" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
TOOLS=(etcd etcdctl kube-apiserver kubectl helm)
[[ $NODE == 1 ]] && TOOLS+=(kubelet kube-controller-manager kube-scheduler kube-proxy coredns)

digest_of() { if [[ "$1" == coredns ]]; then echo "$DNS_DIGEST"; else echo "$DIGEST"; fi; }

needs_build() {
  local name="$1"
  [[ $FORCE == 1 ]] && return 0
  [[ -x "$BIN/$name" ]] || return 0
  [[ "$(cat "$BIN/.stamp-$name" 2>/dev/null)" == "$(digest_of "$name")" ]] || return 0
  return 1
}

todo=()
for t in "${TOOLS[@]}"; do
  if needs_build "$t"; then todo+=("$t"); fi
done
if [[ ${#todo[@]} == 0 ]]; then
  echo "cluster binaries are up to date in $BIN (${TOOLS[*]})"
  exit 0
fi

# The Keyward repo's VCS state says nothing about these tools; CGO off gives
# static binaries and needs no C compiler, as upstream builds kube-apiserver.
export GOFLAGS="-buildvcs=false -mod=readonly"
export CGO_ENABLED=0

cd "$MOD"
modver() { go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' "$1"; }
K8S="$(modver k8s.io/kubernetes)"             # v1.35.4
STAGING="$(modver k8s.io/component-base)"     # v0.35.4
HELM="$(modver helm.sh/helm/v3)"              # v3.20.2
ETCD="$(modver go.etcd.io/etcd/server/v3)"    # v3.6.5
K8S_MAJOR="$(echo "${K8S#v}" | cut -d. -f1)"
K8S_MINOR="$(echo "${K8S#v}" | cut -d. -f2)"
HELM_K8S_MINOR="$(echo "${STAGING#v}" | cut -d. -f2)"  # helm's Capabilities follow its client-go
BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# hack/lib/version.sh sets these for both the component-base and client-go copies.
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S -X $pkg.gitMajor=$K8S_MAJOR -X $pkg.gitMinor=$K8S_MINOR"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$BUILD_DATE -X $pkg.gitCommit=module-$K8S"
done
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
done
etcd_ldflags="-X go.etcd.io/etcd/api/v3/version.GitSHA=module-$ETCD"

build() {
  local name="$1" dir="$2" pkg="$3" ldflags="$4" start
  start=$SECONDS
  echo "building $name from $pkg ..."
  (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$name.tmp" "$pkg")
  mv -f "$BIN/$name.tmp" "$BIN/$name"
  digest_of "$name" >"$BIN/.stamp-$name"
  echo "built $name in $((SECONDS - start)) s"
}

for t in "${todo[@]}"; do
  case "$t" in
    etcd) build etcd "$MOD" go.etcd.io/etcd/server/v3 "$etcd_ldflags" ;;
    etcdctl) build etcdctl "$MOD" go.etcd.io/etcd/etcdctl/v3 "$etcd_ldflags" ;;
    kube-apiserver) build kube-apiserver "$MOD" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags" ;;
    kubectl) build kubectl "$MOD" k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags" ;;
    helm) build helm "$MOD" helm.sh/helm/v3/cmd/helm "$helm_ldflags" ;;
    kubelet) build kubelet "$MOD" k8s.io/kubernetes/cmd/kubelet "$k8s_ldflags" ;;
    kube-controller-manager)
      build kube-controller-manager "$MOD" k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags" ;;
    kube-scheduler) build kube-scheduler "$MOD" k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags" ;;
    kube-proxy) build kube-proxy "$MOD" k8s.io/kubernetes/cmd/kube-proxy "$k8s_ldflags" ;;
    coredns) build coredns "$DNS_MOD" github.com/coredns/coredns "" ;;
  esac
done
echo "cluster binaries ready in $BIN: k8s $K8S, etcd $ETCD, helm $HELM"
