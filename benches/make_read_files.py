"""Writes the files of the read-throughput benchmark (benches/read_throughput.sh) into OUTDIR:
a Merlin MIB series (4 files, 384-byte headers, big-endian uint16 frames), the same frames as one raw
file, and HDF5 files written by h5py/hdf5plugin: contiguous, chunked uncompressed (one frame per
chunk), gzip level 1 + shuffle, and DECTRIS-style bitshuffle+LZ4.

usage: make_read_files.py OUTDIR MIB   (MIB: decoded size of the data in MiB, e.g. 256)
"""

import os
import sys

import h5py
import hdf5plugin
import numpy as np

SIG = (256, 256)


def main(out, mib):
    os.makedirs(out, exist_ok=True)
    n = max(16, mib * 2**20 // (SIG[0] * SIG[1] * 2)) // 16 * 16
    nav = (n // 32, 32)
    rng = np.random.default_rng(0)
    # counting-detector-like frames: a bright disk over Poisson background, cheap to generate
    yy, xx = np.mgrid[: SIG[0], : SIG[1]]
    disk = ((yy - 128) ** 2 + (xx - 128) ** 2 < 40**2).astype(np.uint16) * 200
    base = rng.poisson(2.0, size=(64,) + SIG).astype(np.uint16)
    data = np.empty((n,) + SIG, np.uint16)
    for i in range(n):
        data[i] = base[i % 64] + disk
    data.tofile(os.path.join(out, "frames.raw"))

    # MIB: 4 files, each frame a 384-byte ASCII header then big-endian pixels
    per = n // 4
    for k in range(4):
        with open(os.path.join(out, f"series_{k + 1}.mib"), "wb") as f:
            for i in range(k * per, (k + 1) * per):
                head = f"MQ1,{i + 1:06d},00384,01,0256,0256,U16,   1x1,01,2024-01-01 00:00:00.000000,0.001000,0,0,0,1.000000E+1,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,3RX,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,MQ1A,2024-01-01T00:00:00.000000000Z,1000000ns,12,"
                f.write(head.encode().ljust(384, b"\0"))
                f.write(data[i].astype(">u2").tobytes())

    shaped = data.reshape(nav + SIG)
    with h5py.File(os.path.join(out, "contiguous.h5"), "w") as f:
        f.create_dataset("data", data=shaped)
    with h5py.File(os.path.join(out, "chunked.h5"), "w") as f:
        f.create_dataset("data", data=shaped, chunks=(1, 1) + SIG)
    with h5py.File(os.path.join(out, "gzip.h5"), "w") as f:
        f.create_dataset("data", data=shaped, chunks=(1, 1) + SIG, compression="gzip", compression_opts=1, shuffle=True)
    with h5py.File(os.path.join(out, "bslz4.h5"), "w") as f:
        f.create_dataset("data", data=shaped, chunks=(1, 1) + SIG, **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
    print(f"{n} frames of {SIG[0]}x{SIG[1]} uint16, nav {nav[0]}x{nav[1]}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
