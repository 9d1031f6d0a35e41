#!/usr/bin/env bash
# The C references of issue 5 (benches/reference/*.c) beside Tessera, on the same float32 file in the
# same phase of the machine: how close udf_sum's access pattern and udf_apply_masks' window kernel
# come to one plain stream with no query engine around them, and how close Tessera comes to them.
# Run on an otherwise idle machine, after benches/compare.sh has made the peer's venv and data; the
# dataset must be float32 frames of 256x256 (the references' geometry). Tessera runs the
# comparison's own SQL of each case (benches/compare.py), so masks, ROI and shapes are the same.
#   usage: benches/reference.sh [DATASET]   (default: large_f32)   REPS=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."
dataset="${1:-large_f32}"
py="target/peer/.venv/bin/python"
[ -x "$py" ] && [ -f "target/peer/data/$dataset.json" ] ||
  { echo "no dataset $dataset in target/peer: run benches/compare.sh $dataset first" >&2; exit 2; }
# the comparison's spec, file and SQL of each case, one per line: spec, path, then udf_sum, udf_sum_sig, masks16
lines=$("$py" - "$dataset" <<'PY'
import sys
sys.path[:0] = ["benches", "target/peer"]
import compare, peer_common as pc
meta = pc.load_meta(sys.argv[1], "target/peer/data")
if meta["dtype"] != "float32" or list(meta["sig_shape"]) != [256, 256]:
    sys.exit(f"{sys.argv[1]}: {meta['dtype']} frames of {meta['sig_shape']}; the references need float32 frames of 256x256")
spec, sqls = compare.tessera_case_sql(None, tuple(meta["nav_shape"]), (256, 256), meta["dtype"], meta["path"])
print(spec, meta["path"], sqls["sum"], sqls["sumsig"], sqls["masks16"], sep="\n")
PY
)
mapfile -t case <<<"$lines"
spec="${case[0]}" file="${case[1]}"
bytes=$(stat -c %s "$file")
mkdir -p target/reference
gcc -O2 -march=native -fopenmp -o target/reference/sum_patterns benches/reference/sum_patterns.c
gcc -O2 -mavx512f -mavx2 -fopenmp -o target/reference/masks_windows benches/reference/masks_windows.c
cargo build --quiet --release --bin tessera
# a build pushes part of the file out of the page cache, and what comes back sits in small folios:
# read it back from storage first, as benches/compare.py does before each round
"$py" -c 'import sys; sys.path.insert(0, "benches"); import compare; compare.reload_from_storage(sys.argv[1])' "$file"
cat "$file" >/dev/null

# Tessera: the second query of each process (as benches/compare.sh), medians of REPS
tessera() {
  local names=(udf_sum udf_sum_sig masks16)
  for i in 2 3 4; do
    for _ in $(seq "${REPS:-5}"); do
      target/release/tessera sql --partitions 2 --timing --repeat 2 -t "$spec" "${case[$i]}" 2>&1 >/dev/null |
        awk -v b="$bytes" '/^query_seconds/ {s = $2} END {printf "%.2f\n", b / s / 1e9}'
    done | sort -n | awk -v c="${names[$((i - 2))]}" '{v[NR] = $1} END {printf "Tessera %-12s median %6.2f GB/s (range %.2f to %.2f)\n", c, v[int((NR + 1) / 2)], v[1], v[NR]}'
  done
}
echo "== Tessera, before the references"; tessera
echo "== udf_sum's access pattern in C (sum_patterns.c)"; target/reference/sum_patterns "$file"
echo "== udf_apply_masks' window kernel in C (masks_windows.c), pre-populated mapping"; target/reference/masks_windows "$file"
echo "== the same, mapped anew for every repetition (page faults included)"; target/reference/masks_windows "$file" fresh
echo "== Tessera, after the references"; tessera
