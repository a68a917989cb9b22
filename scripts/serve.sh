#!/usr/bin/env bash
# Run the XES server: installs what it needs (a virtualenv with xes), then prints the URL to open.
# Extra arguments go to `xes serve` (for example --port 8080, --turn-url, --turn-secret-file).
source "$(dirname "$0")/lib.sh"
venv_ensure peer
exec "$VENV/bin/xes" serve "$@"
