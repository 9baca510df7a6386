#!/usr/bin/env bash
# Removes everything a Keyward node made on this machine, whatever state it was left in: after a
# clean stop, a crash, a kill -9 of the test run, or twice in a row. Run as root, under the node
# lock (the supervisor runs it, or `npm run cluster -- down` through flock).
#
#   processes  every process whose command line names the node's folders (watchdogs, etcd,
#              apiserver, controller-manager, scheduler, kubelet, kube-proxy, containerd, its
#              shims) and every process in the /kubepods cgroups (the containers)
#   mounts     everything mounted under the node's folders (overlay rootfs, shm, netns, volumes)
#   network    the bridge and any veth still on it
#   iptables   the KUBE-*, CNI-* and KEYWARD-* chains and every rule that jumps to them (v4, v6)
#   cgroups    the /kubepods trees of every hierarchy
#   sysctls    written back to the values recorded before the node first started
#   files      the node's folders, containerd's stale shim sockets, the kubelet's log symlinks
#              and device-plugin socket
#
# Paths are fixed (scripts/cluster/node-layout.ts) so that any checkout can clean up after any
# other. Prints one line per kind of thing it removed. Exit 0 unless something could not go.
set -uo pipefail

ROOT=/var/lib/keyward-node
RUN=/run/keyward-node
BRIDGE=kw-node0
KEEP="${KEYWARD_NODE_SWEEP_KEEP:-}" # a pid to spare (the supervisor that runs this sweep)
pgid_of() {
  local stat rest
  stat="$(cat 2>/dev/null "/proc/$1/stat")" || return 1
  rest="${stat##*) }"
  # shellcheck disable=SC2086
  set -- $rest
  echo "$3"
}
# This script and its subshells name $RUN on their command lines too: spare our process group.
MYPGID="$(pgid_of $$)"

log() { echo "sweep: $*"; }

marked_pids() {
  local dir pid cmd
  for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    [[ $pid == "$KEEP" ]] && continue
    cmd="$(tr '\0' ' ' 2>/dev/null <"$dir/cmdline")" || continue
    case "$cmd" in
      *"$RUN/"* | *"$ROOT/"*) [[ "$(pgid_of "$pid")" == "$MYPGID" ]] || echo "$pid" ;;
    esac
  done
}

kubepods_dirs() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do [[ -d $d ]] && echo "$d"; done
}

kubepods_pids() {
  local d
  for d in $(kubepods_dirs); do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u
}

kill_all() {
  local signal="$1" pids
  pids="$( (marked_pids; kubepods_pids) | sort -u)"
  [[ -z $pids ]] && return 1
  # shellcheck disable=SC2086
  kill "-$signal" $pids 2>/dev/null
  return 0
}

# 1. Processes: KILL, repeatedly, until none is left. Nothing of the node is kept (its data goes
#    too), so nothing needs a graceful stop, and a process that forks meanwhile is caught next round.
if kill_all KILL; then
  n=0
  while kill_all KILL && ((n++ < 100)); do sleep 0.1; done
  log "killed the node's processes"
fi

# 2. Mounts, deepest first; lazily when busy.
mounts() {
  awk -v r="$ROOT" -v s="$RUN" '{ m = $5; if (m == r || m == s || index(m, r "/") == 1 || index(m, s "/") == 1 || m ~ /^\/tmp\/containerd-mount/) print m }' /proc/self/mountinfo |
    awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-
}
if [[ -n "$(mounts)" ]]; then
  for _ in 1 2 3 4 5; do
    list="$(mounts)"
    [[ -z $list ]] && break
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done <<<"$list"
  done
  log "unmounted the node's mounts"
fi

# 3. Network: the veths left on the bridge, then the bridge.
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  for veth in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
    ip link del "$veth" 2>/dev/null
  done
  ip link del "$BRIDGE" 2>/dev/null && log "deleted bridge $BRIDGE"
fi

# 4. iptables: rewrite each table without the node's chains and the rules that use them. The
#    rest of the table is written back as it was.
owned='(KUBE-|CNI-|KEYWARD-)[A-Za-z0-9_-]*'
for family in iptables ip6tables; do
  command -v "$family-save" >/dev/null || continue
  for table in filter nat mangle raw; do
    saved="$("$family-save" -t "$table" 2>/dev/null)" || continue
    grep -Eq "^:$owned |-[jg] $owned( |\$)" <<<"$saved" || continue
    grep -Ev "^:$owned |^-A $owned |-[jg] $owned( |\$)" <<<"$saved" | "$family-restore" -T "$table" &&
      log "removed the node's $family chains from $table"
  done
done

# 5. cgroups, leaves first (a cgroup can go only when it has no processes and no children).
for d in $(kubepods_dirs); do
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    [[ -d $d ]] || break
    sleep 0.5
  done
  [[ -d $d ]] || log "removed cgroup $d"
done

# 6. Kernel settings back to what they were before the node first started.
if [[ -f $RUN/sysctls-before ]]; then
  while read -r key value; do
    [[ -n $key && -w /proc/sys/$key ]] && echo "$value" >"/proc/sys/$key"
  done <"$RUN/sysctls-before"
  rm -f "$RUN/sysctls-before"
  log "restored sysctls"
fi

# 7. Files outside the node's folders: containerd 1.6 puts shim sockets in /run/containerd/s
#    whatever its config says (removed when no process listens on them any more), the kubelet
#    links container logs from /var/log/containers, and the CNI library caches results.
if [[ -d /run/containerd/s ]]; then
  listening="$(ss -xlH 2>/dev/null | awk '{ print $5 }')"
  for sock in /run/containerd/s/*; do
    [[ -S $sock ]] && ! grep -qxF "$sock" <<<"$listening" && rm -f "$sock"
  done
  rmdir /run/containerd/s /run/containerd 2>/dev/null
fi
if [[ -d /var/log/containers ]]; then
  for link in /var/log/containers/*; do
    [[ -L $link && "$(readlink "$link")" == "$ROOT/"* ]] && rm -f "$link"
  done
  rmdir /var/log/containers 2>/dev/null
fi
rm -f /var/lib/cni/results/keyward-* 2>/dev/null
rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null
# The kubelet's device-plugin socket ignores --root-dir.
rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
rmdir /var/lib/kubelet/device-plugins /var/lib/kubelet 2>/dev/null

# 8. The node's folders (the lock file stays: a holder may have it open).
if [[ -d $ROOT ]]; then
  rm -rf --one-file-system "$ROOT" && log "removed $ROOT"
fi
if [[ -d $RUN ]]; then
  find "$RUN" -mindepth 1 -maxdepth 1 ! -name lock ! -name holder.json ! -name supervisor.log ! -name sweep.sh \
    -exec rm -rf --one-file-system {} + 2>/dev/null
fi
exit 0
