#!/usr/bin/env bash
# The network lab of the tests (tests/support/netlab.py), by hand: hosts behind NATs, firewalls
# or on IPv6 only, in network namespaces around one "internet" where the web server and the relay
# live. Nothing touches the root namespace. The module docstring describes the topology.
#
# Usage: netns_nat.sh up KIND [KIND ...] [--prefix PREFIX]   hosts h1, h2, ... of those kinds
#        netns_nat.sh down [--prefix PREFIX]                   kills what runs inside, deletes all
# KIND: cone, symmetric, double, firewall, open, ipv6. PREFIX defaults to "xesnat".
# Example: netns_nat.sh up symmetric symmetric   (the lab of tests/turn/test_nat_fallback.py)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m tests.support.netlab "$@"
