#!/usr/bin/env bash
# Run every benchmark, XES against the PeerJS server, from a fresh clone:
#   bash bench/run.sh            full run (about 15-20 minutes on 2 cores)
#   bash bench/run.sh --quick    smaller and shorter (a few minutes)
# Extra arguments go to bench/bench.py (e.g. --servers xes,peerjs --scenarios idle,traffic).
# Writes bench/results/latest.json, latest.md and latency.png; raw logs in bench/results/raw/.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
VENV="$ROOT/.venv"
say() { printf '\033[1mbench:\033[0m %s\n' "$*" >&2; }

# 1. Python: the project's virtualenv with xes (via the project's own set-up) plus bench's extras.
if [ ! -x "$VENV/bin/xes" ]; then
  # shellcheck source=/dev/null
  source "$ROOT/scripts/lib.sh"
  venv_ensure test
fi
stamp="$VENV/.bench-requirements"
if [ ! -f "$stamp" ] || [ "$BENCH/requirements.txt" -nt "$stamp" ]; then
  say "installing bench/requirements.txt into $VENV"
  "$VENV/bin/pip" install -q -r "$BENCH/requirements.txt"
  touch "$stamp"
fi

# 2. Node: the PeerJS server, exactly the version in package-lock.json.
command -v node >/dev/null || { say "node is missing (apt-get install nodejs npm)"; exit 1; }
if [ ! -f "$BENCH/node_modules/peer/package.json" ]; then
  say "installing the PeerJS server (npm peer) into bench/node_modules"
  (cd "$BENCH" && npm ci --no-audit --no-fund --loglevel=error)
fi

# 3. File descriptors: 10,000 clients means 10,000 sockets in the server and as many in the
#    load generator (each process has its own limit). Root may raise the hard limit; otherwise
#    take what the hard limit allows.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt 10500 ]; then
  say "warning: ulimit -n is $(ulimit -n); the 10,000-client scenario may fail"
fi

# 4. Run. The coordinator pins each server to core 0 and the load generators to the others.
say "running (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
cd "$BENCH"
exec "$VENV/bin/python" "$BENCH/bench.py" "$@"
