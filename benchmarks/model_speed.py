"""Training-iteration and forward time of the TMU predictor, its GFLOP/s, and the reference side by side.

Setting (TMU.md, "Cost of the reference implementation"): 64x64 frames, p=4,
batch 8, 20 frames (10 -> 10), a TMU target with two frozen ConvLSTM sources
of the target's size. One *training iteration* = the memory bank (sources,
no_grad) + the target's forward with scheduled sampling + prediction and
distillation MSE + backward + Adam step, as :func:`nowcast.training.train`
does. The *forward* is a closed-loop forecast (10 inputs, 10 leads, no_grad).

Configurations of ours (``--variants``):

``fp32``            plain fp32 (NCHW);
``bf16``            ``torch.autocast`` bf16 (:mod:`nowcast.precision`), where the CPU has bf16 units;
``fp32-cl``         fp32, channels-last memory format;
``fp32-compile``    fp32, ``torch.compile`` of the recurrent step (compile time reported apart).

For each, achieved GFLOP/s (FLOPs counted by ``torch.utils.flop_counter`` on
one iteration, so both implementations are counted the same way) and the
fraction of the core's peak (a 1024^3 matmul in the same precision, same
threads, same run). With ``--reference DIR`` (a checkout of
github:thuml/transferable-memory outside the project, e.g.
``git --git-dir=/work/.mirror/thuml+transferable-memory/repo archive HEAD | tar -x -C /tmp/tmu-ref``)
the authors' ``model_adaptive.Model.train`` step (one step; their script
makes a second, time-reversed one) and their test forward are timed in the
same run, alternating with ours, and every ratio is taken within the run.

Usage::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/model_speed.py --threads 1 --reference /tmp/tmu-ref

On a GPU (``--device cuda``; the reference stays a CPU program) the same
step is timed with the device synchronised around it, and the peak is an
8192^3 matmul on the card. ``--frame-size 512 --frames 16 --inputs 4
--batch 1 --sources 4`` is a forecast's network work on a 512x512 region
(4 inputs, 12 leads; the shipped target has four sources).

Set ``OMP_WAIT_POLICY=PASSIVE`` on a machine shared with other jobs: with
the default (spinning) policy two OpenMP threads competing with another
process for two cores can be 100x slower on small element-wise kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger("benchmarks.model_speed")

VARIANTS = ("fp32", "bf16", "fp32-cl", "fp32-compile")


def build(layers: int, hidden: int, n_sources: int, channels_last: bool = False, device: str = "cpu"):
    from nowcast.models.predictor import Predictor
    from nowcast.models.tmu import MemoryBank

    torch.manual_seed(0)
    sources = [Predictor(layers, hidden, 5, 4) for _ in range(n_sources)]
    bank = MemoryBank(sources)
    target = Predictor(layers, hidden, 5, 4, source_channels=bank.source_channels)
    if channels_last:
        target = target.to(memory_format=torch.channels_last)
        bank = bank.to(memory_format=torch.channels_last)
    return target.to(device), bank.to(device)


def _cast(variant: str, device: str = "cpu"):
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if variant == "bf16" else contextlib.nullcontext()


class Ours:
    """One configuration of the project's predictor: a train step and a closed-loop forward."""

    def __init__(self, layers: int, hidden: int, n_sources: int, variant: str, batch: torch.Tensor,
                 inputs: int = 10) -> None:
        self.variant = variant
        self.device = str(batch.device)
        self.target, self.bank = build(layers, hidden, n_sources, channels_last=variant == "fp32-cl", device=self.device)
        self.batch = batch
        self.inputs = inputs
        self.opt = torch.optim.Adam(self.target.parameters(), lr=3e-4)
        self.gen = torch.Generator().manual_seed(0)
        self.compile_seconds = 0.0
        if variant == "fp32-compile":
            t0 = time.perf_counter()
            self.target.step = torch.compile(self.target.step, dynamic=False)
            self.train_step()
            self.forward()
            self.compile_seconds = time.perf_counter() - t0

    def train_step(self) -> None:
        from nowcast.models.predictor import fold

        batch = self.batch
        n_in, n_out = self.inputs, batch.shape[1] - self.inputs
        steps = n_in + n_out - 1
        mask = (torch.rand((batch.shape[0], n_out - 1), generator=self.gen) < 0.5).float().to(batch.device)
        with _cast(self.variant, self.device):
            out = self.target(batch, n_in, n_out, teacher_mask=mask)
            mems = self.bank(fold(batch[:, :steps], 4)) if self.bank.n_sources else []
        loss = F.mse_loss(out.predictions.float(), batch[:, 1 : steps + 1])
        if mems:
            loss = loss + sum(F.mse_loss(d.float(), m.float()) for d, m in zip(out.distilled, mems)) / len(mems)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    @torch.no_grad()
    def forward(self) -> None:
        self.target.eval()
        with _cast(self.variant, self.device):
            self.target.forecast(self.batch[:, : self.inputs], self.batch.shape[1] - self.inputs)
        self.target.train()


class Reference:
    """The authors' TMU (``core/models/model_adaptive.py``) driven like their run.py, one train step."""

    def __init__(self, root: Path, layers: int, hidden: int, batch: torch.Tensor) -> None:
        sys.path.insert(0, str(root))
        from core.models import model_adaptive  # noqa: PLC0415 - a checkout outside the project

        B, T, _, H, W = batch.shape
        p = 4
        self.configs = SimpleNamespace(
            num_hidden=",".join([str(hidden)] * layers), model_name="adaptive_model", device="cpu", lr=1e-3,
            patch_size=p, img_channel=1, img_width=W, filter_size=5, stride=1, layer_norm=1,
            total_length=T, input_length=10)
        torch.manual_seed(0)
        self.model = model_adaptive.Model(self.configs)
        # run.py's reshape_patch: (B, T, H, W, 1) -> (B, T, H/p, W/p, p*p)
        x = batch[:, :, 0].numpy().reshape(B, T, H // p, p, W // p, p).transpose(0, 1, 2, 4, 3, 5)
        self.frames = np.ascontiguousarray(x.reshape(B, T, H // p, W // p, p * p))
        rng = np.random.default_rng(0)
        self.mask = (rng.random((B, T - 10 - 1, 1, 1, 1)) < 0.5) * np.ones((1, 1, H // p, W // p, p * p))
        self.zero_mask = np.zeros_like(self.mask)

    def train_step(self) -> None:
        with contextlib.redirect_stdout(None):
            self.model.train(self.frames, self.mask, 1)

    def forward(self) -> None:
        self.model.test(self.frames, self.zero_mask)


def flops(fn) -> float:
    """FLOPs of one call, counted by torch's dispatcher (convolutions, matmuls, and their backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def core_peak_gflops(dtype: torch.dtype, device: str = "cpu") -> float:
    """Achieved GFLOP/s of an n^3 matmul (best of 5): the practical peak of the core(s) or card in ``dtype``.

    n is 1024 on a CPU and 8192 on a GPU, where a smaller product cannot fill the card.
    """
    n = 8192 if torch.device(device).type == "cuda" else 1024
    a = torch.rand(n, n, device=device).to(dtype)
    b = torch.rand(n, n, device=device).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    return 2 * n**3 / best / 1e9


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(fn) -> float:
    """Wall time of ``fn()``, the GPU's queued work included (synchronised before and after)."""
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["2x32", "4x64"], help="LAYERSxHIDDEN, e.g. 2x32 4x64")
    parser.add_argument("--iterations", type=int, default=3, help="Timed repetitions (after one warm-up), alternating.")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--sources", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--frame-size", type=int, default=64, help="Frame side in cells (64: the training patch).")
    parser.add_argument("--inputs", type=int, default=10, help="Input frames; the rest of --frames are leads.")
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16", "fp32-cl"], choices=VARIANTS)
    parser.add_argument("--reference", type=Path, default=None,
                        help="Checkout of github:thuml/transferable-memory to time side by side (never inside the project).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    from nowcast.precision import bf16_supported

    variants = [v for v in args.variants if v != "bf16" or bf16_supported(args.device)]
    peak = {"fp32": core_peak_gflops(torch.float32, args.device)}
    if "bf16" in variants:
        peak["bf16"] = core_peak_gflops(torch.bfloat16, args.device)
    where = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else f"{args.threads} thread(s)"
    log.info("peak (matmul, %s): %s", where, ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()))
    S = args.frame_size
    batch = torch.rand(args.batch, args.frames, 1, S, S, device=args.device)
    rows = []
    for size in args.sizes:
        layers, hidden = (int(v) for v in size.lower().split("x"))
        runners = {v: Ours(layers, hidden, args.sources, v, batch, args.inputs) for v in variants}
        if args.reference is not None and args.device == "cpu":
            runners["reference"] = Reference(args.reference, layers, hidden, batch)
        times: dict[str, dict[str, list[float]]] = {k: {"train": [], "forward": []} for k in runners}
        work = {k: {"train": flops(r.train_step), "forward": flops(r.forward)} for k, r in runners.items()}
        for r in runners.values():  # warm-up
            r.train_step()
            r.forward()
        for _ in range(args.iterations):  # alternate, so a busy machine slows all alike
            for k, r in runners.items():
                times[k]["train"].append(_timed(r.train_step))
                times[k]["forward"].append(_timed(r.forward))
        for k, r in runners.items():
            tr, fw = statistics.median(times[k]["train"]), statistics.median(times[k]["forward"])
            pk = peak["bf16" if k == "bf16" else "fp32"]
            rows.append({"size": f"{layers}x{hidden}", "config": k, "train_s": tr, "forward_s": fw,
                         "train_gflops": work[k]["train"] / tr / 1e9, "forward_gflops": work[k]["forward"] / fw / 1e9,
                         "peak": pk, "compile_s": getattr(r, "compile_seconds", 0.0)})
            log.info("%s %s: %.3f s/iter training, %.3f s forward", size, k, tr, fw)
    print(f"\n{S}x{S}, p=4, batch {args.batch}, {args.frames} frames ({args.inputs} inputs), {args.sources} sources, "
          f"{where}, torch {torch.__version__}; peak " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()) + " GFLOP/s\n")
    print("| L×C | config | train s/it | GFLOP/s (% peak) | vs reference | forward s | GFLOP/s (% peak) | vs reference |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    ref = {r["size"]: r for r in rows if r["config"] == "reference"}
    for r in rows:
        base = ref.get(r["size"])
        vs_t = f"{base['train_s'] / r['train_s']:.2f}×" if base else "–"
        vs_f = f"{base['forward_s'] / r['forward_s']:.2f}×" if base else "–"
        note = f" (+{r['compile_s']:.0f} s compile)" if r["compile_s"] else ""
        print(f"| {r['size']} | {r['config']}{note} | {r['train_s']:.3f} | {r['train_gflops']:.0f} ({100 * r['train_gflops'] / r['peak']:.0f} %) | "
              f"{vs_t} | {r['forward_s']:.3f} | {r['forward_gflops']:.0f} ({100 * r['forward_gflops'] / r['peak']:.0f} %) | {vs_f} |")


if __name__ == "__main__":
    main()
