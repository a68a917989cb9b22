# Shared set-up for scripts/serve.sh and scripts/test.sh. Sourced, not run.
# Idempotent: each step checks first, so a second run costs a second or two.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

log() { printf '\033[1mxes:\033[0m %s\n' "$*" >&2; }

# apt_ensure CMD PACKAGE [CMD PACKAGE ...]: install the Debian packages whose command is missing.
apt_ensure() {
  local missing=()
  while [ $# -gt 0 ]; do
    command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || missing+=("$2")
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

# venv_ensure EXTRAS: a virtualenv with xes installed (editable) plus the given extras.
venv_ensure() {
  local extras="$1" stamp="$VENV/.xes-installed-$1"
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
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    log "installing Python packages (xes[$extras])"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -e "$ROOT[$extras]"
    touch "$stamp"
  fi
}
