#!/usr/bin/env bash
# Create or refresh the project environment in .venv (idempotent; re-installs when pyproject.toml or
# backend/requirements.txt changes).
# Usage: scripts/bootstrap.sh   (called by scripts/demo and scripts/test; rarely needed by hand)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.stepstone-installed"

find_python() {
  for candidate in "${STEPSTONE_PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 is required (Blender 4.2-5.0's bpy module is built for it)." >&2
  echo "       Install it, or point STEPSTONE_PYTHON at a python3.11 executable." >&2
  return 1
}

want="$(cat "$root/pyproject.toml" "$root/backend/requirements.txt" | sha256sum | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  python="$(find_python)"
  echo "creating the environment in $venv (first run: downloads PyTorch and Blender's bpy, a few minutes)" >&2
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e "$root[test,scale]"
echo "$want" > "$stamp"
