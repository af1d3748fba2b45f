#!/usr/bin/env bash
# The original system's poll script, kept for old habits: one pass, the edge function's JSON,
# then its closing line. A thin wrapper over `videopoll poll --json` (same exit codes).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
VIDEOPOLL="${VIDEOPOLL:-$(command -v videopoll || echo "$here/../.venv/bin/videopoll")}"
PY="$(dirname "$VIDEOPOLL")/python"; [ -x "$PY" ] || PY=python3

echo "🔍 Checking for completed videos..."
json="$("$VIDEOPOLL" poll --json "$@")"
code=$?
[ -n "$json" ] && echo "$json"
closing='
import json, sys
try:
    s = json.loads(sys.argv[1])
except ValueError:
    sys.exit(0)
if "error" in s:
    sys.exit(0)
if s["processed"]:
    print("✅ %d video(s) ready!" % s["processed"])
if s["stillGenerating"]:
    print("⏳ %d video(s) still generating..." % s["stillGenerating"])
if not s["checked"]:
    print("No pending videos.")
'
"$PY" -c "$closing" "$json"
exit $code
