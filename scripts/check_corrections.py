#!/usr/bin/env python3
"""Independent numpy reference for Tessera's corrections and sync_offset.

usage: check_corrections.py DIR

DIR holds data.npy (frames, sig_y, sig_x) as stored in the file, dark.npy, gain.npy, params.json
({"excluded": [[y, x], ...], "sync_offset": k}) and Tessera's frames.npy (every corrected frame in nav
order) and sum.npy (udf_sum). Reference: frame i is stored frame i + k (zeros outside the file),
corrected = (frame - dark) * gain, each excluded pixel replaced by the mean of its valid 8-neighbours.
Prints one OK line per check; exits non-zero on a mismatch.
"""
import json
import os
import sys

import numpy as np


def main(d):
    data = np.load(os.path.join(d, "data.npy")).astype(np.float64)
    dark = np.load(os.path.join(d, "dark.npy")).astype(np.float64)
    gain = np.load(os.path.join(d, "gain.npy")).astype(np.float64)
    p = json.load(open(os.path.join(d, "params.json")))
    n, sy, sx = data.shape
    k = p["sync_offset"]
    frames = np.zeros_like(data)
    for i in range(n):
        if 0 <= i + k < n:
            frames[i] = data[i + k]
    out = (frames - dark) * gain
    excluded = np.zeros((sy, sx), bool)
    for y, x in p["excluded"]:
        excluded[y, x] = True
    for y, x in p["excluded"]:
        vals = [
            out[:, y + dy, x + dx]
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
            if (dy, dx) != (0, 0) and 0 <= y + dy < sy and 0 <= x + dx < sx and not excluded[y + dy, x + dx]
        ]
        out[:, y, x] = np.mean(vals, axis=0) if vals else 0
    for name, ref in [("frames", out), ("sum", out.sum(axis=0))]:
        got = np.load(os.path.join(d, name + ".npy")).astype(np.float64)
        if got.shape != ref.shape:
            sys.exit(f"{name}: shape {got.shape}, expected {ref.shape}")
        err = np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-300)
        if err > 1e-5:
            sys.exit(f"{name}: max|a-ref|/max|ref| = {err}")
        print(f"OK {name} {got.shape} {err:.2e}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
