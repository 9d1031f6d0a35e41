#!/usr/bin/env bash
# Read throughput of raw, MIB and HDF5 files against plain reads of the same bytes (issue 4's target:
# within 1.5x of pread from the page cache). One command from a fresh clone (with ../shared/peer for
# the C reader of the limits); run it on an otherwise idle machine.
#   usage: benches/read_throughput.sh [MiB of frames, default 256] [repetitions, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
mib="${1:-256}"
reps="${2:-5}"
py="$(bash scripts/pyenv.sh)"
data="target/readbench/$mib"
if [ ! -f "$data/bslz4.h5" ]; then
  "$py" benches/make_read_files.py "$data" "$mib"
fi
peer="../shared/peer/bench_membw.c"
if [ ! -f "$peer" ]; then
  echo "needs $peer (the C program that measures this machine's read limits)" >&2
  exit 2
fi
gcc -O3 -march=native -fopenmp -o target/bench_membw "$peer"
cargo build --release --bin tessera
"$py" benches/read_throughput.py "$data" target/release/tessera target/bench_membw "$reps"
