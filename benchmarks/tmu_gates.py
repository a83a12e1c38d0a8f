"""How much of each source's distilled memory a TMU target lets in, per test set.

Why: the thirty-fourth round found a TMU target with two specialist radar
sources at least as good as finetuning from the better one on rigidly moving
rain, where finetuning from the other lost 0.02-0.04 CSI@5. In the paper's
design the transfer gates ``T_n`` decide, per cell and step, how much of
source ``n``'s distilled memory ``P_n(D_n(C'))`` replaces the target's own
(:class:`nowcast.models.tmu.TMUCell`, convex variant). This measures them as
the target forecasts: the mean of ``sigmoid(T_n)`` over every layer with
transferable memory, every step (inputs and leads), cell and sequence, per
source, per test set. A gate that barely differs between sources, or between
sets, means the target does not choose among its sources by what it sees.
Beside it, the softmax of the gate pre-activations over sources (the split the
``competitive`` update uses; descriptive for the convex one) and the share of
cells and steps where one source takes more than half of it ("decisive").

Usage::

    python benchmarks/tmu_gates.py models/runs/study/swiss-south-tmu-split-stratiform-ptf0-it1000-s{0,1,2}.pt \\
        --test data/sim/swiss-south-growth-64.zarr data/sim/swiss-south-rigid-64.zarr --json benchmarks/out/gates.json
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

log = logging.getLogger("tmu_gates")


class GateRecorder:
    """Forward hooks on every TMU cell's gate normalisation: running sums of ``sigmoid(T_n)`` per source.

    The hook reads the gate tensor ``[i, f, o, g, T_1 .. T_N]`` (``(B, (4+N) C,
    H, W)``) that the cell computes anyway, so the forecast is the one the
    model makes without the recorder (tested).
    """

    def __init__(self, model) -> None:
        from nowcast.models.tmu import TMUCell

        self.cells = [m for m in model.modules() if isinstance(m, TMUCell) and m.n_sources]
        if not self.cells:
            raise SystemExit("the model has no transferable memory (not a TMU target)")
        sources = {cell.n_sources for cell in self.cells}
        if len(sources) != 1:
            raise SystemExit(f"TMU cells with different numbers of sources: {sorted(sources)}")
        self.n_sources = sources.pop()
        self.sums = np.zeros(self.n_sources)
        self.choice_sums = np.zeros(self.n_sources)
        self.decisive_sum = 0.0
        self.counts = 0
        self.handles = [cell.norm.register_forward_hook(self._hook(cell)) for cell in self.cells]

    def _hook(self, cell):
        C, N = cell.hidden, cell.n_sources

        def record(module, inputs, output) -> None:
            import torch

            with torch.no_grad():
                tau = output[:, 4 * C : (4 + N) * C].float()
                b, _, h, w = tau.shape
                tau = tau.reshape(b, N, C * h * w)
                self.sums += torch.sigmoid(tau).mean(dim=2).sum(dim=0).double().cpu().numpy()
                choice = torch.softmax(tau, dim=1)
                self.choice_sums += choice.mean(dim=2).sum(dim=0).double().cpu().numpy()
                self.decisive_sum += float((choice.max(dim=1).values > 0.5).float().mean(dim=1).sum())
                self.counts += b

        return record

    def means(self) -> np.ndarray:
        """Mean gate per source over everything recorded since the last :meth:`reset`."""
        if not self.counts:
            raise ValueError("no TMU step was recorded")
        return self.sums / self.counts

    def choice(self) -> tuple[np.ndarray, float]:
        """Mean softmax share per source, and the share of cells where one source takes more than half."""
        self.means()  # raises where nothing was recorded
        return self.choice_sums / self.counts, self.decisive_sum / self.counts

    def reset(self) -> None:
        self.sums[:] = 0.0
        self.choice_sums[:] = 0.0
        self.decisive_sum = 0.0
        self.counts = 0

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def measure(checkpoint: Path, stores: list[Path], sequences: int | None = None, input_frames: int = 4,
            leads: int = 12) -> dict:
    """Per store, the checkpoint's mean transfer gate per source while it forecasts each test sequence."""
    from benchmarks.radar_transfer import load_test
    from nowcast.models.zoo import load_forecaster

    forecaster = load_forecaster(checkpoint)
    config = forecaster.config
    names = list(config.tmu.sources) if config.tmu else []
    recorder = GateRecorder(forecaster.model)
    if len(names) != recorder.n_sources:
        raise SystemExit(f"{checkpoint}: {recorder.n_sources} gated sources, config names {len(names)}")
    out = {"checkpoint": str(checkpoint), "sources": names, "sets": {}}
    try:
        for store in stores:
            seqs, _ = load_test(store, input_frames, leads)
            seqs = seqs[:sequences] if sequences else seqs
            recorder.reset()
            for seq in seqs:
                forecaster.predict(seq[:input_frames], leads)
            choice, decisive = recorder.choice()
            out["sets"][store.stem] = {"gates": recorder.means().tolist(), "choice": choice.tolist(),
                                       "decisive": decisive, "sequences": len(seqs)}
            log.info("%s on %s: %s", checkpoint.name, store.stem,
                     ", ".join(f"{n} {g:.3f}" for n, g in zip(names, recorder.means())))
    finally:
        recorder.close()
    return out


def per_source_table(results: list[dict], groups: str, key: str, header: str, label=None) -> str:
    """Markdown: one row per entry of the results' ``groups``, its ``key`` per source (mean ± half range over checkpoints).

    Shared by this tool (rows: test sets) and ``benchmarks/tmu_memory.py``
    (rows: regimes); ``label`` names a row from its key.
    """
    sources = results[0]["sources"]
    if any(r["sources"] != sources for r in results):
        raise SystemExit("the checkpoints have different sources; measure them separately")
    lines = [f"| {header} | " + " | ".join(Path(s).stem for s in sources) + " |",
             "| --- |" + " ---: |" * len(sources)]
    for name in results[0][groups]:
        values = np.array([r[groups][name][key] for r in results])
        cells = [f"{m:.3f}" + (f" ± {h:.3f}" if len(results) > 1 else "")
                 for m, h in zip(values.mean(0), 0.5 * (values.max(0) - values.min(0)))]
        lines.append(f"| {label(name) if label else name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(results: list[dict], key: str = "gates") -> str:
    """Markdown: one row per test set, ``key`` (gates, choice) per source (mean ± half range over checkpoints)."""
    return per_source_table(results, "sets", key, "test set")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--test", type=Path, nargs="+", required=True)
    parser.add_argument("--sequences", type=int, default=None, help="Only the first N sequences of each store.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    results = [measure(c, args.test, args.sequences) for c in args.checkpoints]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    print(table(results))
    print()
    print(table(results, "choice"))
    print()
    print("decisive (one source > 1/2 of the softmax): " + ", ".join(
        f"{name} {np.mean([r['sets'][name]['decisive'] for r in results]):.3f}" for name in results[0]["sets"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
