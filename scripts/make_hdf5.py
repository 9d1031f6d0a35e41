"""Writes HDF5 test files with h5py/hdf5plugin (the libraries microscopes' software uses) into OUTDIR,
each with the same data as a .npy beside it, and OUTDIR/cases.json listing them:
[{"name", "file", "spec" (extra Tessera spec options), "npy"}].

Cases: gzip+shuffle with chunks that cut frames and nav rows, DECTRIS-style bitshuffle+LZ4 (one frame
per chunk, a master file with external links to several data files), bitshuffle+LZ4 with an explicit
block size and frames that are not a multiple of 8 pixels, LZ4 (filter 32004), latest file format
(fixed-array and extensible-array chunk indexes), big-endian float32 contiguous data, an EMD 1.0
(py4DSTEM) layout found without ds_path, chunks never written, and big-endian gzip chunks.

usage: make_hdf5.py OUTDIR
"""

import json
import os
import sys

import h5py
import hdf5plugin
import numpy as np


def frames(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return (rng.random(shape) * 1000 - 10).astype(dtype)
    hi = min(np.iinfo(dtype).max, 70000)
    # mostly small counts with some large ones, as a counting detector gives
    a = rng.poisson(3.0, size=shape).astype(np.int64)
    a[rng.random(shape) < 0.01] = hi
    return a.astype(dtype)


def main(out):
    os.makedirs(out, exist_ok=True)
    cases = []

    def case(name, file, data, **spec):
        npy = os.path.join(out, name + ".npy")
        np.save(npy, np.ascontiguousarray(data))
        cases.append({"name": name, "file": os.path.join(out, file), "spec": spec, "npy": npy})

    # gzip + shuffle, chunks across nav rows and cutting the frame in 2x2 pieces (edge chunks partial)
    d = frames((5, 7, 13, 10), np.uint16, 1)
    with h5py.File(os.path.join(out, "gzip.h5"), "w") as f:
        f.create_dataset("experiment/scan", data=d, chunks=(2, 3, 7, 5), compression="gzip", shuffle=True)
        f.create_dataset("experiment/small", data=np.zeros((4, 4), np.float32))
    case("gzip", "gzip.h5", d, ds_path="experiment/scan")

    # DECTRIS ARINA style: master file, /entry/data/data_00000N external links, bslz4, 1 frame/chunk
    d = frames((6 * 4, 24, 20), np.uint16, 2)
    parts = [d[:10], d[10:20], d[20:]]
    for i, p in enumerate(parts, 1):
        with h5py.File(os.path.join(out, f"arina_data_{i:06d}.h5"), "w") as f:
            f.create_dataset(
                "entry/data/data",
                data=p,
                chunks=(1, 24, 20),
                **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"),
            )
    with h5py.File(os.path.join(out, "arina_master.h5"), "w") as f:
        f.create_group("entry/instrument/detector").attrs["description"] = "Dectris ARINA"
        for i in range(1, len(parts) + 1):
            f[f"entry/data/data_{i:06d}"] = h5py.ExternalLink(f"arina_data_{i:06d}.h5", "entry/data/data")
    case("arina", "arina_master.h5", d, nav="6x4")

    # bitshuffle+LZ4, uint32, explicit block size, 11x13 frames (143 pixels: not a multiple of 8),
    # two frames per chunk
    d = frames((3, 4, 11, 13), np.uint32, 3)
    with h5py.File(os.path.join(out, "bslz4_u32.h5"), "w") as f:
        f.create_dataset(
            "data", data=d, chunks=(1, 2, 11, 13), **hdf5plugin.Bitshuffle(nelems=64, cname="lz4")
        )
    case("bslz4_u32", "bslz4_u32.h5", d)

    # plain LZ4 filter (32004), int16
    d = frames((4, 5, 9, 8), np.int16, 4) - 3
    with h5py.File(os.path.join(out, "lz4.h5"), "w") as f:
        f.create_dataset("data", data=d, chunks=(1, 5, 9, 8), **hdf5plugin.LZ4())
    case("lz4", "lz4.h5", d)

    # newest file format: fixed array (fixed size) and extensible array (one unlimited dimension)
    d = frames((12, 16, 16), np.uint8, 5)
    with h5py.File(os.path.join(out, "latest.h5"), "w", libver="latest") as f:
        f.create_dataset("fixed", data=d, chunks=(3, 16, 16), compression="gzip")
        f.create_dataset("growing", data=d, chunks=(1, 16, 16), maxshape=(None, 16, 16), compression="gzip")
    case("latest_fixed", "latest.h5", d, ds_path="fixed", nav="3x4")
    case("latest_growing", "latest.h5", d, ds_path="growing", nav="3x4")

    # contiguous big-endian float32
    d = frames((3, 5, 6, 7), np.dtype(">f4"), 6)
    with h5py.File(os.path.join(out, "be_f32.h5"), "w") as f:
        f.create_dataset("data", data=d)
    case("be_f32", "be_f32.h5", d.astype("<f4"))

    # EMD 1.0 (py4DSTEM / emdfile) layout, found without ds_path; a 2-D array beside it
    d = frames((4, 3, 8, 9), np.float32, 7)
    with h5py.File(os.path.join(out, "emd.h5"), "w") as f:
        f.attrs["emd_group_type"] = "file"
        f.attrs["version_major"] = 1
        root = f.create_group("root")
        root.attrs["emd_group_type"] = "root"
        img = root.create_group("image")
        img.attrs["emd_group_type"] = "array"
        img.create_dataset("data", data=np.ones((50, 50), np.float32))
        cube = root.create_group("datacube")
        cube.attrs["emd_group_type"] = "array"
        cube.create_dataset("data", data=d, chunks=(1, 3, 8, 9), compression="gzip")
        for i, (n, u, s) in enumerate([("Rx", "nm", 0.5), ("Ry", "nm", 0.5), ("Qx", "A^-1", 0.02), ("Qy", "A^-1", 0.02)]):
            dim = cube.create_dataset(f"dim{i}", data=np.array([0.0, s]))
            dim.attrs["name"] = n
            dim.attrs["units"] = u
    case("emd", "emd.h5", d)

    # chunks never written read as the fill value (zero); big-endian gzip chunks of two frames
    d = frames((4, 5, 6, 7), np.uint16, 8)
    written = np.zeros_like(d)
    with h5py.File(os.path.join(out, "sparse.h5"), "w") as f:
        ds = f.create_dataset("data", shape=d.shape, dtype=np.uint16, chunks=(1, 1, 6, 7))
        for i in range(4):
            for j in range(5):
                if (i + j) % 3 == 0:
                    ds[i, j] = d[i, j]
                    written[i, j] = d[i, j]
        f.create_dataset("be", data=d.astype(">u2"), chunks=(1, 2, 6, 7), compression="gzip")
    case("sparse", "sparse.h5", written, ds_path="data")
    case("be_gzip", "sparse.h5", d, ds_path="be")

    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
