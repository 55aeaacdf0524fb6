# Sourced by scripts/*: makes .venv with Python >= 3.11 and installs refstream into it
# (again only when pyproject.toml or constraints.txt changed).
VENV="${REFSTREAM_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  PY=""
  for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY="$candidate"; break
    fi
  done
  [ -n "$PY" ] || { echo "refstream needs Python >= 3.11" >&2; exit 1; }
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.refstream-installed"
want="$(cat pyproject.toml constraints.txt | sha256sum)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev]'
  echo "$want" > "$stamp"
fi
