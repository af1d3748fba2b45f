# Sourced by scripts/test --lowest: a venv holding the lowest versions pyproject.toml allows
# for each direct dependency (uv's lowest-direct resolution; what a user pinning old releases
# gets), under .cache/lowest (git-ignored). uv itself comes from PyPI into .cache/uv.
ensure_lowest_venv() {
  local uv="$ROOT/.cache/uv/bin/uv" stamp
  LOWEST="$ROOT/.cache/lowest"
  if [ ! -x "$uv" ]; then
    echo "installing uv into $ROOT/.cache/uv" >&2
    "$PY" -m venv "$ROOT/.cache/uv"
    "$ROOT/.cache/uv/bin/python" -m pip install --quiet uv >&2
  fi
  stamp="$LOWEST/.videopoll-installed"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "installing videopoll[dev] at its dependency floors into $LOWEST" >&2
    rm -rf "$LOWEST"
    "$uv" venv --quiet --python "$PY" "$LOWEST" >&2
    "$uv" pip install --quiet --python "$LOWEST/bin/python" --resolution lowest-direct \
      --editable "$ROOT[dev]" >&2
    touch "$stamp"
  fi
  "$uv" pip list --python "$LOWEST/bin/python" 2>/dev/null \
    | grep -E '^(typer|rich|httpx|supabase|python-dotenv|stamina|pytest|psycopg) ' >&2 || true
}
