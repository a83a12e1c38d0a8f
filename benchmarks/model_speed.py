"""Training-iteration and forward time of the TMU predictor (issue #3 targets).

Setting of the reference measurements in TMU.md: 64x64 frames, p=4, batch 8,
20 frames (10 -> 10), a TMU target with two frozen ConvLSTM sources of the
same size, on 2 CPU cores. Reference: 3.4 s/iter (L=2, C=32) and 23.5 s/iter
(L=4, C=64); forward alone 0.54 s and 5.7 s.

One *training iteration* = the memory bank (both sources, no_grad) + the
target's forward with scheduled sampling + prediction and distillation MSE +
backward + Adam step, exactly what :func:`nowcast.training.train` does. The
*forward* is a closed-loop test forecast (10 inputs, 10 leads, no_grad).

Usage::

    .venv/bin/python benchmarks/model_speed.py --sizes 2x32 4x64 --iterations 3 --threads 2

Set ``OMP_WAIT_POLICY=PASSIVE`` on a machine shared with other jobs: with
the default (spinning) policy two OpenMP threads competing with another
process for two cores can be 100x slower on small element-wise kernels.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch
import torch.nn.functional as F

log = logging.getLogger("benchmarks.model_speed")

REFERENCE = {(2, 32): (3.4, 0.54), (4, 64): (23.5, 5.7)}


def build(layers: int, hidden: int, n_sources: int, channels_last: bool):
    from nowcast.models.predictor import Predictor
    from nowcast.models.tmu import MemoryBank

    torch.manual_seed(0)
    sources = [Predictor(layers, hidden, 5, 4) for _ in range(n_sources)]
    bank = MemoryBank(sources)
    target = Predictor(layers, hidden, 5, 4, source_channels=bank.source_channels)
    if channels_last:
        target = target.to(memory_format=torch.channels_last)
        bank = bank.to(memory_format=torch.channels_last)
    return target, bank


def time_training(target, bank, batch: torch.Tensor, iterations: int) -> list[float]:
    from nowcast.models.predictor import fold

    opt = torch.optim.Adam(target.parameters(), lr=3e-4)
    n_in, n_out = 10, batch.shape[1] - 10
    steps = n_in + n_out - 1
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(iterations + 1):  # the first one warms up allocators and kernels
        t0 = time.perf_counter()
        mask = (torch.rand((batch.shape[0], n_out - 1), generator=gen) < 0.5).float()
        out = target(batch, n_in, n_out, teacher_mask=mask)
        loss = F.mse_loss(out.predictions, batch[:, 1 : steps + 1])
        if bank.n_sources:
            mems = bank(fold(batch[:, :steps], 4))
            loss = loss + sum(F.mse_loss(d, m) for d, m in zip(out.distilled, mems)) / bank.n_sources
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times[1:]


@torch.no_grad()
def time_forward(target, batch: torch.Tensor, iterations: int) -> list[float]:
    target.eval()
    times = []
    for _ in range(iterations + 1):
        t0 = time.perf_counter()
        target.forecast(batch[:, :10], batch.shape[1] - 10)
        times.append(time.perf_counter() - t0)
    target.train()
    return times[1:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["2x32", "4x64"], help="LAYERSxHIDDEN, e.g. 2x32 4x64")
    parser.add_argument("--iterations", type=int, default=3, help="Timed iterations (after one warm-up).")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--sources", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true", help="Use torch.channels_last memory format.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    batch = torch.rand(args.batch, args.frames, 1, 64, 64)
    rows = []
    for size in args.sizes:
        layers, hidden = (int(v) for v in size.lower().split("x"))
        target, bank = build(layers, hidden, args.sources, args.channels_last)
        train_s = statistics.median(time_training(target, bank, batch, args.iterations))
        fwd_s = statistics.median(time_forward(target, batch, args.iterations))
        ref = REFERENCE.get((layers, hidden))
        rows.append((layers, hidden, train_s, fwd_s, ref))
        log.info("L=%d C=%d: %.3f s/iter training, %.3f s forward", layers, hidden, train_s, fwd_s)
    print(f"\n64x64, p=4, batch {args.batch}, {args.frames} frames, {args.sources} sources, "
          f"{args.threads} thread(s){', channels-last' if args.channels_last else ''}, torch {torch.__version__}\n")
    print("| L | C | train s/iter | reference s/iter | speed-up | forward s | reference forward s | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for layers, hidden, train_s, fwd_s, ref in rows:
        r_train, r_fwd = ref if ref else (float("nan"), float("nan"))
        print(f"| {layers} | {hidden} | {train_s:.3f} | {r_train:g} | {r_train / train_s:.1f}x | "
              f"{fwd_s:.3f} | {r_fwd:g} | {r_fwd / fwd_s:.1f}x |")


if __name__ == "__main__":
    main()
