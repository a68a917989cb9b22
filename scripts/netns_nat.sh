#!/usr/bin/env bash
# A NAT lab in network namespaces: two hosts, each behind its own NAT, and a "public" router
# between the NATs where the XES server and coturn run. Nothing touches the root namespace:
# every veth is created directly inside the namespaces (`ip link add X netns A type veth peer
# name Y netns B`).
#
#   PREFIX-h1 10.1.0.2 -- PREFIX-nat1 (10.1.0.1 | 198.51.100.2) --+
#                                                                 PREFIX-pub 198.51.100.1 / 203.0.113.1
#   PREFIX-h2 10.2.0.2 -- PREFIX-nat2 (10.2.0.1 | 203.0.113.2) --+
#
# The "public" side uses the documentation ranges (TEST-NET-2 and -3), which are never routed on
# the internet. PREFIX-pub has no route to 10.0.0.0/8, like the real internet.
#
# Usage: netns_nat.sh up symmetric|cone [PREFIX]    (PREFIX defaults to "xesnat")
#        netns_nat.sh down [PREFIX]                 (kills what runs inside, deletes everything)
#
# "symmetric" NAT: MASQUERADE --random-fully, a fresh random port per destination, so the
# server-reflexive address STUN reports is useless to the other peer and only TURN connects.
# "cone": plain MASQUERADE, endpoint-independent and port-preserving, so STUN hole punching works.
set -euo pipefail

ACTION="${1:-}"

namespaces() {
  local prefix="$1"
  echo "$prefix-h1 $prefix-nat1 $prefix-pub $prefix-nat2 $prefix-h2"
}

down() {
  local prefix="$1" ns pid
  for ns in $(namespaces "$prefix"); do
    [ -e "/run/netns/$ns" ] || continue
    # Only processes inside our own lab namespaces: the servers and peers the tests started.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -TERM "$pid" 2>/dev/null || true
    done
  done
  for ns in $(namespaces "$prefix"); do
    [ -e "/run/netns/$ns" ] || continue
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
      sleep 0.1
    done
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns delete "$ns"
    rm -rf "/etc/netns/$ns"
  done
}

# nsx NS CMD...: run a command inside a namespace.
nsx() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

up() {
  local mode="$1" prefix="$2"
  case "$mode" in
    symmetric) local masquerade=(-j MASQUERADE --random-fully) ;;
    cone) local masquerade=(-j MASQUERADE) ;;
    *) echo "netns_nat.sh: NAT mode must be symmetric or cone" >&2; exit 2 ;;
  esac
  # A stale lab would carry conntrack state from an earlier mode: always rebuild from scratch.
  down "$prefix"
  local h1="$prefix-h1" nat1="$prefix-nat1" pub="$prefix-pub" nat2="$prefix-nat2" h2="$prefix-h2"
  local ns
  for ns in "$h1" "$nat1" "$pub" "$nat2" "$h2"; do
    ip netns add "$ns"
    nsx "$ns" ip link set lo up
    # An empty resolver: nothing inside the lab may reach the host's DNS (Chromium in a namespace
    # would otherwise send lookups to the host's resolver address, which the lab cannot route).
    mkdir -p "/etc/netns/$ns"
    : > "/etc/netns/$ns/resolv.conf"
  done

  ip link add lan netns "$h1" type veth peer name lan netns "$nat1"
  ip link add wan netns "$nat1" type veth peer name n1 netns "$pub"
  ip link add lan netns "$h2" type veth peer name lan netns "$nat2"
  ip link add wan netns "$nat2" type veth peer name n2 netns "$pub"

  nsx "$h1" ip addr add 10.1.0.2/24 dev lan
  nsx "$nat1" ip addr add 10.1.0.1/24 dev lan
  nsx "$nat1" ip addr add 198.51.100.2/24 dev wan
  nsx "$pub" ip addr add 198.51.100.1/24 dev n1
  nsx "$pub" ip addr add 203.0.113.1/24 dev n2
  nsx "$nat2" ip addr add 203.0.113.2/24 dev wan
  nsx "$nat2" ip addr add 10.2.0.1/24 dev lan
  nsx "$h2" ip addr add 10.2.0.2/24 dev lan
  for ns in "$h1" "$nat1" "$pub" "$nat2" "$h2"; do
    for dev in $(nsx "$ns" ip -br link | cut -d" " -f1 | cut -d@ -f1); do nsx "$ns" ip link set "$dev" up; done
  done
  nsx "$h1" ip route add default via 10.1.0.1
  nsx "$h2" ip route add default via 10.2.0.1
  nsx "$nat1" ip route add default via 198.51.100.1
  nsx "$nat2" ip route add default via 203.0.113.1

  for ns in "$nat1" "$nat2" "$pub"; do nsx "$ns" sysctl -q -w net.ipv4.ip_forward=1; done
  for ns in "$nat1" "$nat2"; do
    nsx "$ns" iptables -t nat -A POSTROUTING -o wan "${masquerade[@]}"
    # Linux conntrack would otherwise let an early inbound ICE check create the mapping (and
    # an ICMP unreachable) before our own outbound packet, stealing the port, so even a cone
    # NAT would defeat hole punching. A dropped packet's conntrack entry is never confirmed.
    nsx "$ns" iptables -A INPUT -i wan -m conntrack --ctstate NEW -j DROP
  done
}

case "$ACTION" in
  up) up "${2:?usage: netns_nat.sh up symmetric|cone [PREFIX]}" "${3:-xesnat}" ;;
  down) down "${2:-xesnat}" ;;
  *) echo "usage: netns_nat.sh up symmetric|cone [PREFIX] | down [PREFIX]" >&2; exit 2 ;;
esac
