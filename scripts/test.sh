#!/usr/bin/env bash
# Run the whole test suite: installs what the tests need (virtualenv and Python packages; chromium,
# coturn, redis-server, tshark, sox, iproute2, iptables from Debian when missing), then runs
# ruff, mypy --strict and pytest. Extra arguments go to pytest.
source "$(dirname "$0")/lib.sh"
apt_ensure /usr/bin/chromium chromium turnserver coturn redis-server redis-server \
           tshark tshark sox sox ip iproute2 iptables iptables
# coturn's Debian package starts a system daemon on 3478; the tests run their own on other ports.
venv_ensure "test,peer,redis"
cd "$ROOT"
log "ruff"
"$VENV/bin/ruff" check src tests bench
log "mypy --strict"
"$VENV/bin/mypy" src
log "pytest"
exec "$VENV/bin/python" -m pytest "$@"
