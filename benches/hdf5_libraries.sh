#!/usr/bin/env bash
# The one-off comparison behind Tessera's HDF5 reader (benches/HDF5.md): the pure-Rust hdf5-reader
# against the HDF Group's C library (hdf5-metno bindings) on the real files, on h5py/hdf5plugin-written
# test files and on the read benchmark's 256 MiB files. Needs the C library, which Tessera itself does
# not: `apt-get install libhdf5-dev` (Debian). Run on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
py="$(bash scripts/pyenv.sh)"
export HDF5_DIR="${HDF5_DIR:-/usr/lib/x86_64-linux-gnu/hdf5/serial}"
if [ ! -d "$HDF5_DIR" ]; then
  echo "needs the HDF5 C library (apt-get install libhdf5-dev) or HDF5_DIR" >&2
  exit 2
fi
# the C library reads bitshuffle through hdf5plugin's plugin
export HDF5_PLUGIN_PATH="$("$py" -c 'import hdf5plugin; print(hdf5plugin.PLUGIN_PATH)')"
(cd benches/hdf5-libraries && cargo build --release --quiet)
bin=benches/hdf5-libraries/target/release/hdf5-libraries
cases=target/hdf5-cases
"$py" scripts/make_hdf5.py "$cases" > /dev/null
echo "## Same numbers (sum of all pixels) from both libraries"
for c in "$cases/gzip.h5 experiment/scan" "$cases/arina_data_000001.h5 entry/data/data" "$cases/bslz4_u32.h5 data" \
  "$cases/lz4.h5 data" "$cases/latest.h5 fixed" "$cases/latest.h5 growing" "$cases/be_f32.h5 data" \
  "$cases/emd.h5 root/datacube/data" "$cases/sparse.h5 data" "$cases/sparse.h5 be" \
  "../shared/realdata/files/emd_py4dstem/py4DSTEM_size2x3x4x5.h5 datacube_root/datacube/data"; do
  set -- $c
  [ -f "$1" ] || continue
  echo "== $(basename "$1") $2"
  "$bin" "$1" "$2" | sed 's/ best=.*//'
done
echo "## Speed: whole dataset, one hyperslab per scan row, best of 5 (includes summing the pixels)"
data=target/readbench/256
[ -f "$data/bslz4.h5" ] || "$py" benches/make_read_files.py "$data" 256
for f in contiguous chunked gzip bslz4; do
  echo "== $f.h5"
  "$bin" "$data/$f.h5" data 5
done
