# Sourced by the scripts in scripts/: makes sure .venv exists and holds this
# project (editable) and the exact versions of requirements.lock (its server
# and dev extras included; scripts/lock writes it), re-installing only when
# pyproject.toml or the lock changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${HOOKLINE_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtual environment in $VENV" >&2
    "$PYTHON_BIN" -m venv "$VENV"
fi
stamp="$VENV/.hookline-installed"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements.lock" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing hookline and its dependencies into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet -r "$ROOT/requirements.lock" >&2
    # The project itself, on top of what the lock pinned; --no-deps: nothing unpinned slips in.
    "$VENV/bin/python" -m pip install --quiet --no-deps -e "$ROOT" >&2
    echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
