"""How much of the window's trend a trend-gated network continues, per test set (issue #8, thirty-seventh round).

Why: with the trend gate (``architecture.trend_gate``) every arm of the
radar study learns growth, and the TMU arm is the steadiest: one seed of
scratch and of finetuning decayed the rigidly moving field's heavier rain,
the TMU's did not. The gate adds ``gate x lead x rate`` to the change, with
``rate`` the window's smoothed Lagrangian trend
(:func:`nowcast.models.predictor.trend_rate`), so how far a network opens
it where the window shows a trend says whether that is where it differs. This
measures, while the network forecasts each test sequence, per lead:

* ``share``: ``sum(gate * rate**2) / sum(rate**2)`` over every cell, the
  part of the window's trend continued, weighted where the trend is large
  (1: the whole trend, 0: none; a negative share reverses it);
* ``gate_wet``: the mean gate over cells with a trend (``rate != 0``).

Nothing of the forecast changes: the gate is read by a hook on the head,
the rate by wrapping the function the network calls (tested).

Usage::

    python benchmarks/trend_gate_opening.py models/runs/study/swiss-south-tmu-gate-it1000-s{0,1,2}.pt \\
        --test data/sim/fresh-s33-f20/swiss-south-rigid-64-s33.zarr --history 8 --json benchmarks/out/v37/opening.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("trend_gate_opening")


class TrendGateRecorder:
    """Reads the gate (head output) and the rate (``trend_rate``) of a gated :class:`~nowcast.models.predictor.Predictor`.

    Sums per lead over everything recorded since :meth:`reset`; one
    :meth:`sequence` context per forecast, so the steps of the inputs (where
    the gate is not applied) are told from the leads'.
    """

    def __init__(self, model, leads: int) -> None:
        if not getattr(model, "trend_gate", False):
            raise SystemExit("the model has no trend gate (architecture.trend_gate)")
        self.model, self.leads = model, leads
        self.outputs: list = []
        self.rates: list = []
        self.handle = model.head.register_forward_hook(lambda module, inputs, output: self.outputs.append(output.detach()))
        self.reset()

    def reset(self) -> None:
        self.weighted = np.zeros(self.leads)
        self.energy = np.zeros(self.leads)
        self.gate_sum = np.zeros(self.leads)
        self.wet = np.zeros(self.leads)

    @contextlib.contextmanager
    def sequence(self) -> Iterator[None]:
        """Record one forecast: wrap the rate function, then add this forecast's leads to the sums."""
        from nowcast.models import predictor

        original = predictor.trend_rate

        def recorded(*args, **kwargs):
            rate = original(*args, **kwargs)
            self.rates.append(rate.detach())
            return rate

        self.outputs.clear()
        self.rates.clear()
        predictor.trend_rate = recorded
        try:
            yield
        finally:
            predictor.trend_rate = original
        self._add()

    def _add(self) -> None:
        from nowcast.models.predictor import fold

        if len(self.rates) != 1 or len(self.outputs) < self.leads:
            raise ValueError(f"{len(self.rates)} rates and {len(self.outputs)} head outputs for one forecast")
        rate = fold(self.rates[0][:, None], self.model.patch_size)[:, 0].double()  # (B, maps, h, w), as the gate is
        r2 = rate * rate
        trend = (rate != 0).double()
        energy, cells = float(r2.sum()), float(trend.sum())  # the same for every lead: one rate per forecast
        for k, out in enumerate(self.outputs[-self.leads:]):  # the last steps: the leads
            gate = self.model.split_trend_gate(out)[1].double()
            self.weighted[k] += float((gate * r2).sum())
            self.energy[k] += energy
            self.gate_sum[k] += float((gate * trend).sum())
            self.wet[k] += cells

    def result(self) -> dict:
        """``share`` and ``gate_wet`` per lead (NaN where no cell had a trend)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"share": (self.weighted / self.energy).tolist(), "gate_wet": (self.gate_sum / self.wet).tolist()}

    def close(self) -> None:
        self.handle.remove()


def measure(checkpoint: Path, stores: list[Path], history: int = 4, input_frames: int = 4, leads: int = 12,
            sequences: int | None = None) -> dict:
    """Per store, the checkpoint's trend share and wet-cell gate per lead, from the newest ``input_frames``."""
    from benchmarks.radar_transfer import load_test
    from nowcast.models.zoo import load_forecaster

    forecaster = load_forecaster(checkpoint)
    recorder = TrendGateRecorder(forecaster.model, leads)
    out = {"checkpoint": str(checkpoint), "sets": {}}
    try:
        for store in stores:
            seqs, _ = load_test(store, history, leads)
            seqs = seqs[:sequences] if sequences else seqs
            recorder.reset()
            for seq in seqs:
                with recorder.sequence():
                    forecaster.predict(seq[history - input_frames:history], leads)
            out["sets"][store.stem] = {**recorder.result(), "sequences": len(seqs)}
            share = np.nanmean(out["sets"][store.stem]["share"])
            log.info("%s on %s: trend share over the hour %.3f", checkpoint.name, store.stem, share)
    finally:
        recorder.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--test", type=Path, nargs="+", required=True)
    parser.add_argument("--history", type=int, default=4, help="Frames before the analysis in each test sequence.")
    parser.add_argument("--sequences", type=int, default=None, help="Only the first N sequences of each store.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    results = [measure(c, args.test, args.history, sequences=args.sequences) for c in args.checkpoints]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    lines = ["| checkpoint | " + " | ".join(Path(s).stem for s in args.test) + " |", "| --- |" + " ---: |" * len(args.test)]
    for r in results:
        cells = [f"{np.nanmean(r['sets'][Path(s).stem]['share']):.3f} ({np.nanmean(r['sets'][Path(s).stem]['gate_wet']):.3f})"
                 for s in args.test]
        lines.append(f"| {Path(r['checkpoint']).stem} | " + " | ".join(cells) + " |")
    sys.stdout.write("trend share over the hour (mean gate where the window has a trend)\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
