#!/usr/bin/env bash
# Tessera against LiberTEM 0.16 on the same files, same run (issue 5). One command from a fresh clone
# with ../shared/peer beside it; run on an otherwise idle machine (2 vCPUs: a build beside a benchmark
# halves it). Makes target/peer (a writable copy of the peer folder) with LiberTEM's venv and data.
#   usage: benches/compare.sh [DATASET...]   (default: medium large large_f32)   REPS=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."
datasets=("$@")
[ ${#datasets[@]} -gt 0 ] || datasets=(medium large large_f32)
src="../shared/peer"
[ -d "$src" ] || { echo "needs $src (the LiberTEM peer benchmark)" >&2; exit 2; }
peer="target/peer"
mkdir -p "$peer"
cp -u "$src"/*.py "$src"/*.c "$src"/requirements-lock.txt "$peer"/
if [ ! -x "$peer/.venv/bin/python" ] || ! cmp -s "$src/requirements-lock.txt" "$peer/.venv/.installed"; then
  rm -rf "$peer/.venv"
  python3 -m venv "$peer/.venv"
  "$peer/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$peer/requirements-lock.txt"
  cp "$src/requirements-lock.txt" "$peer/.venv/.installed"
fi
py="$PWD/$peer/.venv/bin/python"
(cd "$peer" && "$py" make_data.py small "${datasets[@]}")
gcc -O3 -march=native -fopenmp -o "$peer/bench_membw" "$peer/bench_membw.c"
cargo build --release --bin tessera
"$py" benches/compare.py "$peer" target/release/tessera "${datasets[@]}" --reps "${REPS:-5}" \
  --membw "$peer/bench_membw" --json "target/compare.json" --startup
