#!/usr/bin/env bash
# Run the XES server: installs what it needs (a virtualenv with the versions locked in
# requirements/peer.txt and xes), then prints the URL to open. The peer extra comes along so that
# `xes call` works from the same virtualenv; the test tools do not.
# Extra arguments go to `xes serve` (for example --port 8080, --turn-url, --turn-secret-file).
source "$(dirname "$0")/lib.sh"
venv_ensure requirements/peer.txt
exec "$VENV/bin/xes" serve "$@"
