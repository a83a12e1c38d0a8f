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
(2026-11-27, twelfth round): growth x0.25, decay x0; on the test sets the worst lead went
from -0.018 to -0.006 and the growth set's gain at 5 mm/h from +0.126 to
+0.030 (docs/benchmarks.md, "Skill, twelfth round").

Window trend (thirteenth round): a third weight, on the window's own
Lagrangian trend (:func:`window_trend`: the least-squares dB slope of every
wet pixel over the input window, weighted by the R² of that fit to the power
:data:`TREND_LINEARITY_POWER`, smoothed and bounded as the network's trend
gate reads it, :func:`nowcast.models.predictor.trend_rate`), continued with
the Lagrangian-trend baseline's damping (:data:`nowcast.baselines.TREND_DAMPING_STEPS`)
and added to the weighed network change. Why: on the validation sets that
R²-weighted trend alone kept 0.55 of the growth twin's CSI@5 (extrapolation
0.21) and lost at most 0.010 to extrapolation at any lead (tenth round),
while the network's growth, weighed to lose at most 0.007, keeps +0.03; the
trend is what the window shows steadily, the network's growth what it
learned, and a forecast may need both in different amounts. Rule, written
before it was run on any data: the candidates are every ``(growth, decay,
trend)`` triple of :data:`GRID` x :data:`GRID` x :data:`TREND_GRID` but
``(0, 0, 0)``, the same at every lead; :func:`choose_best` chooses as above
(ties to the larger mean CSI@5, then to the triple closer to extrapolation);
the shipped model is recalibrated by it and takes whatever it chooses, and the
test sets are scored after without a veto (the twelfth round's veto made its
test numbers the better of two test-scored models). Result (2026-11-27):
growth x0, decay x0.5, trend x0.25 (validation worst lead -0.0068, growth
twin CSI@5 +0.082 against the twelfth round's -0.0067 / +0.028); on the test
sets the growth set's gain at 5 mm/h rose to +0.086 and the worst lead fell to
-0.039 (another day, decay of heavy rain; docs/benchmarks.md, "Skill,
thirteenth round").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.baselines import trend_ramp
from nowcast.errors import CheckpointError

log = logging.getLogger(__name__)

#: Weights tried for growth and for decay (every pair of them, the same at every lead).
GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
#: Weights tried for the window's own trend (:func:`window_trend`), with every pair of :data:`GRID`.
TREND_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Power of the linear fit's R² that weights the window trend's slopes: the tenth round's choice on
#: the validation sets (worst lead -0.010 at power 4 against -0.064 unweighted; docs/benchmarks.md).
TREND_LINEARITY_POWER = 4.0
#: The network as trained: its whole change, no added trend.
NETWORK: tuple[float, float, float] = (1.0, 1.0, 0.0)
#: Extrapolation: no change at all (never a candidate).
EXTRAPOLATION: tuple[float, float, float] = (0.0, 0.0, 0.0)
#: CSI thresholds (mm/h) the rule compares at.
THRESHOLDS: tuple[float, ...] = (1.0, 5.0)
#: Candidates whose worst-lead difference is this close to the best one's are tied (every selection rule's).
TIE = 0.005
#: Largest weight a checkpoint may carry: beyond it a "calibration" is an extrapolation of the network.
MAX_WEIGHT = 4.0


@dataclass(frozen=True)
class ChangeWeights:
    """Per-lead weights on a Lagrangian network's growth and decay, and on the window's own trend.

    ``growth`` and ``decay`` weigh the network's normalised change where it is
    > 0 and < 0; ``trend`` weighs the window's R²-weighted Lagrangian trend
    (:func:`window_trend`) continued to each lead (:func:`trend_ramp`) and
    added to it (empty: no trend, as in checkpoints calibrated before the
    thirteenth round). Leads beyond the calibrated ones take the last lead's
    weights (a forecast may run longer than its calibration).
    """

    growth: tuple[float, ...]
    decay: tuple[float, ...]
    trend: tuple[float, ...] = ()
    trend_linearity_power: float = TREND_LINEARITY_POWER

    def __post_init__(self) -> None:
        if not self.trend:
            object.__setattr__(self, "trend", (0.0,) * len(self.growth))
        if len(self.growth) != len(self.decay) or len(self.trend) != len(self.growth) or not self.growth:
            raise ValueError(f"change weights need one growth, one decay and one trend weight per lead, got "
                             f"{len(self.growth)}, {len(self.decay)} and {len(self.trend)}")
        values = np.asarray(self.growth + self.decay + self.trend, dtype=np.float64)
        if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > MAX_WEIGHT:
            raise ValueError(f"change weights must lie in [0, {MAX_WEIGHT:g}], got growth {list(self.growth)}, "
                             f"decay {list(self.decay)}, trend {list(self.trend)}")
        if not np.isfinite(self.trend_linearity_power) or self.trend_linearity_power < 0:
            raise ValueError(f"trend_linearity_power must be finite and >= 0, got {self.trend_linearity_power}")

    @classmethod
    def constant(cls, growth: float, decay: float, leads: int, trend: float = 0.0,
                 trend_linearity_power: float = TREND_LINEARITY_POWER) -> ChangeWeights:
        """The same weights at every one of ``leads`` leads."""
        n = int(leads)
        return cls((float(growth),) * n, (float(decay),) * n, (float(trend),) * n, float(trend_linearity_power))

    @property
    def uses_trend(self) -> bool:
        """Whether any lead adds the window's trend (then :meth:`apply` needs its rate)."""
        return any(t > 0 for t in self.trend)

    def key(self, lead: int = 0) -> tuple[float, float, float]:
        """``(growth, decay, trend)`` at ``lead`` (0-based): a candidate of the rule."""
        return self.growth[lead], self.decay[lead], self.trend[lead]

    def per_lead(self, leads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(growth, decay, trend)`` arrays of length ``leads`` (the last weight repeated past the calibrated leads)."""
        idx = np.minimum(np.arange(int(leads)), len(self.growth) - 1)
        return tuple(np.asarray(w, dtype=np.float64)[idx] for w in (self.growth, self.decay, self.trend))

    def apply(self, change: np.ndarray, rate: np.ndarray | None = None) -> np.ndarray:
        """Weigh a ``(leads, h, w)`` change and add the weighted trend.

        Growth (change > 0) times its lead's growth weight, decay times its
        decay weight, plus its trend weight times :func:`trend_ramp` of
        ``rate`` (``(h, w)`` network units per step, :func:`window_trend`),
        needed only if :attr:`uses_trend`.
        """
        change = np.asarray(change)
        growth, decay, trend = self.per_lead(change.shape[0])
        shape = (-1,) + (1,) * (change.ndim - 1)
        weights = np.where(change > 0, growth.reshape(shape), decay.reshape(shape))
        out = change * weights
        if self.uses_trend:
            if rate is None:
                raise ValueError("these change weights add the window's trend: pass its rate (window_trend)")
            rate = np.asarray(rate)
            if rate.shape != change.shape[1:]:
                raise ValueError(f"trend rate of shape {rate.shape} for changes of shape {change.shape}")
            out = out + (trend * trend_ramp(change.shape[0])).reshape(shape) * rate[None]
        return out.astype(change.dtype, copy=False)

    def brief(self) -> str:
        """One line for a product or a listing: ``network growth x0.25, decay x0 ...`` (per lead if they differ)."""
        trend = (f", window trend (R^{self.trend_linearity_power:g}-weighted) x" if self.uses_trend else "")
        if len(set(self.growth)) == 1 and len(set(self.decay)) == 1 and len(set(self.trend)) == 1:
            return (f"network growth x{self.growth[0]:g}, decay x{self.decay[0]:g}"
                    + (f"{trend}{self.trend[0]:g}" if trend else "") + " at every lead")
        return (f"network growth x{'/'.join(f'{g:g}' for g in self.growth)}, "
                f"decay x{'/'.join(f'{d:g}' for d in self.decay)}"
                + (f"{trend}{'/'.join(f'{t:g}' for t in self.trend)}" if trend else "") + " per lead")

    def to_metadata(self, **provenance: Any) -> dict[str, Any]:
        """The checkpoint's ``change_weights`` entry: the weights and how they were chosen."""
        return {"growth": [float(g) for g in self.growth], "decay": [float(d) for d in self.decay],
                "trend": [float(t) for t in self.trend], "trend_linearity_power": float(self.trend_linearity_power),
                **provenance}

    @classmethod
    def from_metadata(cls, entry: Mapping[str, Any] | None, where: str | Path = "checkpoint") -> ChangeWeights | None:
        """The weights of a checkpoint's ``change_weights`` entry (``None``: none recorded).

        An entry without ``trend`` (calibrated before the window trend) adds none.

        Raises
        ------
        CheckpointError
            An entry that is not growth, decay (and trend) lists of equal
            length with weights in ``[0, MAX_WEIGHT]``; the message names ``where``.
        """
        if entry is None:
            return None
        try:
            return cls(tuple(float(g) for g in entry["growth"]), tuple(float(d) for d in entry["decay"]),
                       tuple(float(t) for t in entry.get("trend") or ()),
                       float(entry.get("trend_linearity_power", TREND_LINEARITY_POWER)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{where}: invalid change_weights: {exc}") from exc


def window_trend(x: np.ndarray, linearity_power: float = TREND_LINEARITY_POWER) -> np.ndarray:
    """The Lagrangian window's growth rate ``(h, w)``, network units per step.

    ``x``: ``(T, h, w)`` normalised Lagrangian frames (what the network reads;
    dry exactly 0). The trend gate's estimate
    (:func:`nowcast.models.predictor.trend_rate`): per pixel the dB slope of
    its wet frames weighted by ``R² ** linearity_power``, smoothed over the
    rain, bounded, 0 where the analysis is dry.
    """
    import torch

    from nowcast.models.predictor import trend_rate

    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, :, None]
    with torch.no_grad():
        return trend_rate(inputs, linearity_power=float(linearity_power))[0, 0].numpy()


#: A candidate of the rule: ``(growth, decay, trend)`` weights, the same at every lead.
Candidate = tuple[float, float, float]
#: ``scores[candidate][set] -> {"csi@1": [...per lead], "csi@5": [...]}``.
GridScores = dict[Candidate, dict[str, dict[str, list[float]]]]


def candidates(grid: Sequence[float] = GRID, trend_grid: Sequence[float] = TREND_GRID) -> list[Candidate]:
    """Every ``(growth, decay, trend)`` triple of ``grid`` x ``grid`` x ``trend_grid``, extrapolation's included."""
    return [(float(g), float(d), float(t)) for t in trend_grid for g in grid for d in grid]


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
                   leads: int | None = None) -> tuple[ChangeWeights, dict[Candidate, dict[str, float]]]:
    """The rule of the module docstring over ``grid_scores`` (:data:`EXTRAPOLATION` left out).

    Parameters
    ----------
    grid_scores
        Per ``(growth, decay, trend)`` candidate and validation set, the per-lead CSI.
    references
        Per validation set, extrapolation's per-lead CSI on the same sequences.
    leads
        Leads the weights are written for (default: the scores' leads).

    Returns
    -------
    weights, summaries
        The chosen weights at every lead, and every candidate's :func:`summarise`.
    """
    summaries = {key: summarise(by_set, references) for key, by_set in grid_scores.items() if key != EXTRAPOLATION}
    if not summaries:
        raise ValueError("no candidate: the grid holds only (0, 0, 0), extrapolation itself")
    # a difference of exactly TIE ties (1e-9: float noise); equal CSI@5 goes to the candidate closer to extrapolation
    chosen = choose_best(summaries, slack=1e-9, order=lambda key: -sum(key))
    if leads is None:
        first = next(iter(grid_scores[chosen].values()))
        leads = len(first["csi@1"])
    return ChangeWeights.constant(chosen[0], chosen[1], leads, trend=chosen[2]), summaries


def score_grid(raw_changes: Callable[[np.ndarray, int], np.ndarray], normaliser, sequences: Mapping[str, np.ndarray],
               input_frames: int, leads: int, motion_method: str = "LK",
               keys: Sequence[Candidate] | None = None,
               trend_linearity_power: float = TREND_LINEARITY_POWER) -> GridScores:
    """Per-lead scores of a Lagrangian forecast under every candidate's weights, on every validation set.

    The network, the window trend and the motion run once per sequence;
    every candidate then only weighs the stored change, adds the weighted
    trend and advects (:func:`nowcast.models.lagrangian.forecast` with the
    stored velocity) and is scored: about 23 ms per 12-lead 64x64 sequence,
    so the 245 candidates of :func:`candidates` take about 5 s per
    validation sequence on one core (measured 2026-11-27).

    Parameters
    ----------
    raw_changes
        The network's *unweighted* change, ``(x, leads) -> (leads, h, w)``
        (:meth:`nowcast.models.zoo.Forecaster._raw_changes`).
    sequences
        Per validation set, ``(n, input_frames + leads, ny, nx)`` mm/h.
    keys
        ``(growth, decay, trend)`` weights to score (default: every
        candidate of :func:`candidates`).
    """
    from nowcast.models import lagrangian
    from nowcast.models.skill import LeadScores
    from nowcast.motion import motion_field

    keys = [(float(g), float(d), float(t)) for g, d, t in (keys or candidates())]
    weights = {key: ChangeWeights.constant(*key[:2], leads, trend=key[2], trend_linearity_power=trend_linearity_power)
               for key in keys}
    out: GridScores = {key: {} for key in keys}
    for name, seqs in sequences.items():
        scores = {key: LeadScores(leads) for key in keys}
        for i, seq in enumerate(seqs):
            window = np.asarray(seq[:input_frames], dtype=np.float32)
            truth = seq[input_frames : input_frames + leads]
            velocity = motion_field(np.nan_to_num(window, nan=0.0), motion_method)
            cache: dict[str, np.ndarray] = {}  # the network's change and the trend, computed by the first forecast
            for key in keys:
                network = partial(_weighed_once, cache, raw_changes, weights[key])
                forecast = lagrangian.forecast(window, leads, network, normaliser, motion_method=motion_method,
                                               velocity=velocity)
                scores[key].add(forecast.astype(np.float32), truth)
            if (i + 1) % 16 == 0:
                log.info("%s: %d / %d sequences scored under %d candidate weights", name, i + 1, len(seqs), len(keys))
        for key in keys:
            result = scores[key].result()
            out[key][name] = {f"csi@{t:g}": result[f"csi@{t:g}"] for t in THRESHOLDS}
    return out


def _weighed_once(cache: dict[str, np.ndarray], raw_changes: Callable[[np.ndarray, int], np.ndarray],
                  weights: ChangeWeights, x: np.ndarray, leads: int) -> np.ndarray:
    """``weights`` on the network's change of ``x`` (and its trend), computed on the first call only and kept in ``cache``."""
    if "change" not in cache:
        cache["change"] = np.asarray(raw_changes(x, leads))
    if weights.uses_trend and "trend" not in cache:
        cache["trend"] = window_trend(x, weights.trend_linearity_power)
    return weights.apply(cache["change"], cache.get("trend"))


def calibrate(forecaster, sequences: Mapping[str, np.ndarray], leads: int = 12,
              keys: Sequence[Candidate] | None = None):
    """Choose a Lagrangian forecaster's change weights on validation ``sequences`` (:func:`choose_weights`).

    Returns
    -------
    weights, summaries, grid_scores, references
        The chosen :class:`ChangeWeights`, every candidate's worst-lead
        difference and mean CSI@5, every candidate's scores and extrapolation's,
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
                      forecaster.config.motion.method, keys)
    weights, summaries = choose_weights(grid, references, leads)
    return weights, summaries, grid, references
