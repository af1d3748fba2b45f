#!/usr/bin/env bash
# The original watch script, kept for old habits: poll every INTERVAL seconds (default 30)
# until nothing is pending. A thin wrapper over `videopoll watch --until-done`.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
VIDEOPOLL="${VIDEOPOLL:-$(command -v videopoll || echo "$here/../.venv/bin/videopoll")}"
interval="${1:-${INTERVAL:-30}}"

echo "👀 Watching for videos (every ${interval}s, Ctrl+C to stop)..."
"$VIDEOPOLL" watch --until-done --interval "$interval"
code=$?
[ $code -eq 0 ] && echo "🎉 All videos processed!"
exit $code
