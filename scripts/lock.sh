#!/usr/bin/env bash
# Regenerate the lock files: the exact, hashed versions that scripts/serve.sh, scripts/test.sh,
# bench/run.sh and CI install. One command:
#   bash scripts/lock.sh             add or drop what pyproject.toml / bench/requirements.in changed,
#                                    keeping every other pin as it is
#   bash scripts/lock.sh --upgrade   move every pin to the newest release the bounds allow
#                                    (bash scripts/check-latest.sh first tells whether those pass)
# Then run bash scripts/test.sh and commit the changed files with the change that needed them.
#
# The locks are for CPython 3.11 on Linux x86_64 (README: Python 3.11). Each pins every package of
# its environment with the sha256 of every file the package index has for that version, so pip
# can pick the wheel that fits the machine and still refuse anything else.
#   requirements/runtime.txt   xes serve alone (deployments: docs/deploy.md)
#   requirements/peer.txt      + the `peer` extra (scripts/serve.sh: `xes call` works too)
#   requirements/test.txt      + the `test` extra: pytest, playwright, ruff, mypy (scripts/test*.sh)
#   bench/requirements.txt     + bench/requirements.in (bench/run.sh)
#   requirements/lock-tool.txt uv, the resolver this script runs
# All of them also pin the build backend ([build-system] in pyproject.toml), so the scripts install
# the project itself with --no-build-isolation and fetch nothing unpinned. The other locks are
# resolved under requirements/test.txt as a constraint, so one virtualenv can hold any of them
# without a package changing version between them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
cd "$ROOT"

upgrade=()
case "${1:-}" in
  "") ;;
  --upgrade) upgrade=(--upgrade) ;;
  *) echo "usage: bash scripts/lock.sh [--upgrade]" >&2; exit 2 ;;
esac

tool="$(mktemp -d)"
trap 'rm -rf "$tool"' EXIT
"$PY" -m venv "$tool"
"$tool/bin/pip" install -q --require-hashes -r requirements/lock-tool.txt
uv="$tool/bin/uv"

build_requires="$("$PY" -c 'import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')"

# compile OUTPUT [uv pip compile arguments...]: one lock file; the build backend comes on stdin ("-").
compile() {
  local output="$1"; shift
  printf '%s\n' "$build_requires" | "$uv" pip compile --quiet --generate-hashes \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --custom-compile-command "bash scripts/lock.sh" \
    ${upgrade[@]+"${upgrade[@]}"} "$@" -o "$output"
}

# The resolver itself, pinned like everything else (compiled by the pinned uv, for the next run).
echo "uv" | "$uv" pip compile --quiet --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 --custom-compile-command "bash scripts/lock.sh" \
  ${upgrade[@]+"${upgrade[@]}"} - -o requirements/lock-tool.txt
# The largest environment first: the others take its versions as constraints.
compile requirements/test.txt pyproject.toml --extra peer --extra test -
compile requirements/peer.txt pyproject.toml --extra peer - -c requirements/test.txt
compile requirements/runtime.txt pyproject.toml - -c requirements/test.txt
compile bench/requirements.txt pyproject.toml --extra peer --extra test bench/requirements.in - \
  -c requirements/test.txt
echo "lock files written; now run bash scripts/test.sh and commit them" >&2
