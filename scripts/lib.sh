# Shared set-up for scripts/serve.sh, scripts/test.sh and bench/run.sh.
# Sourced, not run.
# Idempotent: each step checks first, so a second run costs a second or two.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

log() { printf '\033[1mxes:\033[0m %s\n' "$*" >&2; }

# apt_ensure CMD PACKAGE [CMD PACKAGE ...]: install the Debian packages whose command is missing.
# CMD is a name on PATH or a path, which may be a glob (postgresql's binaries live under
# /usr/lib/postgresql/VERSION/bin, off PATH).
apt_ensure() {
  local missing=()
  while [ $# -gt 0 ]; do
    command -v "$1" >/dev/null 2>&1 || compgen -G "$1" >/dev/null || missing+=("$2")
    shift 2
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
    return 1
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer for it.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# venv_ensure LOCK...: a virtualenv with exactly the versions in the given lock files (paths from
# the repository root, e.g. requirements/test.txt; bash scripts/lock.sh makes them), then xes itself,
# editable. --require-hashes: pip installs only the files whose sha256 the lock lists, whichever
# index or mirror it finds them on. The project is installed with --no-deps (its dependencies came
# from the lock) and --no-build-isolation (the build backend came from the lock too, so nothing
# unpinned is fetched). A stamp per lock records the hash of the lock and of pyproject.toml: a
# second run installs nothing, and a changed lock or pyproject.toml installs again.
venv_ensure() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    if ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
      # Debian splits venv (and ensurepip) out of the interpreter package.
      rm -rf "$VENV"
      apt_ensure /nonexistent/venv "python3-venv"
      apt-get install -y -q --no-install-recommends "python$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv" >/dev/null 2>&1 || true
      "$PY" -m venv "$VENV"
    fi
  fi
  local lock stamp want
  for lock in "$@"; do
    stamp="$VENV/.xes-lock-${lock//\//-}"
    want="$(cat "$ROOT/$lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && continue
    log "installing the Python packages locked in $lock"
    "$VENV/bin/pip" install -q --require-hashes -r "$ROOT/$lock"
    # "xes" was this project's distribution name before xes-voice; an old editable install of it
    # would shadow the new one.
    "$VENV/bin/pip" uninstall -q -y xes >/dev/null 2>&1 || true
    "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$ROOT"
    echo "$want" > "$stamp"
  done
}

# npm_ensure DIR: DIR/node_modules holds exactly the versions in DIR/package-lock.json (npm ci
# checks each package's integrity hash and refuses a lock that disagrees with package.json).
# Installed again only when the lock changes.
npm_ensure() {
  local dir="$1"
  command -v npm >/dev/null || { log "npm is missing (apt-get install nodejs npm)"; return 1; }
  local stamp="$dir/node_modules/.xes-package-lock"
  local want
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing $dir/package-lock.json into $dir/node_modules"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
  fi
}
