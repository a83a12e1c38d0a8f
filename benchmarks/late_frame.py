"""Benchmark: what one late frame costs the archive (issue #9, item 7).

Builds archives of N frames (default 300 and 3000) on the ``swiss-south``
grid (128x128 cells, so one chunk file per frame: the count of chunk files
written is the count of frames written), then inserts

* one frame *older than every archived one* (the worst case of a
  time-sorted layout: every frame after it moves), and
* one frame *in the middle* (a missing frame that arrives late),

each into a fresh copy of the N-frame archive, and reports the wall time of
the append, the journal written (bytes; 0 when none), and the files of the
store created or modified by the append (count and bytes) found by comparing
size and mtime of every file before and after. A frame appended at the end
is measured too, as the reference.

Frames are synthetic gamma-distributed rain fields (no real data needed:
the cost depends on the layout, not on the values). The script uses only
``Archive.open``/``Archive.append``, so it runs unchanged against older
commits of the archive (see docs/benchmarks.md, "Late frames", for how the
old layout was measured from a ``git worktree``).

Run::

    python benchmarks/late_frame.py --frames 300,3000
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmarks.late_frame")

REGION = "swiss-south"
T0 = np.datetime64("2024-01-01T00:00", "ns")
STEP = np.timedelta64(5, "m")
BUILD_BATCH = 200


def _frames(indices: np.ndarray, grid, rng: np.random.Generator):
    """Distinct rain fields at ``T0 + STEP * indices`` (mm/h, on the region grid)."""
    times = T0 + STEP * np.asarray(indices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        da = grid.empty(times, name="rain_rate")
    values = rng.gamma(0.3, 2.0, size=da.shape).astype(np.float32)
    values[values < 0.05] = 0.0
    da.values[:] = values
    da.attrs.update(units="mm h-1", source_file="late_frame_benchmark")
    return da


def _snapshot(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


def build(home: Path, n: int, seed: int = 0) -> Path:
    """An N-frame archive with frames 0, 2, 4, ... (every other step, so a middle frame can arrive late)."""
    from nowcast.config import load_region
    from nowcast.io.archive import Archive

    region = load_region(REGION, home)
    rng = np.random.default_rng(seed)
    archive = Archive.open(region, home=home)
    idx = 2 * np.arange(1, n + 1)  # 2 .. 2n: index 0 is older than all, odd ones are gaps
    for i in range(0, n, BUILD_BATCH):
        archive.append(_frames(idx[i : i + BUILD_BATCH], region.grid, rng))
    return archive.path


def measure(home: Path, index: int) -> dict[str, float]:
    """Append one frame at ``T0 + STEP * index`` and report what it cost."""
    from nowcast.config import load_region
    from nowcast.io import archive as archive_mod
    from nowcast.io.archive import Archive

    region = load_region(REGION, home)
    archive = Archive.open(region, home=home)
    frame = _frames(np.array([index]), region.grid, np.random.default_rng(10_000 + index))
    journal = {"bytes": 0}

    def point(step: str) -> None:
        if step == "journal" and archive._journal_path.exists():
            journal["bytes"] += archive._journal_path.stat().st_size

    archive_mod._fault_point = point
    before = _snapshot(archive.path)
    t = time.perf_counter()
    result = archive.append(frame)
    wall = time.perf_counter() - t
    after = _snapshot(archive.path)
    assert len(result.added) == 1, result
    written = [k for k, v in after.items() if before.get(k) != v]
    chunks = [k for k in written if k.startswith("rain_rate/c/")]
    return {
        "wall_s": wall,
        "journal_bytes": journal["bytes"],
        "files_written": len(written),
        "chunk_files_written": len(chunks),
        "bytes_written": sum(after[k][0] for k in written),
        "removed": len(set(before) - set(after)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="300,3000", help="Comma-separated archive lengths.")
    parser.add_argument("--label", default=None, help="Row label (default: the git commit).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    label = args.label
    if label is None:
        try:
            label = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                   cwd=Path(__file__).parent, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            label = "?"
    rows = []
    with tempfile.TemporaryDirectory(prefix="nowcast-late-") as tmp:
        for n in [int(v) for v in args.frames.split(",")]:
            base = Path(tmp) / f"base-{n}"
            t = time.perf_counter()
            build(base, n)
            log.warning("built %d frames in %.1f s", n, time.perf_counter() - t)
            for case, index in (("end", 2 * n + 2), ("oldest", 0), ("middle", n + 1 if n % 2 == 0 else n)):
                home = Path(tmp) / f"{case}-{n}"
                shutil.copytree(base, home)
                r = measure(home, index)
                rows.append((n, case, r))
                print(f"{label} n={n} {case}: {r}", flush=True)
                shutil.rmtree(home)
            shutil.rmtree(base)
    lines = [
        f"`python benchmarks/late_frame.py --frames {args.frames}` at {label}, {platform.node() or 'this machine'}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {time.strftime('%Y-%m-%d', time.gmtime())}; "
        f"{REGION} grid (128x128, one chunk file per frame):",
        "",
        "| archive frames | new frame | wall (ms) | journal (MB) | store files written | chunk files written | MB written |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, case, r in rows:
        lines.append(f"| {n} | {case} | {r['wall_s'] * 1e3:.0f} | {r['journal_bytes'] / 1e6:.2f} | {r['files_written']} | "
                     f"{r['chunk_files_written']} | {r['bytes_written'] / 1e6:.2f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
