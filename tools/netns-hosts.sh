#!/usr/bin/env bash
# Test hosts on one machine: network namespaces on a private bridge (root only).
#
#   tools/netns-hosts.sh up PREFIX HOST...     namespaces PREFIX-HOST, each with eth0 on
#                                              192.168.77.(2+k)/24, on a bridge inside the
#                                              namespace PREFIX-sw; prints "HOST ADDRESS" lines
#   tools/netns-hosts.sh cut PREFIX HOST       pull HOST's cable (its port on the bridge down)
#   tools/netns-hosts.sh mend PREFIX HOST      plug it back
#   tools/netns-hosts.sh down PREFIX           end every process in PREFIX-* (by pid) and delete them
#
# Nothing is added to the machine's own namespace: the bridge, the links and every
# address live in namespaces this script creates, so no traffic reaches a real network.
# Start a process on a host with `ip netns exec PREFIX-HOST CMD` (a hosts file's `via`).
set -euo pipefail
cmd=${1:-}; prefix=${2:-}
die() { echo "netns-hosts.sh: $*" >&2; exit 2; }
[ -n "$cmd" ] && [ -n "$prefix" ] || die "usage: $0 up|cut|mend|down PREFIX [HOST...]"
[[ "$prefix" =~ ^[a-z0-9]{1,8}$ ]] || die "PREFIX must be 1-8 lower-case letters or digits, got '$prefix'"
sw="$prefix-sw"
case "$cmd" in
  up)
    shift 2
    [ $# -ge 1 ] && [ $# -le 200 ] || die "up needs 1 to 200 host names"
    ip netns add "$sw"
    ip -n "$sw" link set lo up
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
    k=0
    for h in "$@"; do
      [[ "$h" =~ ^[a-z0-9]{1,8}$ ]] || die "host names are 1-8 lower-case letters or digits, got '$h'"
      ns="$prefix-$h" addr="192.168.77.$((k + 2))"
      ip netns add "$ns"
      ip -n "$sw" link add "p-$h" type veth peer name eth0 netns "$ns"
      ip -n "$sw" link set "p-$h" master br0 up
      ip -n "$ns" link set lo up
      ip -n "$ns" addr add "$addr/24" dev eth0
      ip -n "$ns" link set eth0 up
      echo "$h $addr"
      k=$((k + 1))
    done ;;
  cut) [ -n "${3:-}" ] || die "cut needs a host"; ip -n "$sw" link set "p-$3" down ;;
  mend) [ -n "${3:-}" ] || die "mend needs a host"; ip -n "$sw" link set "p-$3" up ;;
  down)
    for ns in $(ip netns list | awk '{print $1}' | grep -E "^$prefix-" || true); do
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
      ip netns delete "$ns" 2>/dev/null || true
    done ;;
  *) die "unknown command '$cmd'" ;;
esac
