"""Read throughput of Tessera's formats against plain reads of the same bytes from the page cache.

For each file of benches/make_read_files.py: the time of `tessera sql` running
`SELECT count(tile)` (every frame read and decoded into tiles, nothing computed on them) and
`SELECT udf_sum_sig(tile)` (plus the lightest UDF), both with 2 partitions, against the time that
(with mmap, count(tile) touches no pixel: the io=pread rows show the cost of reading)
`bench_membw` (../shared/peer, 2 threads of pread) takes to read the file's bytes.
Medians of REPS interleaved repetitions. Tessera's times include process start, opening the file and
planning; "minus start-up" subtracts the same query over no frame (`WHERE nav_index < 0`).

usage: read_throughput.py DATADIR TESSERA BENCH_MEMBW [REPS]
"""

import json
import os
import statistics
import subprocess
import sys
import time


def run(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main(data, tessera, membw, reps):
    nav = "64x32"
    cases = [
        ("raw (uint16 LE), mmap", [f"{data}/frames.raw"], f"{data}/frames.raw,format=raw,nav={nav},sig=256x256,dtype=uint16"),
        ("raw (uint16 LE), io=pread", [f"{data}/frames.raw"], f"{data}/frames.raw,format=raw,nav={nav},sig=256x256,dtype=uint16,io=pread"),
        ("MIB series (4 files, >u2)", [f"{data}/series_{k}.mib" for k in range(1, 5)], f"{data}/series_*.mib,nav={nav}"),
        ("HDF5 contiguous, mmap", [f"{data}/contiguous.h5"], f"{data}/contiguous.h5"),
        ("HDF5 contiguous, io=pread", [f"{data}/contiguous.h5"], f"{data}/contiguous.h5,io=pread"),
        ("HDF5 chunked, no filter", [f"{data}/chunked.h5"], f"{data}/chunked.h5"),
        ("HDF5 gzip-1 + shuffle", [f"{data}/gzip.h5"], f"{data}/gzip.h5"),
        ("HDF5 bitshuffle+LZ4", [f"{data}/bslz4.h5"], f"{data}/bslz4.h5"),
    ]
    decoded = os.path.getsize(f"{data}/frames.raw")
    rows = []
    for name, files, spec in cases:
        size = sum(os.path.getsize(f) for f in files)
        for f in files:  # warm the page cache
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
        read_t, count_t, sumsig_t, empty_t = [], [], [], []
        for _ in range(reps):
            t = 0.0
            for f in files:
                out = subprocess.run([membw, "--mem-mib", "16", "--reps", "1", "--file", f, "--dtype", "u16"],
                                     check=True, capture_output=True, text=True).stdout
                r = json.loads(out)
                gbps = next(v for k, v in flat(r) if "file_pread_16M_t2" in k and k.endswith("best"))
                t += os.path.getsize(f) / (gbps * 1e9)
            read_t.append(t)
            base = [tessera, "sql", "--partitions", "2", "-t", f"s={spec}"]
            count_t.append(run(base + ["SELECT count(tile) FROM s"]))
            empty_t.append(run(base + ["SELECT count(tile) FROM s WHERE nav_index < 0"]))
            sumsig_t.append(run(base + ["SELECT udf_sum_sig(tile) FROM s"]))
        rt, ct, st, et = (statistics.median(x) for x in (read_t, count_t, sumsig_t, empty_t))
        rows.append((name, size, rt, ct, st, et))
    print(f"decoded data: {decoded / 2**20:.0f} MiB of uint16 frames; medians of {reps}\n")
    print("| file | bytes on disk | pread ×2 | tessera count(tile) | ratio | minus start-up | ratio | tessera udf_sum_sig | ratio | decoded GB/s (count − start-up) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, size, rt, ct, st, et in rows:
        read = ct - et
        if read < 0.002:  # memory maps: count(tile) touched no pixel
            minus = "— | (zero copy) | "
            gbps = "—"
        else:
            minus = f"{read:.3f} s | {read / rt:.2f}× | "
            gbps = f"{decoded / read / 1e9:.2f}"
        print(f"| {name} | {size / 2**20:.0f} MiB | {rt:.3f} s | {ct:.3f} s | {ct / rt:.2f}× | {minus}{st:.3f} s | {st / rt:.2f}× | {gbps} |")


def flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from flat(v, prefix + k + ".")
        else:
            yield prefix + k, v


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 5)
