# Sourced by scripts/*: make .venv if missing and install the project into it.
# Usage: ensure_venv [extra]   (extra: "dev", "bench", ... or empty)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VIDEOPOLL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

ensure_venv() {
  local extra="${1:-}" spec="$ROOT" stamp
  [ -n "$extra" ] && spec="$ROOT[$extra]"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
  fi
  # Reinstall only when pyproject.toml changed or a new extra is asked for.
  stamp="$VENV/.videopoll-installed-${extra:-base}"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "installing videopoll${extra:+[$extra]} into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --editable "$spec" >&2
    touch "$stamp"
  fi
}
