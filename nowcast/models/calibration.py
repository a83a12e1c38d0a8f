"""Change weights: how much of a Lagrangian network's growth and decay a forecast applies, per lead.

Why: a Lagrangian forecaster (:mod:`nowcast.models.lagrangian`) is
extrapolation plus a learned change. Where the network knows something (a
trend its window shows, heavy rain that extrapolation's interpolation
flattens) the change adds skill; where it does not, the same change is noise
on top of extrapolation, and on the held-out sets that noise cost up to 0.02
CSI at some leads (docs/benchmarks.md, "Skill, ninth round"). Post-processing
a forecast model against verification is the field's usual answer (model
output statistics; STEPS blends its components with skill-dependent weights).
Here the post-processing is the smallest that can tell the two apart: a
weight per lead on the network's *growth* (positive change) and one on its
*decay* (negative change), chosen on validation sets the network never saw
and stored in the checkpoint (``change_weights``). Weight 1 is the network as
trained, 0 is extrapolation at that lead, values above 1 trust it more than
training did. Measured first (2026-11-27, the shipped model on the four
validation sets): its decay of light rain is what costs CSI at 1 mm/h on the
rigidly moving field, its growth is what gains CSI at 5 mm/h on the growth
set; one weight for both cannot keep the one and drop the other.

The rule (:func:`choose_weights`), the one every shipped setting of this model
was chosen by (``benchmarks/bias_selection.py``), fixed before the test sets
were scored: each ``(growth, decay)`` pair, the same at every lead (a weight
that changed from lead to lead would make cores pulse between the frames of
an animation), is a candidate; its *worst* per-lead CSI difference from
extrapolation at 1 and at 5 mm/h over all validation sets is its score; the
largest wins, pairs within :data:`TIE` of it are tied and the tie goes to the
larger mean CSI at 5 mm/h. The pair ``(0, 0)`` is not a candidate: it is
extrapolation, which a region uses by default already; the network's own
pair ``(1, 1)`` is one. The shipped model (``swiss-south-tmu``) takes the
chosen weights if the rule chooses any pair but ``(1, 1)``; its test scores
are measured after that (``benchmarks/change_calibration.py``). Result
(2026-11-27): growth x0.25, decay x0; on the test sets the worst lead went
from -0.018 to -0.006 and the growth set's gain at 5 mm/h from +0.126 to
+0.030 (docs/benchmarks.md, "Skill, twelfth round").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.errors import CheckpointError

log = logging.getLogger(__name__)

#: Weights tried for growth and for decay (every pair of them, the same at every lead).
GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
#: CSI thresholds (mm/h) the rule compares at.
THRESHOLDS: tuple[float, ...] = (1.0, 5.0)
#: Candidates whose worst-lead difference is this close to the best one's are tied (every selection rule's).
TIE = 0.005
#: Largest weight a checkpoint may carry: beyond it a "calibration" is an extrapolation of the network.
MAX_WEIGHT = 4.0


@dataclass(frozen=True)
class ChangeWeights:
    """Per-lead weights on a Lagrangian network's growth and decay (normalised change > 0 and < 0).

    Leads beyond the calibrated ones take the last lead's weights (a
    forecast may run longer than its calibration).
    """

    growth: tuple[float, ...]
    decay: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.growth) != len(self.decay) or not self.growth:
            raise ValueError(f"change weights need one growth and one decay weight per lead, got "
                             f"{len(self.growth)} and {len(self.decay)}")
        values = np.asarray(self.growth + self.decay, dtype=np.float64)
        if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > MAX_WEIGHT:
            raise ValueError(f"change weights must lie in [0, {MAX_WEIGHT:g}], got growth {list(self.growth)}, "
                             f"decay {list(self.decay)}")

    @classmethod
    def constant(cls, growth: float, decay: float, leads: int) -> ChangeWeights:
        """The same pair at every one of ``leads`` leads."""
        return cls((float(growth),) * int(leads), (float(decay),) * int(leads))

    def per_lead(self, leads: int) -> tuple[np.ndarray, np.ndarray]:
        """``(growth, decay)`` arrays of length ``leads`` (the last weight repeated past the calibrated leads)."""
        idx = np.minimum(np.arange(int(leads)), len(self.growth) - 1)
        return np.asarray(self.growth, dtype=np.float64)[idx], np.asarray(self.decay, dtype=np.float64)[idx]

    def apply(self, change: np.ndarray) -> np.ndarray:
        """Weigh a ``(leads, h, w)`` change: growth times its lead's growth weight, decay times its decay weight."""
        change = np.asarray(change)
        growth, decay = self.per_lead(change.shape[0])
        shape = (-1,) + (1,) * (change.ndim - 1)
        weights = np.where(change > 0, growth.reshape(shape), decay.reshape(shape))
        return (change * weights).astype(change.dtype, copy=False)

    def brief(self) -> str:
        """One line for a product or a listing: ``growth x0.25, decay x0`` (per lead if they differ)."""
        if len(set(self.growth)) == 1 and len(set(self.decay)) == 1:
            return f"network growth x{self.growth[0]:g}, decay x{self.decay[0]:g} at every lead"
        return (f"network growth x{'/'.join(f'{g:g}' for g in self.growth)}, "
                f"decay x{'/'.join(f'{d:g}' for d in self.decay)} per lead")

    def to_metadata(self, **provenance: Any) -> dict[str, Any]:
        """The checkpoint's ``change_weights`` entry: the weights and how they were chosen."""
        return {"growth": [float(g) for g in self.growth], "decay": [float(d) for d in self.decay], **provenance}

    @classmethod
    def from_metadata(cls, entry: Mapping[str, Any] | None, where: str | Path = "checkpoint") -> ChangeWeights | None:
        """The weights of a checkpoint's ``change_weights`` entry (``None``: none recorded).

        Raises
        ------
        CheckpointError
            An entry that is not a growth and a decay list of equal length with
            weights in ``[0, MAX_WEIGHT]``; the message names ``where``.
        """
        if entry is None:
            return None
        try:
            return cls(tuple(float(g) for g in entry["growth"]), tuple(float(d) for d in entry["decay"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: invalid change_weights: {exc}") from exc


#: ``scores[pair][set] -> {"csi@1": [...per lead], "csi@5": [...]}``, pair = ``(growth, decay)``.
GridScores = dict[tuple[float, float], dict[str, dict[str, list[float]]]]


def gains(scores: Mapping[str, Sequence[float]], reference: Mapping[str, Sequence[float]],
          thresholds: Sequence[float] = THRESHOLDS) -> np.ndarray:
    """``(thresholds, leads)`` CSI minus the reference's; NaN where a lead has no rain above a threshold."""
    return np.stack([np.asarray(scores[f"csi@{t:g}"], dtype=np.float64)
                     - np.asarray(reference[f"csi@{t:g}"], dtype=np.float64) for t in thresholds])


def summarise(by_set: Mapping[str, Mapping[str, Sequence[float]]],
              references: Mapping[str, Mapping[str, Sequence[float]]],
              thresholds: Sequence[float] = THRESHOLDS) -> dict[str, float]:
    """What the rule compares: ``worst`` per-lead CSI difference over sets and thresholds, mean ``csi5`` over sets.

    A lead with no rain above a threshold in a set (NaN CSI) has no difference.
    """
    diffs = np.concatenate([gains(by_set[s], references[s], thresholds).ravel() for s in references])
    diffs = diffs[np.isfinite(diffs)]
    heavy = [np.asarray(by_set[s]["csi@5"], dtype=np.float64) for s in references]
    heavy = [float(np.nanmean(c)) for c in heavy if np.isfinite(c).any()]
    return {"worst": float(diffs.min()) if diffs.size else 0.0, "csi5": float(np.mean(heavy)) if heavy else float("nan")}


def choose_best(scores: Mapping[Any, Mapping[str, float]], tie: float = TIE, slack: float = 0.0,
                order: Callable[[Any], float] | None = None) -> Any:
    """The selection rule every shipped setting of the swiss-south forecaster was chosen by.

    The candidate with the largest ``worst`` (worst per-lead CSI difference
    from extrapolation) wins; candidates within ``tie`` (+ ``slack``) of it are
    tied and the tie goes to the larger ``csi5`` (mean CSI at 5 mm/h), then to
    the larger ``order(key)`` if given, else to the first in ``scores``.
    Shared by :func:`choose_weights` and ``benchmarks/bias_selection.py``.
    """
    best = max(r["worst"] for r in scores.values())
    tied = [key for key, r in scores.items() if r["worst"] >= best - tie - slack]
    return max(tied, key=lambda key: (scores[key]["csi5"], order(key) if order else 0.0))


def choose_weights(grid_scores: GridScores, references: Mapping[str, Mapping[str, Sequence[float]]],
                   leads: int | None = None) -> tuple[ChangeWeights, dict[tuple[float, float], dict[str, float]]]:
    """The rule of the module docstring over ``grid_scores`` (pair ``(0, 0)`` left out).

    Parameters
    ----------
    grid_scores
        Per ``(growth, decay)`` pair and validation set, the per-lead CSI.
    references
        Per validation set, extrapolation's per-lead CSI on the same sequences.
    leads
        Leads the weights are written for (default: the scores' leads).

    Returns
    -------
    weights, summaries
        The chosen pair at every lead, and every candidate's :func:`summarise`.
    """
    summaries = {pair: summarise(by_set, references) for pair, by_set in grid_scores.items() if pair != (0.0, 0.0)}
    if not summaries:
        raise ValueError("no candidate pair: the grid holds only (0, 0), extrapolation itself")
    # a difference of exactly TIE ties (1e-9: float noise); equal CSI@5 goes to the pair closer to extrapolation
    chosen = choose_best(summaries, slack=1e-9, order=lambda pair: -sum(pair))
    if leads is None:
        first = next(iter(grid_scores[chosen].values()))
        leads = len(first["csi@1"])
    return ChangeWeights.constant(*chosen, leads), summaries


def score_grid(raw_changes: Callable[[np.ndarray, int], np.ndarray], normaliser, sequences: Mapping[str, np.ndarray],
               input_frames: int, leads: int, motion_method: str = "LK",
               pairs: Sequence[tuple[float, float]] | None = None) -> GridScores:
    """Per-lead scores of a Lagrangian forecast under every weight pair, on every validation set.

    The network and the motion run once per sequence; every pair then only
    weighs the stored change and advects it (:func:`nowcast.models.lagrangian.forecast`
    with the stored velocity), so the 49 pairs of :data:`GRID` cost about
    twice what the network costs once.

    Parameters
    ----------
    raw_changes
        The network's *unweighted* change, ``(x, leads) -> (leads, h, w)``
        (:meth:`nowcast.models.zoo.Forecaster._raw_changes`).
    sequences
        Per validation set, ``(n, input_frames + leads, ny, nx)`` mm/h.
    pairs
        ``(growth, decay)`` pairs to score (default: every pair of :data:`GRID`).
    """
    from nowcast.models import lagrangian
    from nowcast.models.skill import LeadScores
    from nowcast.motion import motion_field

    pairs = [(float(g), float(d)) for g, d in (pairs or [(g, d) for g in GRID for d in GRID])]
    weights = {pair: ChangeWeights.constant(*pair, leads) for pair in pairs}
    out: GridScores = {pair: {} for pair in pairs}
    for name, seqs in sequences.items():
        scores = {pair: LeadScores(leads) for pair in pairs}
        for i, seq in enumerate(seqs):
            window = np.asarray(seq[:input_frames], dtype=np.float32)
            truth = seq[input_frames : input_frames + leads]
            velocity = motion_field(np.nan_to_num(window, nan=0.0), motion_method)
            raw: list[np.ndarray] = []  # the network's change, computed by the first pair's forecast
            for pair in pairs:
                network = partial(_weighed_once, raw, raw_changes, weights[pair])
                forecast = lagrangian.forecast(window, leads, network, normaliser, motion_method=motion_method,
                                               velocity=velocity)
                scores[pair].add(forecast.astype(np.float32), truth)
            if (i + 1) % 16 == 0:
                log.info("%s: %d / %d sequences scored under %d weight pairs", name, i + 1, len(seqs), len(pairs))
        for pair in pairs:
            result = scores[pair].result()
            out[pair][name] = {f"csi@{t:g}": result[f"csi@{t:g}"] for t in THRESHOLDS}
    return out


def _weighed_once(raw: list[np.ndarray], raw_changes: Callable[[np.ndarray, int], np.ndarray], weights: ChangeWeights,
                  x: np.ndarray, leads: int) -> np.ndarray:
    """``weights`` on the network's change of ``x``, which is computed on the first call only and kept in ``raw``."""
    if not raw:
        raw.append(np.asarray(raw_changes(x, leads)))
    return weights.apply(raw[0])


def calibrate(forecaster, sequences: Mapping[str, np.ndarray], leads: int = 12,
              pairs: Sequence[tuple[float, float]] | None = None):
    """Choose a Lagrangian forecaster's change weights on validation ``sequences`` (:func:`choose_weights`).

    Returns
    -------
    weights, summaries, grid_scores, references
        The chosen :class:`ChangeWeights`, every candidate's worst-lead
        difference and mean CSI@5, every pair's scores and extrapolation's,
        per validation set.
    """
    from nowcast.baselines import extrapolation
    from nowcast.models.skill import score_method

    if not forecaster.lagrangian:
        raise ValueError(f"model {forecaster.config.name!r}: change weights are for Lagrangian models")
    n_in = int(forecaster.config.input_frames)
    references = {name: {f"csi@{t:g}": scores[f"csi@{t:g}"] for t in THRESHOLDS}
                  for name, scores in ((name, score_method(extrapolation, seqs, n_in, leads))
                                       for name, seqs in sequences.items())}
    grid = score_grid(forecaster._raw_changes, forecaster.normaliser, sequences, n_in, leads,
                      forecaster.config.motion.method, pairs)
    weights, summaries = choose_weights(grid, references, leads)
    return weights, summaries, grid, references
