#!/usr/bin/env bash
# The C references of issue 5 (benches/reference/*.c) beside Tessera, on the same float32 file in the
# same phase of the machine: how close udf_sum's access pattern and udf_apply_masks' window kernel
# come to one plain stream with no query engine around them, and how close Tessera comes to them.
# Run on an otherwise idle machine, after benches/compare.sh has made the data (or give a file of
# 256x256 float32 frames).
#   usage: benches/reference.sh [FILE]   (default: target/peer/data/large_f32.raw)   REPS=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."
file="${1:-target/peer/data/large_f32.raw}"
[ -f "$file" ] || { echo "no file $file: run benches/compare.sh large_f32 first, or name a file" >&2; exit 2; }
bytes=$(stat -c %s "$file")
frame=$((256 * 256 * 4))
(( bytes % frame == 0 && bytes >= 8 * frame )) || { echo "$file: $bytes bytes is not a whole number (>= 8) of 256x256 float32 frames" >&2; exit 2; }
mkdir -p target/reference
gcc -O2 -march=native -fopenmp -o target/reference/sum_patterns benches/reference/sum_patterns.c
gcc -O2 -mavx512f -mavx2 -fopenmp -o target/reference/masks_windows benches/reference/masks_windows.c
cargo build --quiet --release --bin tessera

spec="s=$file,format=raw,nav=1x$((bytes / frame)),sig=256x256,dtype=float32"
rings=$(for k in $(seq 0 15); do printf "'ring(127.5, 127.5, %d, %d)'," $((8 * k)) $((8 * k + 8)); done)
declare -A sql=(
  [udf_sum]="SELECT udf_sum(tile) FROM s"
  [udf_sum_sig]="SELECT udf_sum_sig(tile) FROM s"
  [masks16]="SELECT udf_apply_masks(tile, masks(${rings%,})) FROM s"
)
# Tessera: the second query of each process (as benches/compare.sh), medians of REPS
tessera() {
  for case in udf_sum udf_sum_sig masks16; do
    for _ in $(seq "${REPS:-5}"); do
      target/release/tessera sql --partitions 2 --timing --repeat 2 -t "$spec" "${sql[$case]}" 2>&1 >/dev/null |
        awk -v b="$bytes" '/^query_seconds/ {s = $2} END {printf "%.2f\n", b / s / 1e9}'
    done | sort -n | awk -v c="$case" '{v[NR] = $1} END {printf "Tessera %-12s median %6.2f GB/s (range %.2f to %.2f)\n", c, v[int((NR + 1) / 2)], v[1], v[NR]}'
  done
}
echo "== Tessera, before the references"; tessera
echo "== udf_sum's access pattern in C (sum_patterns.c)"; target/reference/sum_patterns "$file"
echo "== udf_apply_masks' window kernel in C (masks_windows.c), pre-populated mapping"; target/reference/masks_windows "$file"
echo "== the same, mapped anew for every repetition (page faults included)"; target/reference/masks_windows "$file" fresh
echo "== Tessera, after the references"; tessera
