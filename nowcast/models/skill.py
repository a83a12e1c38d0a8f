"""Held-out skill of a forecaster against pysteps extrapolation, carried in its checkpoint.

A forecaster's weights say nothing about whether it should be used. So the
pipeline that ships a model measures it on held-out sequences it never saw,
beside pysteps extrapolation on the same sequences, and stores the result in
the checkpoint's metadata (``heldout_skill``); ``nowcast forecast`` copies a
summary into every product it makes with that model, so a forecaster reading
the product knows how the model compared with extrapolation and on what data.

:class:`LeadScores` accumulates the field's scores per lead time over many
forecasts with pysteps' accumulators (a sequence with little rain weighs
little): CSI at several thresholds, FSS, MSE and MAE. The radar transfer
study (``benchmarks/radar_transfer.py``) uses the same class.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: CSI thresholds (mm/h) reported for every forecaster.
THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 5.0, 10.0)
#: FSS windows in pixels (2, 4, 16 km on a 2 km grid) at :data:`FSS_THRESHOLD`.
FSS_PIXELS: tuple[int, ...] = (1, 2, 8)
FSS_THRESHOLD = 1.0


class LeadScores:
    """CSI, FSS, MSE and MAE per lead time, accumulated over forecasts (pysteps).

    Pixels where either field is NaN (no coverage, unknown inflow) are not
    scored.
    """

    def __init__(self, leads: int, thresholds: Sequence[float] = THRESHOLDS, fss_pixels: Sequence[int] = FSS_PIXELS,
                 resolution_km: float = 2.0) -> None:
        import nowcast._pysteps  # noqa: F401
        from pysteps.verification.detcatscores import det_cat_fct_init
        from pysteps.verification.spatialscores import fss_init

        self.thresholds = tuple(thresholds)
        self.fss_pixels = tuple(fss_pixels)
        self.resolution_km = resolution_km
        self.cat = [[det_cat_fct_init(t) for t in self.thresholds] for _ in range(leads)]
        self.fss = [[fss_init(FSS_THRESHOLD, s) for s in self.fss_pixels] for _ in range(leads)]
        self.se = np.zeros(leads)
        self.ae = np.zeros(leads)
        self.n = np.zeros(leads)

    def add(self, pred: np.ndarray, obs: np.ndarray) -> None:
        """Add one forecast ``(leads, ny, nx)`` and its observation (mm/h)."""
        from pysteps.verification.detcatscores import det_cat_fct_accum
        from pysteps.verification.spatialscores import fss_accum

        for i in range(pred.shape[0]):
            ok = np.isfinite(pred[i]) & np.isfinite(obs[i])
            p, o = np.where(ok, pred[i], np.nan), np.where(ok, obs[i], np.nan)
            for c in self.cat[i]:
                det_cat_fct_accum(c, p[ok], o[ok])
            for f in self.fss[i]:
                fss_accum(f, p, o)
            self.se[i] += float(np.sum((p[ok] - o[ok]) ** 2))
            self.ae[i] += float(np.sum(np.abs(p[ok] - o[ok])))
            self.n[i] += int(ok.sum())

    def result(self) -> dict[str, list[float]]:
        """``{"csi@1": [...per lead], "fss@16km": [...], "mse": [...], "mae": [...]}``."""
        from pysteps.verification.detcatscores import det_cat_fct_compute
        from pysteps.verification.spatialscores import fss_compute

        out: dict[str, list[float]] = {}
        for j, t in enumerate(self.thresholds):
            out[f"csi@{t:g}"] = [float(det_cat_fct_compute(c[j], scores="CSI")["CSI"]) for c in self.cat]
        for k, s in enumerate(self.fss_pixels):
            out[f"fss@{self.resolution_km * s:g}km"] = [float(fss_compute(f[k])) for f in self.fss]
        out["mse"] = (self.se / np.maximum(self.n, 1)).tolist()
        out["mae"] = (self.ae / np.maximum(self.n, 1)).tolist()
        return out


def score_method(predict: Callable[[np.ndarray, int], np.ndarray], sequences: np.ndarray, input_frames: int,
                 leads: int) -> dict[str, list[float]]:
    """Scores of ``predict(window, leads)`` over test ``sequences`` ``(n, input_frames + leads, ny, nx)``."""
    scores = LeadScores(leads)
    for seq in sequences:
        scores.add(np.asarray(predict(seq[:input_frames], leads), dtype=np.float32), seq[input_frames : input_frames + leads])
    return scores.result()


def heldout_skill(forecaster, sequences: np.ndarray, test_set: str, provenance: str, leads: int,
                  timestep_minutes: int = 5) -> dict[str, Any]:
    """The model beside pysteps extrapolation on held-out sequences: what goes into the checkpoint.

    Returns
    -------
    dict
        ``test_set``, ``provenance``, ``sequences``, ``lead_minutes``, per
        score (``csi@1``, ``csi@5``, ``fss@16km``, ``mae``) the per-lead
        lists of ``model`` and ``extrapolation``, and ``no_worse_at_every_lead``
        (CSI at 1 and 5 mm/h, model >= extrapolation at every lead).
    """
    from nowcast.baselines import extrapolation

    n_in = int(forecaster.config.input_frames)
    model = score_method(forecaster.predict, sequences, n_in, leads)
    extrap = score_method(lambda w, n: extrapolation(w, n, timestep_minutes), sequences, n_in, leads)
    keys = ("csi@1", "csi@5", "fss@16km", "mae")
    no_worse = all(m >= e - 1e-9 for key in ("csi@1", "csi@5") for m, e in zip(model[key], extrap[key]))
    return {
        "test_set": test_set,
        "provenance": provenance,
        "sequences": int(len(sequences)),
        "lead_minutes": [timestep_minutes * (k + 1) for k in range(leads)],
        **{key: {"model": [round(v, 4) for v in model[key]], "extrapolation": [round(v, 4) for v in extrap[key]]} for key in keys},
        "no_worse_at_every_lead": bool(no_worse),
    }


def skill_summary(skill: dict[str, Any]) -> str:
    """One line for a product's attributes: mean CSI over the first hour, model vs extrapolation."""
    minutes = skill["lead_minutes"]
    hour = [i for i, m in enumerate(minutes) if m <= 60] or list(range(len(minutes)))
    parts = []
    for key, label in (("csi@1", "CSI 1 mm/h"), ("csi@5", "CSI 5 mm/h")):
        m = float(np.nanmean([skill[key]["model"][i] for i in hour]))
        e = float(np.nanmean([skill[key]["extrapolation"][i] for i in hour]))
        parts.append(f"{label} {m:.2f} vs {e:.2f}")
    verdict = "no worse than extrapolation at every lead" if skill["no_worse_at_every_lead"] else "worse than extrapolation at some leads"
    return (f"held-out skill over 0-{minutes[hour[-1]]} min, model vs pysteps extrapolation: {', '.join(parts)}; "
            f"{verdict} (test set {skill['test_set']}, {skill['sequences']} sequences, {skill['provenance']})")


def update_metadata(checkpoint: str | Path, **fields: Any) -> str:
    """Add or replace metadata fields of a checkpoint; returns the file's new SHA-256.

    The weights and their digest are unchanged; the file is rewritten
    atomically. Used to record what is measured after training (held-out
    skill) or corrected after it (the training data's provenance).
    """
    import torch

    from nowcast.models.zoo import _atomic_torch_save, load_checkpoint, sha256_of

    ckpt = load_checkpoint(checkpoint)
    metadata = dict(ckpt.metadata)
    metadata.update(json.loads(json.dumps(fields)))
    obj = torch.load(ckpt.path, map_location="cpu", weights_only=True)
    obj["metadata"] = metadata
    _atomic_torch_save(obj, ckpt.path)
    return sha256_of(ckpt.path)


def record_skill(checkpoint: str | Path, skill: dict[str, Any]) -> str:
    """Store ``skill`` in a checkpoint's metadata (``heldout_skill``); returns the file's new SHA-256."""
    digest = update_metadata(checkpoint, heldout_skill=skill)
    log.info("%s: held-out skill recorded (%s); sha256 %s", checkpoint, skill_summary(skill), digest[:12])
    return digest
