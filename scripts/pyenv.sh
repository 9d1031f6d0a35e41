#!/usr/bin/env bash
# Creates (once) the project's Python virtual environment for cross-checks and prints its python.
# The venv lives in target/pyenv so `cargo clean` removes it; requirements in scripts/requirements.txt.
# Safe to call concurrently (tests run in parallel): creation is serialised by a lock file.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/pyenv"
req="$root/scripts/requirements.txt"
stamp="$venv/.installed"
mkdir -p "$root/target"
exec 9>"$root/target/pyenv.lock"
if command -v flock >/dev/null; then
  flock 9
fi
if [ ! -f "$stamp" ] || ! cmp -s "$req" "$stamp"; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
  cp "$req" "$stamp"
fi
echo "$venv/bin/python"
