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

With ``--reference`` a model without transferable memory (the scratch arm)
is the control: a least-squares 1x1 map from *its* bottom memory to each
source's, fitted on the windows of one regime (``--fit-regime``, the
archive's) and scored on every regime's windows, says how much of the
sources' memory any memory of the same frames already holds
(``reference_window``). ``--source-layer top`` maps it onto the sources' *top*
layer instead (``reference_top_window``, scaled by that layer's variance over
the windows), which the paper's TMU does not transfer: where a source's
knowledge of a regime lies, if not in its bottom memory. (For a TMU that
distils the top layer itself, ``tmu.layer: top``, that is ``reference_window``,
on the distillation errors' scale.) ``--reference-layer top`` reads the
reference's own top memory instead of its bottom one (e.g. a finetuned arm: how
much of its source's top memory it kept).

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
    """The regime name of every sequence of a simulated store, and every name the store defines, by flag value.

    Names come from the CF ``flag_values`` / ``flag_meanings`` of its ``regime`` variable.
    """
    import xarray as xr

    from pipelines.simulate import regime_flags

    with xr.open_zarr(store) as ds:
        if "regime" not in ds:
            raise SystemExit(f"{store}: no 'regime' variable (simulated with regimes, pipelines.simulate)")
        flags = np.asarray(ds["regime"].values, dtype=np.int64)
        try:
            lookup = regime_flags(ds["regime"])
        except ValueError as exc:
            raise SystemExit(f"{store}: {exc}") from None
    if set(np.unique(flags)) - set(lookup):
        raise SystemExit(f"{store}: regime flags without a name: {sorted(set(np.unique(flags)) - set(lookup))}")
    return np.array([lookup[int(f)] for f in flags]), [lookup[v] for v in sorted(lookup)]


def relative_errors(distilled: list, memories: list, live: list, input_frames: int) -> dict[str, np.ndarray]:
    """Per sample and source, the squared error of each part, and the per-source sum of squares for the scale.

    All tensors ``(B, S, C, h, w)``; ``live`` covers the same steps. Returns
    ``{part: (B, N) mean squared error}`` plus ``"moments"``: ``(N, S, 3)``
    count, sum and sum of squares of each source's memory (true frames) per
    step, from which the caller forms one variance per source over everything
    measured, and the share of it left around each step's mean (what a
    distiller that knew only the step would leave, a reference for the errors).
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
        per_step = m.transpose(0, 1).reshape(m.shape[1], -1)
        moments.append(torch.stack([torch.full((m.shape[1],), float(per_step.shape[1]), dtype=torch.float64),
                                    per_step.sum(dim=1), (per_step * per_step).sum(dim=1)], dim=1).numpy())
    result = {p: torch.stack(v, dim=1).numpy() for p, v in out.items()}
    result["moments"] = np.array(moments)
    return result


def layer_memories(model, frames, input_frames: int, output_frames: int, layer: int = 0):
    """``(B, S, C, h, w)``: a plain model's memory of one layer (0: the bottom, -1: the top) after every step of its closed-loop run."""
    import torch

    from nowcast.models.tmu import TMUCell

    cell = model.cells[layer]
    if any(isinstance(c, TMUCell) and c.n_sources for c in model.cells):
        raise SystemExit("the reference must be a model without transferable memory (e.g. the scratch arm)")
    seen = []
    handle = cell.register_forward_hook(lambda module, inputs, output: seen.append(output[1]))
    try:
        model(frames, input_frames, output_frames)
    finally:
        handle.remove()
    return torch.stack(seen, dim=1)


def linear_reference(own: list, memories: list, fit: np.ndarray) -> np.ndarray:
    """Per sample and source, the squared error of a least-squares 1x1 map (with bias) from ``own`` to each memory.

    ``own`` and every source's ``memories``: window steps only, ``(B, S, C, h,
    w)`` per batch, batches in a list. The map is fitted on the samples where
    ``fit`` is true and applied to all. Returns ``(samples, N)``.
    """
    def cells(t):  # (B, S, C, h, w) -> (B, S*h*w, C)
        b, s, c, h, w = t.shape
        return t.permute(0, 1, 3, 4, 2).reshape(b, s * h * w, c).double().numpy()

    x = np.concatenate([cells(o) for o in own])
    x = np.concatenate([x, np.ones(x.shape[:2] + (1,))], axis=2)
    out = []
    for n in range(len(memories[0])):
        y = np.concatenate([cells(m[n]) for m in memories])
        coef, *_ = np.linalg.lstsq(x[fit].reshape(-1, x.shape[2]), y[fit].reshape(-1, y.shape[2]), rcond=None)
        out.append(((x @ coef - y) ** 2).mean(axis=(1, 2)))
    return np.stack(out, axis=1)


def measure(checkpoint: Path, store: Path | None = None, batch_size: int = 8, reference: Path | None = None,
            fit_regime: str = "stratiform", source_layer: str = "bottom", reference_layer: str = "bottom") -> dict:
    """Per regime and source, the relative distillation errors of one TMU checkpoint on a simulated store."""
    import torch

    from nowcast.models.predictor import fold
    from nowcast.models.tmu import layer_index
    from nowcast.models.zoo import load_checkpoint
    from nowcast.training import ZarrSequences, load_sources, sequences_path

    ckpt = load_checkpoint(checkpoint)
    config = ckpt.config
    if config.tmu is None or not ckpt.source_channels:
        raise SystemExit(f"{checkpoint}: not a TMU target (no transferable memory)")
    model = ckpt.build_model()
    bank, _ = load_sources(config)
    store = store or sequences_path(config, "val")
    names_of, names = regimes_of(store)
    sequences = ZarrSequences(store, config)
    n_in, n_out, p = config.data.input_frames, config.data.output_frames, config.architecture.patch_size
    steps = n_in + n_out - 1
    parts: dict[str, list] = {k: [] for k in PARTS}
    moments = np.zeros((len(config.tmu.sources), n_in + n_out - 1, 3))
    control = load_checkpoint(reference).build_model() if reference else None
    if control is not None and fit_regime not in names:
        raise SystemExit(f"{store}: no regime {fit_regime!r} to fit the reference on; regimes: {', '.join(names)}")
    # the reference is scaled as the distillation errors where it maps onto the memory the bank distils
    reference_key = "reference_window" if source_layer == bank.layer else f"reference_{source_layer}_window"
    own, windows = [], []
    with torch.no_grad():
        for lo in range(0, len(names_of), batch_size):
            item = sequences.sequence_batch(np.arange(lo, min(lo + batch_size, len(names_of))))
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
            if control is not None:
                own.append(layer_memories(control, frames, n_in, n_out, layer_index(reference_layer))[:, :n_in])
                windows.append([m[:, :n_in] for m in truth] if source_layer == bank.layer else
                               [layer_memories(src, frames, n_in, n_out, layer_index(source_layer))[:, :n_in]
                                for src in bank.sources])
    count, s1, s2 = (moments[..., k].sum(axis=1) for k in range(3))
    variance = (s2 - s1 * s1 / count) / np.maximum(count - 1, 1)
    around_steps = (moments[..., 2] - moments[..., 1] ** 2 / moments[..., 0]).sum(axis=1) / np.maximum(count - 1, 1)
    merged = {k: np.concatenate(v) / variance for k, v in parts.items()}  # (sequences, N)
    if control is not None:
        errors = linear_reference(own, windows, names_of == fit_regime)
        if reference_key == "reference_window":
            merged[reference_key] = errors / variance
        else:  # another layer's memory: scaled by its own variance over the windows
            mapped = [np.concatenate([w[n].double().numpy().ravel() for w in windows]) for n in range(len(windows[0]))]
            merged[reference_key] = errors / np.array([m.var(ddof=1) for m in mapped])
    result = {"checkpoint": str(checkpoint), "store": str(store), "sources": list(config.tmu.sources),
              "variance": variance.tolist(), "step_mean_reference": (around_steps / variance).tolist(), "regimes": {}}
    if control is not None:
        result["reference"] = {"checkpoint": str(reference), "fit_regime": fit_regime, "source_layer": source_layer,
                               "reference_layer": reference_layer}
    for name in names:
        sel = names_of == name
        if not sel.any():
            continue
        result["regimes"][name] = {"sequences": int(sel.sum()),
                                   **{k: merged[k][sel].mean(axis=0).tolist() for k in merged}}
        log.info("%s %s (%d): leads %s", checkpoint.name, name, int(sel.sum()),
                 ", ".join(f"{e:.3f}" for e in merged["leads"][sel].mean(axis=0)))
    return result


def table(results: list[dict], part: str) -> str:
    """Markdown: one row per regime, ``part``'s relative error per source (mean ± half range over checkpoints)."""
    from benchmarks.tmu_gates import per_source_table

    first = results[0]["regimes"]
    return per_source_table(results, "regimes", part, f"regime ({part})",
                            lambda name: f"{name} ({first[name]['sequences']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--store", type=Path, default=None,
                        help="A simulated store with regimes (default: the model config's validation store).")
    parser.add_argument("--reference", type=Path, nargs="+", default=None,
                        help="One model without transferable memory per checkpoint (e.g. the scratch arm of the same seed).")
    parser.add_argument("--fit-regime", default="stratiform", help="The regime the reference's linear map is fitted on.")
    parser.add_argument("--source-layer", choices=("bottom", "top"), default="bottom",
                        help="The sources' layer the reference is mapped onto (the TMU transfers the bottom one).")
    parser.add_argument("--reference-layer", choices=("bottom", "top"), default="bottom",
                        help="The reference's own layer whose memory is mapped.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    if args.reference and len(args.reference) != len(args.checkpoints):
        raise SystemExit(f"{len(args.reference)} references for {len(args.checkpoints)} checkpoints: give one each")
    references = args.reference or [None] * len(args.checkpoints)
    results = [measure(c, args.store, reference=r, fit_regime=args.fit_regime, source_layer=args.source_layer,
                       reference_layer=args.reference_layer) for c, r in zip(args.checkpoints, references)]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    for part in PARTS:
        print(table(results, part))
        print()
    for part in sorted({k for r in results for k in next(iter(r["regimes"].values())) if k.startswith("reference")}):
        print(table(results, part))
        print()
    reference = np.array([r["step_mean_reference"] for r in results]).mean(axis=0)
    print("reference, each step's mean memory over the store: " + ", ".join(
        f"{Path(s).stem} {v:.3f}" for s, v in zip(results[0]["sources"], reference)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
