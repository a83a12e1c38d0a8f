"""In-process wall time of Lagrangian forecasters beside extrapolation on one synthetic 512x512 window.

Complements ``benchmarks/forecast.py`` (the CLI path on the real composite, a
fresh process per method): here the checkpoints and extrapolation run
alternately in one process on the same window, so a comparison of two model
architectures is not blurred by process start-up or by the machine's drift.
The window is a smooth random field, half of it raining, moved 3 and 2 cells
per step (Lucas-Kanade finds many features in it, more than in the real
composite, which makes the motion, paid by both methods, dearer).

Usage::

    python benchmarks/lagrangian_speed.py models/zoo/swiss-south-tmu.pt \\
        models/runs/study/swiss-south-tmu-it2000-s0.pt --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def window(size: int = 512, frames: int = 4, seed: int = 0) -> np.ndarray:
    """``(frames, size, size)`` mm/h: a smooth field, half wet, moving (3, 2) cells per step."""
    from scipy.ndimage import gaussian_filter, shift

    rng = np.random.default_rng(seed)
    pad = 44
    base = gaussian_filter(rng.normal(size=(size + 2 * pad, size + 2 * pad)), 8)
    base = np.maximum(0.0, (base - np.median(base)) / base.std() * 8.0)
    return np.stack([shift(base, (3 * t, 2 * t), order=1)[pad:pad + size, pad:pad + size]
                     for t in range(frames)]).astype(np.float32)


def alternate(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Wall times of every call, ``rounds`` times, the calls in turn within each round.

    One call each first, untimed (allocator, caches, oneDNN kernels). Taking
    turns spreads the machine's drift (10-20 % from minute to minute here)
    over all calls instead of charging it to whichever ran last.
    """
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return times


def add_timing_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every in-process timing script takes: threads, rounds, leads and the window's size."""
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--leads", type=int, default=12)
    parser.add_argument("--size", type=int, default=512)


def timing_table(what: str, times: dict[str, list[float]], digits: int = 2, reference: float | None = None) -> str:
    """Markdown table of :func:`alternate`'s times: median and min per call, and the median's ratio to ``reference``."""
    ratio = reference is not None
    lines = [f"| {what} | median s | min s |" + (" ratio to extrapolation |" if ratio else ""),
             "| --- | ---: | ---: |" + (" ---: |" if ratio else "")]
    for name, ts in times.items():
        median = statistics.median(ts)
        lines.append(f"| {name} | {median:.{digits}f} | {min(ts):.{digits}f} |"
                     + (f" {median / reference:.2f} |" if ratio else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    add_timing_arguments(parser)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from nowcast.allocator import keep_freed_memory
    from nowcast.baselines import extrapolation
    from nowcast.models.zoo import load_forecaster

    keep_freed_memory()  # as the nowcast command does: the methods' large temporaries reuse the heap

    win = window(args.size)
    calls = {"extrapolation": lambda: extrapolation(win, args.leads)}
    for path in args.checkpoints:
        forecaster = load_forecaster(path)
        kernel = forecaster.config.architecture.kernel
        calls[f"{path.name} ({kernel}x{kernel})"] = lambda f=forecaster: f.predict(win, args.leads)
    times = alternate(calls, args.rounds)
    print(timing_table(f"method ({args.size}x{args.size}, {args.leads} leads, {args.threads} thread(s))", times,
                       reference=statistics.median(times["extrapolation"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
