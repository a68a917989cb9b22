#!/usr/bin/env bash
# Find dependency drift on purpose: install the newest releases that pyproject.toml's bounds allow
# (what `pip install` would give a user today, ignoring the lock files) into a throwaway virtualenv,
# then run the same checks as scripts/test.sh there: ruff, mypy --strict and pytest.
#   bash scripts/check-latest.sh                        the whole suite
#   bash scripts/check-latest.sh tests/core tests/server   extra arguments go to pytest
# It first lists each package whose newest release differs from requirements/test.txt. When
# everything passes, `bash scripts/lock.sh --upgrade` can move the lock; when something fails,
# fix it (or tighten a bound in pyproject.toml) before moving the lock. The project's own .venv,
# and the Debian packages the tests need, are left as scripts/test.sh set them up.
source "$(dirname "$0")/lib.sh"
apt_ensure /usr/bin/chromium chromium turnserver coturn tshark tshark sox sox ip iproute2 \
           iptables iptables
latest="$(mktemp -d)"
trap 'rm -rf "$latest"' EXIT
log "installing the newest releases into a throwaway virtualenv"
"$PY" -m venv "$latest"
# The build backend too, since the locked set-up builds xes with the locked one (--no-build-isolation).
"$latest/bin/pip" install -q --upgrade pip setuptools
"$latest/bin/pip" install -q --no-build-isolation -e "$ROOT[test,peer]"

log "newest releases against requirements/test.txt"
"$latest/bin/python" - "$ROOT/requirements/test.txt" <<'PYTHON'
import importlib.metadata
import re
import sys

locked = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", open(sys.argv[1]).read(), re.M))
normal = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in locked.items()}
changed = 0
for dist in sorted(importlib.metadata.distributions(), key=lambda d: d.metadata["Name"].lower()):
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    if name in ("pip", "xes-voice"):
        continue
    was = normal.get(name)
    if was != dist.version:
        changed += 1
        print(f"  {name}: {was or 'not locked'} -> {dist.version}")
print(f"  {changed} package(s) differ from the lock" if changed else "  the lock is at the newest releases")
PYTHON

cd "$ROOT"
status=0
log "ruff (newest)"
"$latest/bin/ruff" check src tests bench || status=1
log "mypy --strict (newest)"
"$latest/bin/mypy" --cache-dir "$latest/mypy-cache" src || status=1
log "pytest (newest)"
"$latest/bin/python" -m pytest -p no:cacheprovider "$@" || status=1
if [ "$status" = 0 ]; then
  log "the newest releases pass: bash scripts/lock.sh --upgrade may move the lock"
else
  log "the newest releases FAIL a check above: the lock keeps the project working meanwhile"
fi
exit "$status"
