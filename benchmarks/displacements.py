"""Semi-Lagrangian displacements: the one-loop scheme against chained pysteps calls.

``nowcast.motion.displacements`` computes every lead's displacement in one loop
of pysteps' own ``map_coordinates`` calls; ``displacements_pysteps`` calls
``pysteps.extrapolation.semilagrangian.extrapolate`` once per step, as the
code did before. Both run here on the same smooth, rotating-and-drifting
motion field (trajectories leave the domain), one thread, and the script
checks that they agree bit for bit before it reports the times.

Usage::

    python benchmarks/displacements.py --size 512 --steps 15 --repeat 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def motion(size: int, seed: int = 0) -> np.ndarray:
    """A smooth random motion field of a few pixels per step plus a slow rotation."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size].astype(np.float64)
    c = size / 2.0
    smooth = [gaussian_filter(rng.normal(size=(size, size)), size / 16) for _ in range(2)]
    smooth = [s / s.std() for s in smooth]
    return np.stack([2.0 + smooth[0] - 0.004 * (y - c), 3.0 + smooth[1] + 0.004 * (x - c)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=15, help="3 input steps + 12 leads in a Lagrangian forecast.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from nowcast.motion import displacements, displacements_pysteps

    velocity = motion(args.size)
    displacements_pysteps(velocity, 1)  # imports and first-call costs out of the timing
    times: dict[str, list[float]] = {"pysteps, one call per step": [], "one loop (nowcast.motion)": []}
    for _ in range(args.repeat):
        t = time.perf_counter()
        ref = displacements_pysteps(velocity, args.steps)
        times["pysteps, one call per step"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ours = displacements(velocity, args.steps)
        times["one loop (nowcast.motion)"].append(time.perf_counter() - t)
        if not np.array_equal(ref, ours):
            raise SystemExit(f"displacements differ: max {np.abs(ref - ours).max():.3g} px")
    print(f"| scheme ({args.size}x{args.size}, {args.steps} steps) | median s | per step ms |")
    print("| --- | ---: | ---: |")
    for name, ts in times.items():
        med = float(np.median(ts))
        print(f"| {name} | {med:.3f} | {1000 * med / args.steps:.1f} |")
    print("bit for bit equal: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
