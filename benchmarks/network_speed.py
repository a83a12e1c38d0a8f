"""Wall time of a Lagrangian forecaster's network alone: the part of a forecast extrapolation does not pay.

``benchmarks/forecast.py`` and ``benchmarks/lagrangian_speed.py`` time whole
forecasts, in which pysteps' Lucas-Kanade motion (paid by both methods) varies
by +-30 % from call to call on this machine; a change to the network is lost in
that noise. This times ``Forecaster._network`` (the recurrent closed loop on
the normalised Lagrangian window, ``input_frames + leads - 1`` steps) on a
fixed random input, every variant in turn in one process, and reports the
median. Variants: checkpoints as given, and the shipped config with other
widths (``--hidden``; random weights, the cost does not depend on them).

To compare two revisions of the code, run it in a worktree of each
(``git worktree add /tmp/old REV``; ``cd /tmp/old && python
benchmarks/network_speed.py ...``) with the machine otherwise idle.

Usage::

    python benchmarks/network_speed.py models/zoo/swiss-south-tmu.pt --hidden 16 --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.lagrangian_speed import add_timing_arguments, alternate, timing_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="*")
    parser.add_argument("--hidden", type=int, nargs="*", default=[],
                        help="Also the shipped config (swiss-south-tmu) with these widths, random weights.")
    add_timing_arguments(parser)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from nowcast.models.config import find_model_config, load_model_config
    from nowcast.models.zoo import load_forecaster, random_forecaster

    forecasters = {}
    for path in args.checkpoints:
        forecaster = load_forecaster(path)
        arch = forecaster.config.architecture
        forecasters[f"{path.name} ({arch.kernel}x{arch.kernel}, {arch.hidden} ch)"] = forecaster
    base = load_model_config(find_model_config("swiss-south-tmu"))
    for hidden in args.hidden:
        config = base.model_copy(update={"architecture": base.architecture.model_copy(update={"hidden": hidden})})
        forecasters[f"swiss-south-tmu config, {hidden} ch (random weights)"] = random_forecaster(config)
    if not forecasters:
        parser.error("give checkpoints or --hidden")
    frames = next(iter(forecasters.values())).config.input_frames
    x = np.random.default_rng(0).normal(size=(frames, args.size, args.size)).astype(np.float32)
    times = alternate({name: (lambda f=f: f._network(x, args.leads)) for name, f in forecasters.items()}, args.rounds)
    print(timing_table(f"network ({args.size}x{args.size}, {frames + args.leads - 1} steps, {args.threads} thread(s))",
                       times, digits=3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
