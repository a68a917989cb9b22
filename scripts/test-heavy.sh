#!/usr/bin/env bash
# The heavy cases: the 8-person browser mesh and the NAT lab. Same set-up as scripts/test.sh.
source "$(dirname "$0")/lib.sh"
apt_ensure /usr/bin/chromium chromium turnserver coturn tshark tshark sox sox ip iproute2 \
           iptables iptables redis-server redis-server '/usr/lib/postgresql/*/bin/postgres' postgresql
venv_ensure requirements/test.txt
cd "$ROOT"
exec "$VENV/bin/python" -m pytest -m heavy "$@"
