#!/usr/bin/env python3
"""Reads a Parquet file written by Tessera with pyarrow and checks tensors against .npy references.

usage: check_parquet.py FILE COLUMN.FIELD=EXPECTED.npy ...

For each pair, the struct column's field must be an arrow.fixed_shape_tensor whose numpy array has the
reference's shape and dtype, equal values (NaN where the reference is NaN) and a name for every
dimension (`dim_names`). Prints one OK line per
check; exits non-zero on the first mismatch.
"""
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main(path, checks):
    table = pq.read_table(path)
    for check in checks:
        name, ref_path = check.split("=", 1)
        column, field = name.split(".", 1)
        arr = table.column(column).combine_chunks().field(field)
        if not isinstance(arr.type, pa.FixedShapeTensorType):
            sys.exit(f"{name}: type {arr.type} is not a fixed_shape_tensor")
        got = arr.to_numpy_ndarray()[0]
        ref = np.load(ref_path)
        if got.shape != ref.shape or got.dtype != ref.dtype:
            sys.exit(f"{name}: got {got.shape} {got.dtype}, expected {ref.shape} {ref.dtype}")
        if not np.array_equal(np.isnan(got), np.isnan(ref)):
            sys.exit(f"{name}: NaN pattern differs")
        if not np.array_equal(np.nan_to_num(got), np.nan_to_num(ref)):
            sys.exit(f"{name}: values differ, max |diff| {np.nanmax(np.abs(got - ref))}")
        # dimension names travel with the tensor (one per dimension)
        names = arr.type.dim_names
        if names is None or len(names) != len(ref.shape):
            sys.exit(f"{name}: dim_names {names} do not name the {len(ref.shape)} dimensions")
        print(f"OK {name} {got.shape} {got.dtype} dims {list(names)}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
