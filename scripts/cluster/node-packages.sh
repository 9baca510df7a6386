#!/usr/bin/env bash
# Installs the Debian packages the real node needs (`npm run cluster -- up --node`), idempotently:
#
#   containerd                   container runtime (1.6 on Debian 12; Kubernetes 1.35 is the last
#                                release that supports containerd 1.x)
#   runc                         the OCI runtime containerd starts containers with
#   containernetworking-plugins  bridge, host-local and loopback CNI plugins (/usr/lib/cni)
#   iptables                     kube-proxy's iptables mode and the node's egress guard
#   conntrack                    kube-proxy clears stale UDP entries with it
#
# Installed packages cost one dpkg query. Missing ones are installed with apt-get, after an
# `apt-get update` when the package lists are empty or the first attempt fails. Nothing is
# started: the node runs containerd from its own config, not as a system service.
#
# Usage: scripts/cluster/node-packages.sh [--check]   (--check: exit 1 when something is missing)
set -euo pipefail

PACKAGES=(containerd runc containernetworking-plugins iptables conntrack)
CHECK=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    -h | --help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "node-packages.sh: unknown argument '$arg' (use --check)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
  [[ "$status" == installed ]] || missing+=("$p")
done
if [[ ${#missing[@]} == 0 ]]; then
  echo "node packages are installed (${PACKAGES[*]})"
  exit 0
fi
if [[ $CHECK == 1 ]]; then
  echo "missing Debian packages: ${missing[*]} (scripts/cluster/node-packages.sh installs them)" >&2
  exit 1
fi
command -v apt-get >/dev/null || { echo "node-packages.sh: apt-get is required (Debian 12)" >&2; exit 1; }
[[ $EUID == 0 ]] || { echo "node-packages.sh: installing ${missing[*]} needs root" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
install() {
  apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}"
}
start=$SECONDS
echo "installing ${missing[*]} ..."
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then apt-get update -q; fi
if ! install; then
  apt-get update -q
  install
fi
echo "installed ${missing[*]} in $((SECONDS - start)) s"
