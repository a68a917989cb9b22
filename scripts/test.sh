#!/usr/bin/env bash
# Run the whole test suite: installs what the tests need, then runs ruff, mypy --strict and pytest.
# Extra arguments go to pytest.
#   - Python: a virtualenv with exactly the versions locked in requirements/test.txt (hashed; see
#     README "Dependencies"), then xes itself, editable. A second run installs nothing.
#   - Debian, when missing: chromium, coturn, tshark, sox, iproute2, iptables, node and postgresql
#     (initdb and pg_ctl: the storage tests start their own cluster in a temporary directory),
#     which the tests drive; and redis-server, the cluster tests' shared state (tests/support/redis.py).
source "$(dirname "$0")/lib.sh"
apt_ensure /usr/bin/chromium chromium turnserver coturn tshark tshark sox sox ip iproute2 \
           iptables iptables node nodejs npm npm redis-server redis-server '/usr/lib/postgresql/*/bin/postgres' postgresql
# coturn's Debian package starts a system daemon on 3478; the tests run their own on other ports.
venv_ensure requirements/test.txt
# axe-core, which the accessibility tests inject into the page: the version locked, by hash.
npm_ensure "$ROOT/tests/a11y"
cd "$ROOT"
log "ruff"
"$VENV/bin/ruff" check src tests bench
log "mypy --strict"
"$VENV/bin/mypy" src
# The benchmarks on their own: their modules import each other by bare name (figures, noise, ...).
"$VENV/bin/mypy" bench
log "pytest"
exec "$VENV/bin/python" -m pytest "$@"
