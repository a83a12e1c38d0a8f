"""How well a TMU target's distillers reproduce each source's memory, per simulated regime.

Why: a TMU target forecasts without its sources: each distiller ``D_n``, a
1x1 convolution of the target's own memory, stands in for source ``n``
(``nowcast.models.tmu``; TMU.md "Inference needs no source"). The distillers
learn that only on the target's archive. Where the archive lacks a regime the
sources know (the stratiform archive of the thirty-second and thirty-fourth
rounds, asked to forecast growth), what the sources would make of a growing
scene can reach the forecast only if the distillers reproduce it there too.
This measures it, on the held-out validation store, whose sequences carry the
regime the simulator drew (stratiform, growth/decay, convective): every
sequence once, as simulated (no synthetic persistent or trend sample), in
the Lagrangian frame the model trains in.

Per source and regime, the distillation error the training objective
minimises, scaled as its ``variance`` form (``MSE(D_n, C_n) / Var(C_n)``,
``Var`` over every sequence and step of the store, so the regimes share one
scale; 1 means "explains nothing"), split into

* ``window``: the steps of the input window, where target and source read the
  same observed frames: what a distiller cannot express of the source;
* ``leads``: the forecast steps, against the source's memory of the *true*
  future frames (what training asked of the distillers; the target reads its
  own forecast there);
* ``live``: the forecast steps, against the source's memory of the frames the
  target reads (the observed window, then its own forecast): what a source run
  beside the forecast would hand over.

Usage::

    python benchmarks/tmu_memory.py models/runs/study/swiss-south-tmu-split-stratiform-ptf0-it1000-s{0,1,2}.pt \\
        --json benchmarks/out/radar_split/memory.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("tmu_memory")

PARTS = ("window", "leads", "live")


def regimes_of(store: Path) -> tuple[np.ndarray, list[str]]:
    """The regime flag of every sequence of a simulated store, and the flags' names (CF ``flag_meanings``)."""
    import xarray as xr

    with xr.open_zarr(store) as ds:
        if "regime" not in ds:
            raise SystemExit(f"{store}: no 'regime' variable (simulated with regimes, pipelines.simulate)")
        flags = np.asarray(ds["regime"].values, dtype=np.int64)
        names = str(ds["regime"].attrs.get("flag_meanings", "")).split()
        values = list(ds["regime"].attrs.get("flag_values", range(len(names))))
    if len(names) != len(values):
        raise SystemExit(f"{store}: regime flag_meanings and flag_values differ in length")
    lookup = {int(v): n for v, n in zip(values, names)}
    if set(np.unique(flags)) - set(lookup):
        raise SystemExit(f"{store}: regime flags without a name: {sorted(set(np.unique(flags)) - set(lookup))}")
    return flags, [lookup[int(f)] for f in sorted(lookup)]


def relative_errors(distilled: list, memories: list, live: list, input_frames: int) -> dict[str, np.ndarray]:
    """Per sample and source, the squared error of each part, and the per-source sum of squares for the scale.

    All tensors ``(B, S, C, h, w)``; ``live`` covers the same steps. Returns
    ``{part: (B, N) mean squared error}`` plus ``"moments"``: ``(N, 3)``
    count, sum and sum of squares of each source's memory (true frames), from
    which the caller forms one variance per source over everything measured.
    """
    import torch

    out: dict[str, list] = {p: [] for p in PARTS}
    moments = []
    w = input_frames  # steps 0 .. w-1 read observed frames (the last of them is the analysis)
    for d, m, lv in zip(distilled, memories, live):
        d, m, lv = d.double(), m.double(), lv.double()
        out["window"].append(((d[:, :w] - m[:, :w]) ** 2).mean(dim=(1, 2, 3, 4)))
        out["leads"].append(((d[:, w:] - m[:, w:]) ** 2).mean(dim=(1, 2, 3, 4)))
        out["live"].append(((d[:, w:] - lv[:, w:]) ** 2).mean(dim=(1, 2, 3, 4)))
        moments.append([float(m.numel()), float(m.sum()), float((m * m).sum())])
    result = {p: torch.stack(v, dim=1).numpy() for p, v in out.items()}
    result["moments"] = np.array(moments)
    return result


def measure(checkpoint: Path, store: Path | None = None, batch_size: int = 8) -> dict:
    """Per regime and source, the relative distillation errors of one TMU checkpoint on a simulated store."""
    import torch

    from nowcast.models.predictor import fold
    from nowcast.models.zoo import load_checkpoint
    from nowcast.training import ZarrSequences, load_sources, sequences_path

    ckpt = load_checkpoint(checkpoint)
    config = ckpt.config
    if config.tmu is None or not ckpt.source_channels:
        raise SystemExit(f"{checkpoint}: not a TMU target (no transferable memory)")
    model = ckpt.build_model()
    bank, _ = load_sources(config)
    store = store or sequences_path(config, "val")
    flags, names = regimes_of(store)
    sequences = ZarrSequences(store, config)
    n_in, n_out, p = config.data.input_frames, config.data.output_frames, config.architecture.patch_size
    steps = n_in + n_out - 1
    parts: dict[str, list] = {k: [] for k in PARTS}
    moments = np.zeros((len(config.tmu.sources), 3))
    with torch.no_grad():
        for lo in range(0, len(flags), batch_size):
            item = sequences.sequence_batch(np.arange(lo, min(lo + batch_size, len(flags))))
            frames = item[0] if isinstance(item, tuple) else item
            out = model(frames, n_in, n_out)  # closed loop after the window, as it forecasts
            truth = bank(fold(frames[:, :steps], p))
            # what the target reads: the observed window, then its own forecast of the previous step
            read = torch.cat([frames[:, :n_in], out.predictions[:, n_in - 1 : steps - 1]], dim=1)
            live = bank(fold(read, p))
            errs = relative_errors(out.distilled, truth, live, n_in)
            for k in PARTS:
                parts[k].append(errs[k])
            moments += errs["moments"]
    count, s1, s2 = moments[:, 0], moments[:, 1], moments[:, 2]
    variance = (s2 - s1 * s1 / count) / np.maximum(count - 1, 1)
    merged = {k: np.concatenate(v) / variance for k, v in parts.items()}  # (sequences, N)
    result = {"checkpoint": str(checkpoint), "store": str(store), "sources": list(config.tmu.sources),
              "variance": variance.tolist(), "regimes": {}}
    for code, name in enumerate(names):
        sel = flags == code
        if not sel.any():
            continue
        result["regimes"][name] = {"sequences": int(sel.sum()),
                                   **{k: merged[k][sel].mean(axis=0).tolist() for k in PARTS}}
        log.info("%s %s (%d): leads %s", checkpoint.name, name, int(sel.sum()),
                 ", ".join(f"{e:.3f}" for e in merged["leads"][sel].mean(axis=0)))
    return result


def table(results: list[dict], part: str) -> str:
    """Markdown: one row per regime, ``part``'s relative error per source (mean ± half range over checkpoints)."""
    sources = results[0]["sources"]
    if any(r["sources"] != sources for r in results):
        raise SystemExit("the checkpoints have different sources; measure them separately")
    lines = [f"| regime ({part}) | " + " | ".join(Path(s).stem for s in sources) + " |",
             "| --- |" + " ---: |" * len(sources)]
    for name in results[0]["regimes"]:
        e = np.array([r["regimes"][name][part] for r in results])
        cells = [f"{m:.3f}" + (f" ± {h:.3f}" if len(results) > 1 else "")
                 for m, h in zip(e.mean(0), 0.5 * (e.max(0) - e.min(0)))]
        lines.append(f"| {name} ({results[0]['regimes'][name]['sequences']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--store", type=Path, default=None,
                        help="A simulated store with regimes (default: the model config's validation store).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    results = [measure(c, args.store) for c in args.checkpoints]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    for part in PARTS:
        print(table(results, part))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
