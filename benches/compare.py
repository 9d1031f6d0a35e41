"""Tessera against LiberTEM 0.16 on the same files, in the same run (issue 5's table).

Runs inside the LiberTEM venv that benches/compare.sh makes, with the peer folder (a writable copy of
../shared/peer: make_data.py, peer_common.py, bench_membw) on sys.path. For every dataset and case,
REPS interleaved repetitions of: Tessera (`tessera sql --timing --repeat 2`, release build, the SQL a
user would write; the second run's wall time, planning included, as LiberTEM's first run in a process
and its context start are excluded; the first run is reported beside it) and LiberTEM (`ctx.run_udf` with each executor; the best executor's median is reported). The
file-read limit is the faster of bench_membw's 2-thread pread and 2-thread mmap+sum of the same file,
measured in the same run: before the cases and at the start of every round of repetitions (the VM's
bandwidth moves by 2x within minutes). A case's fraction of the limit is the median over the rounds
of its rate over its own round's limit; the limit printed beside it is the median of the rounds'. The dask executor's worker processes are
stopped (SIGSTOP) except during the dask executor's own runs: idle, they keep the 2 vCPUs a few %
busy in bursts, which slowed whatever else ran beside them. GB/s = bytes of the frames read / wall time (1 GB = 1e9 B).

usage: compare.py PEER_DIR TESSERA DATASET... [--reps N] [--executors threads,dask,inline1]
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time


def tessera_case_sql(name, nav, sig, dtype, path):
    """The SQL of each case, with the geometry of peer_common (masks, CoM disk, ROI, pick)."""
    import peer_common as pc

    ny, nx = nav
    spec = f"s={path},format=raw,nav={ny}x{nx},sig={sig[0]}x{sig[1]},dtype={dtype}"
    r1 = pc.ring1_params(sig)
    ring1 = f"'ring({r1['cy']}, {r1['cx']}, {r1['r_inner']}, {r1['r_outer']})'"
    rings16 = ", ".join(f"'ring({p['cy']}, {p['cx']}, {p['r_inner']}, {p['r_outer']})'" for p in pc.rings16_params(sig))
    cp = pc.com_params(sig)
    com = f"udf_com(tile, cy => {cp['cy']}, cx => {cp['cx']}, r => {cp['r']})"
    py, px = pc.pick_position(nav)
    q = pc.geometry_spec(nav, sig)["roi_quarter"]
    quarter = (f"nav_y >= {q['rows'][0]} AND nav_y < {q['rows'][1]} "
               f"AND nav_x >= {q['cols'][0]} AND nav_x < {q['cols'][1]}")
    # each ROI case runs right after its full scan, so that the two are measured in the same state
    # of the machine and of the page cache (the target compares their rates)
    cases = {
        "sum": "SELECT udf_sum(tile) FROM s",
        "sum_roi": f"SELECT udf_sum(tile) FROM s WHERE {quarter}",
        "sumsig": "SELECT udf_sum_sig(tile) FROM s",
        "sumsig_roi": f"SELECT udf_sum_sig(tile) FROM s WHERE {quarter}",
        "stddev": "SELECT udf_stddev(tile) FROM s",
        "masks1": f"SELECT udf_apply_masks(tile, masks({ring1})) FROM s",
        "masks16": f"SELECT udf_apply_masks(tile, masks({rings16})) FROM s",
        "com": f"SELECT {com} FROM s",
        "logsum": "SELECT udf_logsum(tile) FROM s",
        "pick": f"SELECT tile FROM s WHERE nav_y = {py} AND nav_x = {px}",
        "fused6": (f"SELECT udf_sum(tile), udf_sum_sig(tile), udf_stddev(tile), udf_apply_masks(tile, masks({ring1})), "
                   f"udf_apply_masks(tile, masks({rings16})), {com} FROM s"),
    }
    return spec, cases


def run_tessera(tessera, spec, query):
    """(warm query seconds, first query seconds, peak RSS MiB) of one `tessera sql` process that runs
    the query twice: the second run is timed as LiberTEM's are (its first run in a process, which pays
    for loading code, is excluded); the first is kept as the cold figure."""
    cmd = ["/usr/bin/time", "-f", "%M", tessera, "sql", "--partitions", "2", "--timing", "--repeat", "2",
           "-t", spec, query]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"tessera failed: {p.stderr[-2000:]}")
    lines = p.stderr.strip().splitlines()
    secs = [float(l.split()[1]) for l in lines if l.startswith("query_seconds")]
    rss_kib = int(lines[-1])
    return secs[-1], secs[0], rss_kib / 1024


def startup(tessera, peer, reps):
    """Process start to printed result of `tessera sql` on the `small` file, median of `reps` (ms)."""
    import peer_common as pc
    meta = pc.load_meta("small", os.path.join(peer, "data"))
    nav, sig = tuple(meta["nav_shape"]), tuple(meta["sig_shape"])
    spec = f"s={meta['path']},format=raw,nav={nav[0]}x{nav[1]},sig={sig[0]}x{sig[1]},dtype={meta['dtype']}"
    out = {}
    for udf in ["udf_sum", "udf_sum_sig", "udf_stddev"]:
        times = []
        for _ in range(reps + 1):
            t = time.perf_counter()
            subprocess.run([tessera, "sql", "-t", spec, f"SELECT {udf}(tile) FROM s"], check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        out[udf] = statistics.median(times[1:]) * 1e3
    return out


def machine():
    """The CPU model, its cores and cache sizes (lscpu): runs on different kinds of machine are not
    comparable, and the project's VMs are not all of one kind."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"
    info = dict(l.split(":", 1) for l in out.splitlines() if ":" in l)
    keys = ["Model name", "CPU(s)", "L2 cache", "L3 cache"]
    return ", ".join(f"{k}: {info[k].strip()}" for k in keys if k in info)


def reload_from_storage(path):
    """Drops the file from the page cache and lets the warm-up read it back, so that every run starts
    from the cache a file read from storage leaves, whatever wrote it. The difference is large: a file
    just written by make_data.py sits in 4 KiB pages, one read from storage in folios of up to 2 MiB
    (readahead), which a memory map maps 2 MiB per page fault instead of 64 KiB (sum of the large u16
    file with Tessera: 2x faster, measured 2026-11-26)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # only clean pages leave the cache
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def helper_processes():
    """This process's descendants (the LiberTEM contexts' worker processes)."""
    import psutil

    return psutil.Process().children(recursive=True)


def _each(procs, action):
    """Calls `action` ("suspend" or "resume") on each process still there."""
    import psutil

    for p in procs:
        try:
            getattr(p, action)()
        except psutil.NoSuchProcess:
            pass


def suspend(procs):
    _each(procs, "suspend")


def resume(procs):
    _each(procs, "resume")


@contextlib.contextmanager
def resumed(procs):
    """`procs` running for the block (then stopped again); a moment first to let them catch up on
    what they missed while stopped (heartbeats), outside the timed block."""
    if procs:
        resume(procs)
        time.sleep(0.3)
    try:
        yield
    finally:
        suspend(procs)


def limits(membw, path, dtype):
    out = subprocess.run([membw, "--mem-mib", "0", "--reps", "3", "--file", path, "--dtype",
                          "u16" if dtype == "uint16" else "f32"], check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    base = os.path.basename(path)
    pread = r[f"file_pread_16M_t2[{base}]"]["GBps_median"]
    mmap = r[f"file_mmap_sum_{'u16' if dtype == 'uint16' else 'f32'}_t2[{base}]"]["GBps_median"]
    return max(pread, mmap), pread, mmap


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("peer")
    ap.add_argument("tessera")
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--executors", default="threads,dask,inline1")
    ap.add_argument("--membw", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--startup", action="store_true", help="also time process start to result on `small`")
    args = ap.parse_args()
    sys.path.insert(0, args.peer)
    import numpy as np
    import peer_common as pc
    from bench_libertem import fused_case

    rows = []
    for name in args.datasets:
        meta = pc.load_meta(name, os.path.join(args.peer, "data"))
        nav, sig, dtype, path = tuple(meta["nav_shape"]), tuple(meta["sig_shape"]), meta["dtype"], meta["path"]
        frame_bytes = int(np.prod(sig)) * np.dtype(dtype).itemsize
        reload_from_storage(path)
        pc.warm_page_cache(path)
        reads = [limits(args.membw, path, dtype)]
        spec, sql = tessera_case_sql(name, nav, sig, dtype, path)
        lt_cases = {c: (f, roi) for c, f, roi in pc.make_udf_cases(nav, sig)}
        _, fused_factory, _ = fused_case(nav, sig)
        lt_cases["fused6"] = (fused_factory, None)
        contexts, helpers = {}, {}
        for ex in args.executors.split(","):
            before = set(helper_processes())
            ctx, _ = pc.make_context(ex)
            contexts[ex] = (ctx, pc.load_dataset(ctx, meta))
            helpers[ex] = [p for p in helper_processes() if p not in before]
        times = {c: {"tessera": [], "cold": [], "rss": [], **{ex: [] for ex in contexts}} for c in sql}
        for case in sql:  # warm-up, untimed (LiberTEM's numba JIT, Tessera's first process)
            run_tessera(args.tessera, spec, sql[case])
            factory, roi = lt_cases[case]
            for ctx, ds in contexts.values():
                ctx.run_udf(dataset=ds, udf=factory(), roi=roi)
        # The dask executor's cluster (a nanny and worker processes) keeps a few % of the 2 vCPUs busy
        # while idle, in bursts: measured beside it, Tessera's scans ran 10-35 % slower. Its processes
        # are stopped while anything else is measured, and resumed only for the dask executor's runs.
        suspend([p for ps in helpers.values() for p in ps])
        for rep in range(args.reps):
            # each round: the file read back from storage (the VM pages out cold page cache with
            # DAMON, and pages read back one by one sit in 4 KiB folios), and the limit measured
            # again (it moves with the VM's load as much as the cases do)
            reload_from_storage(path)
            pc.warm_page_cache(path, passes=1)
            reads.append(limits(args.membw, path, dtype))
            for case in sql:
                secs, cold, rss = run_tessera(args.tessera, spec, sql[case])
                times[case]["tessera"].append(secs)
                times[case]["cold"].append(cold)
                times[case]["rss"].append(rss)
                factory, roi = lt_cases[case]
                for ex, (ctx, ds) in contexts.items():
                    udf = factory()
                    with resumed(helpers[ex]):
                        t = time.perf_counter()
                        ctx.run_udf(dataset=ds, udf=udf, roi=roi)
                        times[case][ex].append(time.perf_counter() - t)
        resume([p for ps in helpers.values() for p in ps])
        for ctx, _ in contexts.values():
            ctx.close()
        pread, mmap = (statistics.median(r[k] for r in reads) for k in (1, 2))
        limit = max(pread, mmap)
        for case in sql:
            frames = int(np.prod(nav))
            if case == "pick":
                frames = 1
            elif case.endswith("_roi"):
                frames = int(pc.roi_quarter(nav).sum())
            nbytes = frames * frame_bytes
            t_med = statistics.median(times[case]["tessera"])
            c_med = statistics.median(times[case]["cold"])
            best_ex = min(contexts, key=lambda ex: statistics.median(times[case][ex]))
            l_med = statistics.median(times[case][best_ex])
            # the rate of each round over the limit measured at that round's start: the VM's
            # bandwidth changes phase within a run (limits of 36 and 56 GB/s minutes apart, with
            # Tessera's float32 sums at 91-94 % and 77-87 % of each), and a case measured in another
            # phase than most of the rounds' limits gets a percentage of neither
            paired = statistics.median(nbytes / t / 1e9 / max(r[1], r[2])
                                       for t, r in zip(times[case]["tessera"], reads[1:]))
            rows.append({
                "dataset": name, "case": case, "bytes": nbytes, "tessera_s": t_med, "libertem_s": l_med,
                "libertem_executor": best_ex, "tessera_GBps": nbytes / t_med / 1e9,
                "tessera_first_query_s": c_med, "tessera_first_query_GBps": nbytes / c_med / 1e9,
                "libertem_GBps": nbytes / l_med / 1e9, "ratio": l_med / t_med,
                "limit_GBps": limit, "pread_GBps": pread, "mmap_GBps": mmap,
                "fraction_of_limit": paired, "fraction_of_median_limit": nbytes / t_med / 1e9 / limit,
                "tessera_peak_rss_MiB": max(times[case]["rss"]),
            })
    starts = startup(args.tessera, args.peer, args.reps) if args.startup else None
    cpu = machine()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cases": rows, "startup_ms": starts, "machine": cpu}, f, indent=1)
    print(f"machine: {cpu}")
    print(f"medians of {args.reps} interleaved repetitions; GB/s of frames read; limit = max(2-thread pread, "
          "2-thread mmap+sum) of the same file, measured at the start of every round; 'Tessera / limit': the median over "
          "the rounds of the case's rate over its round's limit, beside the median of the rounds' limits. Tessera: the second run of the query in its process "
          "(LiberTEM's first run in a process is excluded too); 'first query': the first run, which also loads "
          "the program's code\n")
    print("| dataset | case | Tessera GB/s | LiberTEM GB/s (executor) | ratio | Tessera / limit | "
          "Tessera first query | Tessera peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        lat = r["case"] == "pick"
        tg = f"{r['tessera_s'] * 1e3:.1f} ms" if lat else f"{r['tessera_GBps']:.2f}"
        cg = f"{r['tessera_first_query_s'] * 1e3:.1f} ms" if lat else f"{r['tessera_first_query_GBps']:.2f}"
        lg = f"{r['libertem_s'] * 1e3:.1f} ms" if lat else f"{r['libertem_GBps']:.2f}"
        frac = "" if lat else "%.0f %% of %.1f" % (r["fraction_of_limit"] * 100, r["limit_GBps"])
        print(f"| {r['dataset']} | {r['case']} | {tg} | {lg} ({r['libertem_executor']}) | {r['ratio']:.2f}× "
              f"| {frac} | {cg} | {r['tessera_peak_rss_MiB']:.0f} MiB |")
    if starts:
        print("\n`tessera sql` on small (1 MiB), process start to printed result, median: "
              + ", ".join(f"{u} {ms:.1f} ms" for u, ms in starts.items()))


if __name__ == "__main__":
    main()
