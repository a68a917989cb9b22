#!/usr/bin/env bash
# Run every benchmark, XES against the PeerJS server and a bare picows relay, from a fresh clone:
#   bash bench/run.sh            full run (about 20 minutes on 2 cores when the machine is quiet;
#                                disturbed windows are measured again, which takes longer)
#   bash bench/run.sh --quick    smaller and shorter (a few minutes)
# Extra arguments go to bench/bench.py (e.g. --servers xes,peerjs --scenarios idle,traffic).
# Writes bench/results/latest.json and latest.md (the side-by-side table); raw logs in
# bench/results/raw/.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
VENV="$ROOT/.venv"
say() { printf '\033[1mbench:\033[0m %s\n' "$*" >&2; }

# 1. Python: the project's virtualenv with exactly the versions locked in bench/requirements.txt
#    (the test lock plus bench/requirements.in; bash scripts/lock.sh makes it), via the project's
#    own set-up.
# shellcheck source=/dev/null
source "$ROOT/scripts/lib.sh"
venv_ensure bench/requirements.txt

# 2. Node: the PeerJS server, exactly the versions in package-lock.json (npm ci installs nothing
#    else and refuses a lock that disagrees with package.json). Installed again when the lock changes.
command -v node >/dev/null || { say "node is missing (apt-get install nodejs npm)"; exit 1; }
npm_ensure "$BENCH"

# 3. File descriptors: n clients means n sockets in the server and as many in the load generator
#    (each process has its own limit). Root may raise the hard limit; otherwise take what the
#    hard limit allows (bench.py then measures the largest client count that fits and says why).
ulimit -n 110000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt 10500 ]; then
  say "warning: ulimit -n is $(ulimit -n); the 10,000-client scenario may fail"
fi

# 4. Run. The coordinator pins each server to core 0 and the load generators to the others
#    (taskset), and checks every measured window for other processes' CPU and steal time.
say "running (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
cd "$BENCH"
exec "$VENV/bin/python" "$BENCH/bench.py" "$@"
