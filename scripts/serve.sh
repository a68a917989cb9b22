#!/usr/bin/env bash
# Run the XES server: installs what it needs (a virtualenv with the versions locked in
# requirements/peer.txt and xes, and coturn for the built-in relay), then prints the URL to open.
# The peer extra comes along so that `xes call` works from the same virtualenv; the test tools do not.
# Extra arguments go to `xes serve` (for example --port 8080, --turn-url, --turn-secret-file, or
# --no-turn to run without a relay).
source "$(dirname "$0")/lib.sh"
venv_ensure requirements/peer.txt

# Without a relay, strangers can only meet by showing each other their IP addresses; so unless
# told otherwise (--no-turn, or a TURN server of your own with --turn-url), install coturn:
# `xes serve` then runs it as its own child, with a fresh secret, for as long as it runs.
own_relay=1
for arg in "$@"; do
  case "$arg" in --no-turn|--turn-url|--turn-url=*) own_relay=0 ;; esac
done
if [ "$own_relay" = 1 ]; then
  had_coturn=0
  command -v turnserver >/dev/null 2>&1 && had_coturn=1
  apt_ensure turnserver coturn || log "coturn is missing: xes serve runs without a relay"
  # Debian's package may start a system-wide coturn with its own configuration; xes serve does
  # not use it, so a fresh install does not leave one running.
  if [ "$had_coturn" = 0 ] && command -v turnserver >/dev/null 2>&1 \
     && command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet coturn 2>/dev/null; then
    log "stopping the system coturn service the package started (xes serve runs its own)"
    systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
fi
exec "$VENV/bin/xes" serve "$@"
