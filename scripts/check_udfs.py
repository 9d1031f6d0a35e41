#!/usr/bin/env python3
"""Independent numpy computation of udf_fem, udf_crystallinity and udf_radial_fourier.

usage: check_udfs.py DIR

DIR holds data.npy (nav_y, nav_x, sig_y, sig_x), roi.npy (bool, nav shape), params.json and
Tessera's results as <column>.<buffer>.npy (columns fem, cryst, rf). Each result is compared with the
numpy reference: same shape, same NaN pattern, max|a-ref|/max|ref| <= 1e-5. Prints one OK line per
buffer; exits non-zero on the first mismatch.
"""
import json
import os
import sys

import numpy as np


def ring(shape, cy, cx, ri, ro):
    y, x = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    d2 = (y - cy) ** 2 + (x - cx) ** 2
    return (d2 <= ro**2) & ~(d2 <= ri**2)


def fem(frames, p):
    m = ring(frames.shape[1:], p["cy"], p["cx"], p["ri"], p["ro"])
    return np.array([f[m].std() for f in frames])


def crystallinity(frames, p):
    sy, sx = frames.shape[1:]
    fmask = ring((sy, sx), sy * 0.5, sx * 0.5, p["ri"], p["ro"])
    y, x = np.mgrid[:sy, :sx].astype(np.float64)
    real = ((y - p["real_cy"]) ** 2 + (x - p["real_cx"]) ** 2 > p["real_r"] ** 2).astype(np.float64)
    return np.array([np.sum(np.fft.fftshift(np.abs(np.fft.fft2(f * real))) * fmask) for f in frames])


def radial_fourier(frames, p):
    sy, sx = frames.shape[1:]
    y, x = np.mgrid[:sy, :sx].astype(np.float64)
    y -= p["cy"]
    x -= p["cx"]
    r = np.hypot(y, x)
    phi = np.arctan2(y, x)
    n_bins, orders = p["n_bins"], p["max_order"] + 1
    width = (p["ro"] - p["ri"]) / n_bins
    inside = (r >= p["ri"]) & (r <= p["ro"])
    bins = np.minimum(((r - p["ri"]) / width).astype(int), n_bins - 1)
    out = np.zeros((len(frames), n_bins, orders), complex)
    for b in range(n_bins):
        sel = inside & (bins == b)
        for n in range(orders):
            out[:, b, n] = (frames[:, sel] * np.exp(1j * n * phi[sel])).sum(axis=1)
    return out


def embed(values, roi):
    full = np.full(roi.shape + values.shape[1:], np.nan)
    full[roi] = values
    return full


def compare(name, got, ref):
    if got.shape != ref.shape:
        sys.exit(f"{name}: shape {got.shape}, expected {ref.shape}")
    if not np.array_equal(np.isnan(got), np.isnan(ref)):
        sys.exit(f"{name}: NaN pattern differs")
    ok = ~np.isnan(ref)
    err = np.max(np.abs(got[ok] - ref[ok])) / max(np.max(np.abs(ref[ok])), 1e-300)
    if err > 1e-5:
        sys.exit(f"{name}: max|a-ref|/max|ref| = {err}")
    print(f"OK {name} {got.shape} {err:.2e}")


def main(d):
    data = np.load(os.path.join(d, "data.npy")).astype(np.float64)
    roi = np.load(os.path.join(d, "roi.npy")).astype(bool)
    p = json.load(open(os.path.join(d, "params.json")))
    frames = data[roi]
    load = lambda n: np.load(os.path.join(d, n)).astype(np.float64)
    compare("fem.intensity", load("fem.intensity.npy"), embed(fem(frames, p["fem"]), roi))
    compare("cryst.intensity", load("cryst.intensity.npy"), embed(crystallinity(frames, p["cryst"]), roi))
    c = radial_fourier(frames, p["rf"])
    compare("rf.real", load("rf.real.npy"), embed(c.real, roi))
    compare("rf.imag", load("rf.imag.npy"), embed(c.imag, roi))
    compare("rf.absolute", load("rf.absolute.npy"), embed(np.abs(c), roi))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
