"""Benchmark: ingest a stream of real-format ODIM composites into the archive.

Frames per second of :func:`pipelines.ingest.ingest_files` on a stream of N
copies of the real MeteoSwiss CHRFO composite (640x710, time-shifted with
:func:`nowcast.io.odim_write.retime_odim_copy`) onto the ``swiss`` grid, beside
the *floor* of the same frames: a bare ``h5py`` read of each dataset plus a
bare ``zarr`` write of the same arrays (same chunks and codec as the archive,
no xarray, no checks, one process).

Each scheduler is measured twice: end to end (what ``nowcast ingest`` costs,
cluster start-up included) and steady state (an already running cluster,
warmed by a first small ingest, as with ``--scheduler ADDRESS`` or a
long-lived service).

Run::

    python benchmarks/ingest.py --frames 120 --schedulers synchronous,threads,processes --repeat 2 --rounds 6
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmarks.ingest")


def make_stream(folder: Path, n: int, start: str = "2024-02-27T09:50") -> list[Path]:
    """N time-shifted byte copies of the real composite, 5 minutes apart."""
    from nowcast.io.odim_write import retime_odim_copy
    from nowcast.samples import sample_path

    src = sample_path("meteoswiss_odim_composite")
    t0 = np.datetime64(start, "s")
    out = []
    for k in range(n):
        t = t0 + np.timedelta64(5 * k, "m")
        stamp = np.datetime_as_string(t, unit="m").replace("-", "").replace(":", "").replace("T", "")
        out.append(retime_odim_copy(src, folder / f"RFO{stamp}.h5", t))
    return out


def _burn(n: int = 3_000_000) -> float:
    t = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i
    return time.perf_counter() - t


def parallel_capacity() -> float:
    """How many cores' worth of CPU two busy processes actually get.

    2.0 on two real idle cores; less on a shared or hyper-threaded VM. It
    bounds what any parallel scheduler can gain here.
    """
    import multiprocessing as mp

    alone = min(_burn() for _ in range(2))
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_burn, [10_000, 10_000])
        t = time.perf_counter()
        pool.map(_burn, [3_000_000, 3_000_000])
        both = time.perf_counter() - t
    return 2 * alone / both


def floor(files: list[Path], work: Path, batch: int) -> dict[str, float]:
    """Seconds for a bare h5py read and a bare zarr write of the frames."""
    import h5py
    import zarr
    from zarr.codecs import BloscCodec

    from nowcast.config import load_region
    from nowcast.io.archive import tile_shape

    t = time.perf_counter()
    frames = []
    for f in files:
        with h5py.File(f, "r") as h5:
            frames.append(h5["dataset1/data1/data"][...].astype(np.float32))
    read_s = time.perf_counter() - t
    shape = load_region("swiss").grid.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        arr = zarr.create_array(
            str(work / "floor.zarr"),
            shape=(0, *shape),
            chunks=(1, *tile_shape(shape)),
            dtype="float32",
            compressors=[BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
            fill_value=np.nan,
        )
        for i in range(0, len(frames), batch):
            block = np.stack(frames[i : i + batch])
            arr.resize((i + block.shape[0], *shape))
            arr[i : i + block.shape[0]] = block
        write_s = time.perf_counter() - t
    return {"read_s": read_s, "write_s": write_s}


def end_to_end(name: str, files: list[Path], home: Path) -> float:
    """Seconds of one ``ingest_files`` call as the CLI makes it (cluster start included) into a new archive."""
    from pipelines.ingest import ingest_files

    shutil.rmtree(home, ignore_errors=True)
    t = time.perf_counter()
    report = ingest_files(files, "swiss", home=home, scheduler=name, progress=False)
    e2e = time.perf_counter() - t
    assert len(report.result.added) == len(files), report.summary()
    shutil.rmtree(home, ignore_errors=True)
    return e2e


def run_scheduler(name: str, files: list[Path], warm: list[Path], work: Path, repeat: int) -> dict[str, float]:
    """End-to-end and steady-state seconds of one scheduler."""
    from pipelines.ingest import ingest_files

    home_b, home_c = work / f"{name}-warm", work / f"{name}-steady"
    e2e = end_to_end(name, files, work / f"{name}-e2e")
    with contextlib.ExitStack() as stack:
        if name in ("synchronous", "processes"):  # no cluster: the process pool forks per ingest, in milliseconds
            client, start = name, 0.0
        else:  # the cluster ingest_files would start, kept running: the same loopback-only setup
            from nowcast.cluster import dask_client

            t = time.perf_counter()
            client, _, _ = stack.enter_context(dask_client(name))
            start = time.perf_counter() - t
        ingest_files(warm, "swiss", home=home_b, scheduler=client, progress=False)
        steady = float("inf")
        for _ in range(repeat):
            shutil.rmtree(home_c, ignore_errors=True)
            t = time.perf_counter()
            report = ingest_files(files, "swiss", home=home_c, scheduler=client, progress=False)
            steady = min(steady, time.perf_counter() - t)
    return {"e2e_s": e2e, "startup_s": start, "steady_s": steady}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--schedulers", default="synchronous,threads,processes")
    parser.add_argument("--repeat", type=int, default=3, help="Steady-state and floor runs; the best is kept.")
    parser.add_argument("--rounds", type=int, default=0,
                        help="Also measure end to end this many times per scheduler, the schedulers taking turns "
                             "(A, B, A, B...), and report the median and range: on a machine shared with other "
                             "jobs one run each says more about the other jobs than about the schedulers.")
    parser.add_argument("--append-to", type=Path, default=None, help="Markdown file to append the results to.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.WARNING)  # the threads cluster's start/stop chatter
    from pipelines.ingest import BATCH_SIZE, _n_workers

    n = args.frames
    capacity_before = parallel_capacity()
    with tempfile.TemporaryDirectory(prefix="nowcast-bench-") as tmp:
        work = Path(tmp)
        files = make_stream(work / "stream", n)
        warm = make_stream(work / "warm", 4, start="2020-01-01T00:00")
        runs = []
        for k in range(args.repeat):
            shutil.rmtree(work / "floor.zarr", ignore_errors=True)
            runs.append(floor(files, work, BATCH_SIZE))
        fl = {key: min(r[key] for r in runs) for key in runs[0]}
        floor_s = fl["read_s"] + fl["write_s"]
        rows = []
        for name in args.schedulers.split(","):
            r = run_scheduler(name, files, warm, work, args.repeat)
            rows.append((name, r))
            print(f"{name}: {r}", flush=True)
            for p in work.glob(f"{name}-*"):
                shutil.rmtree(p, ignore_errors=True)
        names = args.schedulers.split(",")
        turns: dict[str, list[float]] = {name: [] for name in names}
        capacities = []
        for k in range(args.rounds):
            capacities.append(parallel_capacity())
            for name in names:
                turns[name].append(end_to_end(name, files, work / f"turn-{name}"))
            print(f"round {k + 1}: capacity {capacities[-1]:.2f}, "
                  + ", ".join(f"{name} {n / turns[name][-1]:.1f} fps" for name in names), flush=True)
    capacity = parallel_capacity()
    load = os.getloadavg()[0]
    lines = [
        "",
        f"### Ingest: {n} real-format ODIM composites (640x710) onto `swiss`",
        "",
        f"`python benchmarks/ingest.py --frames {n} --schedulers {args.schedulers} --repeat {args.repeat}"
        f"{f' --rounds {args.rounds}' if args.rounds else ''}` on {platform.node() or 'this machine'}, "
        f"{_n_workers()} CPU cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}; 1-min load average {load:.2f} at the end "
        "(the cores were shared with other processes). Frames are byte copies of the real MeteoSwiss "
        "CHRFO file with only their times changed. Steady state and floor: best of "
        f"{args.repeat} runs; end to end: one run, cluster start-up and worker imports included.",
        "",
        f"Parallel capacity: two busy processes got {capacity_before:.2f} cores' worth of CPU before the runs "
        f"and {capacity:.2f} after (`parallel_capacity()` in the script; 2.0 on two free cores).",
        "",
        f"Floor (one process, no xarray, no checks): h5py read {fl['read_s'] / n * 1e3:.1f} ms/frame + "
        f"zarr write {fl['write_s'] / n * 1e3:.1f} ms/frame = **{n / floor_s:.1f} frames/s**.",
        "",
        "| scheduler | cluster start (s) | end to end (frames/s) | steady state (frames/s) | steady / floor |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['startup_s']:.1f} | {n / r['e2e_s']:.1f} | {n / r['steady_s']:.1f} | "
            f"{floor_s / r['steady_s']:.2f}x |"
        )
    if args.rounds:
        base = np.array(turns[names[0]])
        lines += [
            "",
            f"End to end, {args.rounds} rounds, the schedulers taking turns (`--rounds {args.rounds}`); parallel capacity "
            f"measured before each round: median {np.median(capacities):.2f} (from {min(capacities):.2f} to "
            f"{max(capacities):.2f}). Speed-up: each round's time of {names[0]} over the scheduler's.",
            "",
            "| scheduler | end to end, median (frames/s) | min .. max (frames/s) | speed-up over " + names[0] + ", median |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name in names:
            fps = n / np.array(turns[name])
            lines.append(f"| {name} | {np.median(fps):.1f} | {fps.min():.1f} .. {fps.max():.1f} | "
                         f"{np.median(base / np.array(turns[name])):.2f}x |")
        lines += ["", "| round | parallel capacity | " + " | ".join(names) + " |",
                  "| ---: | ---: | " + " | ".join("---:" for _ in names) + " |"]
        for k in range(args.rounds):
            lines.append(f"| {k + 1} | {capacities[k]:.2f} | " + " | ".join(f"{n / turns[name][k]:.1f}" for name in names) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append_to:
        path = args.append_to
        if not path.exists():
            path.write_text("# Benchmarks\n\nMeasured numbers, each with the command that produced them.\n")
        with path.open("a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
