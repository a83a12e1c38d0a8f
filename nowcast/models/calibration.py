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

Fourteenth round: the trend's growth and decay, its lifetime, and a tie-break
that counts only what is more than noise. The thirteenth round's losses on the
test sets removed rain (decay), and its tie-break admitted half of the
network's decay for 0.0008 more mean CSI@5 on validation, less than any
sampling noise, although the validation store showed the cost. So the trend
has its own growth and decay weights (``trend`` where the window grows,
``trend_decay`` where it decays: the same, the signed trend, or none of its
decay) and its own lifetime (the e-folding time, in steps, of
:func:`trend_ramp`; the Lagrangian-trend baseline's 6 steps assume growth lasts
30 min, the simulator's lasts 20-120 min and cells are born and die within
less). Rule, written before it was run on any data
(:func:`choose_weights` with ``tie_break="least-change"``): the candidates are
:func:`candidates` (network growth and decay each in :data:`NETWORK_GRID`, trend
weight in :data:`TREND_GRID`, the trend signed or its growth alone, lifetime in
:data:`TREND_LIFETIMES`; 625 in all, extrapolation's included and never
chosen), the same at every lead; the largest worst-lead difference wins;
candidates within :data:`TIE` of it are tied; among them, those whose mean
CSI@5 is within :data:`TIE` of the largest are tied again, and of these the
one that changes the forecast least wins (the smallest mean absolute change
it applies on the validation windows, network units: a difference in skill
no larger than the noise does not pay for a larger departure from
extrapolation). :data:`NETWORK_GRID` leaves out the weights above 1, which
no round's validation data ever came near choosing (thirteenth round: the
best candidate with a weight above 1 lost 0.019 at its worst lead, the best
of all 0.004), to keep
the 625 candidates within 25 min on one core. The shipped model is
recalibrated by this rule and takes what it chooses; the test sets are
scored once after, without a veto. (They were scored in the thirteenth
round, and this rule was proposed after that, from what the validation sets
had shown: its numbers are those of the third model the test sets judged.)
Result (2026-11-27): growth x0, decay x0.25, the trend's growth part x0.25
with a 12-step lifetime (validation worst lead -0.0084; the best of all,
-0.0035, was a quarter of the signed trend with a 3-step lifetime, but the
second tie on CSI@5 left it out, and the least change then won by 0.00944
against 0.00949: noise again). On the test sets the worst lead rose from
-0.039 to -0.015 and the growth set's gain at 5 mm/h from +0.086 to +0.107
(docs/benchmarks.md, "Skill, fourteenth round").

Rule 15 (the current one; same session as the fourteenth round): the same 625
candidates; the largest worst-lead difference wins and candidates within
:data:`TIE` of it are tied; of those, the one applying the least change wins
(``tie_break="least-change"``). Why: compared by repeated random
cross-validation on the validation sets only (``benchmarks/rule_cv.py``: 100
random halvings of every set, each rule choosing on one half and judged on the
other), the thirteenth and fourteenth rounds' rules held out a mean worst lead
of -0.026 (5 % of splits below -0.087) and made 70-75 different choices in
200; this rule held out -0.0064 (5 %: -0.012) and made 2, with a growth gain
of +0.05 against their +0.18. The meta-rule that picked it (the best mean
held-out worst lead, ties within 0.002 to the growth gain) was committed
before the comparison ran; no test set, old or fresh, took part. The shipped
model is recalibrated by it and scored once on fresh test sets (seed 4).
Result (2026-11-27): growth x0, decay x0, the trend's growth part x0.25 with
a 3-step lifetime (validation worst lead -0.0035, the best of all); on the
fresh test sets worst lead -0.004 (5 mm/h; at 1 mm/h at or above
extrapolation at every lead) and growth +0.050 (docs/benchmarks.md, "Skill,
fourteenth round").

Fifteenth round: the same rule with the trend read over a longer history
(:attr:`ChangeWeights.trend_frames`; :func:`calibrate` with ``trend_frames``,
``nowcast models calibrate --trend-frames 8``) on validation sequences of 8
frames plus the leads. Why: read over 8 frames instead of 4, the whole trend
lost 0.008-0.026 less on the validation days at the same growth, and a
calibrated forecaster so read held that on a fresh test (fourteenth round).
Result (2026-11-27): the same weights as over 4 frames (validation worst lead
-0.0035 against -0.0046 over 4 on the same sets); on fresh test sets (seed 5)
worst lead -0.003 and growth +0.049, level with the same weights over 4
frames. Then how the trend is read (:attr:`ChangeWeights.trend_estimator`,
:attr:`ChangeWeights.trend_smoothing_px`, :func:`window_trend`), chosen on
validation data by the largest growth gain at a worst lead of at least
-0.005 (``benchmarks/trend_consistency.py``): the minmod of the halves'
slopes with the rain smoothed 4 px. Rule 15 chose the same weights again
(validation worst lead -0.0016); on fresh test sets (seed 6) worst lead
-0.0019 against the slope's -0.0041, growth +0.037 against +0.048; shipped
by the rule written before (docs/benchmarks.md, "Skill, fifteenth round").

Sixteenth round: the trend added only to scenes whose trend went on within
their window (:attr:`ChangeWeights.trend_persistence_min`,
:func:`scene_persistence`: the correlation of the rates over the older and
the newer half; ``nowcast models calibrate --trend-persistence-min``), and
the rule and the trend weights as settings (:data:`SELECTION_RULES`,
:data:`EXTENDED_TREND_GRID`; ``--rule``, ``--trend-weights``). On validation
the gate at 0.8 kept the days at extrapolation's CSI for any trend weight
and allowed twice the trend on the growth twin (+0.26 at a worst lead of
-0.0033); cross-validated with the gate, rule 15 was picked again and chose
the shipped weights. On fresh test sets (seed 7) neither shipped: the gated
quarter gained less than the shipped model, the gated double cost another
day 0.17 at 35 min through one of its 128 windows, a large rain area that grew
steadily for 40 minutes and then decayed (docs/benchmarks.md, "Skill, sixteenth round").
Then two more ways of deciding where the trend goes, each a weight option:
only where the network's own change grows (:attr:`ChangeWeights.trend_network_agrees`,
:func:`network_agreement`), and without the growth that a residual
translation and rotation of the older frames explains
(:attr:`ChangeWeights.trend_align`, :func:`remove_displacement`); and the
candidate grid as calibration settings (``--network-weights``,
``--trend-forms``, ``--trend-lifetimes``). The aligned gate was at or above
extrapolation at every lead of every validation set with +0.22 on the
growth twin; on fresh seeds 8 and 9 the gated candidates lost 0.0055 (the
rigid field, before the alignment) and 0.0074 (another day). The shipped
model uses none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nowcast.baselines import TREND_DAMPING_STEPS, trend_ramp
from nowcast.errors import CheckpointError

log = logging.getLogger(__name__)

#: Weights tried for growth and for decay (every pair of them, the same at every lead; rounds 12 and 13).
GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
#: Weights tried for the network's growth and for its decay from the fourteenth round on (no weight above 1).
NETWORK_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Weights tried for the window's own trend (:func:`window_trend`), with every pair of network weights.
TREND_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: The trend weights tried with the persistence gate (sixteenth round): the growth set's trend went on at 2-4.
EXTENDED_TREND_GRID: tuple[float, ...] = TREND_GRID + (1.5, 2.0)
#: How the trend is added: ``signed`` (its growth and its decay, the thirteenth round's) or ``growth`` (no decay).
TREND_FORMS: tuple[str, ...] = ("signed", "growth")
#: e-folding lifetimes (steps) of the continued trend tried from the fourteenth round on (15, 30, 60 min).
TREND_LIFETIMES: tuple[float, ...] = (3.0, TREND_DAMPING_STEPS, 12.0)
#: Power of the linear fit's R² that weights the window trend's slopes: the tenth round's choice on
#: the validation sets (worst lead -0.010 at power 4 against -0.064 unweighted; docs/benchmarks.md).
TREND_LINEARITY_POWER = 4.0
#: The network as trained: its whole change, no added trend.
NETWORK: tuple[float, float, float, float, float] = (1.0, 1.0, 0.0, 0.0, TREND_DAMPING_STEPS)
#: Extrapolation: no change at all (never a candidate).
EXTRAPOLATION: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, TREND_DAMPING_STEPS)
#: Tie-breaks of :func:`choose_weights`: the thirteenth round's, the fourteenth round's first and its second rule's.
TIE_BREAKS: tuple[str, ...] = ("csi5", "csi5-then-least-change", "least-change")
#: How the trend's rate is read (:func:`window_trend`): the slope over the whole history, or the
#: minmod of the slopes over its older and newer halves (fifteenth round, ``benchmarks/trend_consistency.py``).
TREND_ESTIMATORS: tuple[str, ...] = ("slope", "minmod")
#: Frames the minmod estimator needs at least: two halves of three (R² needs three points).
MINMOD_FRAMES = 6
#: :attr:`ChangeWeights.trend_persistence_min` of no gate: every scene's correlation is at least -1.
NO_GATE = -1.0
#: How far a scene's persistence may lie from the gate for the next run to decide otherwise: 9 in 10
#: successive runs 5 min apart move it by less (0.10, the 90th percentile of |Δρ| over 3360 pairs of
#: successive runs of the read growth sets, ``benchmarks/gate_consistency.py``, twenty-eighth round;
#: median 0.024). A product says "near the gate" within it, so that a forecaster expects the growth
#: to come or go in the next run.
RHO_RUN_TO_RUN = 0.1
#: Pixels a scene needs (both halves' rates read) for :func:`scene_persistence` to be evidence (else 0).
MIN_PERSISTENCE_PIXELS = 50
#: How far the trend may lift a pixel (:attr:`ChangeWeights.trend_ceiling`, seventeenth round): without
#: bound, to the heaviest rain of the whole moved window, or to the heaviest within
#: :data:`LOCAL_CEILING_PX` of the pixel.
TREND_CEILINGS: tuple[str, ...] = ("none", "scene", "local")
#: Radius (pixels; 16 km on the 2-km grids) of the ``local`` ceiling's neighbourhood.
LOCAL_CEILING_PX = 8


def persistence_pixels(samples: float, smoothing_px: float) -> int:
    """Pixels :func:`scene_persistence` needs for ``samples`` independent samples of rain smoothed ``smoothing_px``.

    A Gaussian of σ pixels correlates its field over about 4πσ² pixels (σ at
    least 1: the rates are read from neighbouring pixels even unsmoothed), so
    a correlation over fewer says less than it seems (twentieth round). Never
    fewer than :data:`MIN_PERSISTENCE_PIXELS`; ``samples`` 0: that floor alone.
    """
    area = 4.0 * np.pi * max(float(smoothing_px), 1.0) ** 2
    return max(MIN_PERSISTENCE_PIXELS, int(np.ceil(float(samples) * area)))

#: Selection rules by name, ``(tie_break, tie)`` of :func:`choose_candidate`: the thirteenth round's ("13"),
#: the fourteenth's ("14"), rule 15 (the shipped model's until the sixteenth round) and "best worst lead"
#: (no tolerance). ``benchmarks/rule_cv.py`` compares them by cross-validation.
SELECTION_RULES: dict[str, tuple[str, float]] = {"13": ("csi5", 0.005), "14": ("csi5-then-least-change", 0.005),
                                                 "15": ("least-change", 0.005), "best-worst-lead": ("least-change", 0.0)}
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
    > 0 and < 0; ``trend`` and ``trend_decay`` weigh the window's R²-weighted
    Lagrangian trend (:func:`window_trend`) where it grows and where it decays,
    continued to each lead with e-folding time ``trend_lifetime`` steps
    (:func:`trend_ramp`) and added to it. ``trend`` empty: no trend, as in
    checkpoints calibrated before the thirteenth round; ``trend_decay`` empty:
    the same as ``trend`` (the signed trend, as in the thirteenth round's).
    Leads beyond the calibrated ones take the last lead's weights (a forecast
    may run longer than its calibration). ``trend_frames``: the trend is read
    over the newest ``trend_frames`` frames moved to the analysis time (0:
    over the network's own window, as in every checkpoint before the
    fifteenth round); the motion and the network keep theirs
    (:attr:`nowcast.models.zoo.Forecaster.history_frames`).
    ``trend_estimator`` and ``trend_smoothing_px``: how the rate is read from
    those frames (:func:`window_trend`; ``slope`` and 0: as before).
    ``trend_growth_min``: the trend is added only to a scene whose rate, where
    it grows, averages at least this (network units per step; 0: any scene;
    :func:`scene_growth`, twenty-fourth round).
    ``trend_persistence_full``: above :data:`NO_GATE` (then above
    :attr:`trend_persistence_min`, a gate being needed), the trend's rate is
    weighed by :func:`persistence_ramp` of the scene's persistence: nothing
    at the gate, rising linearly to the whole rate at this correlation.
    :data:`NO_GATE` (the default): the hard step at the gate, as before the
    twenty-eighth round. Why: a step turned the small moves of the
    persistence between runs 5 min apart into the whole growth or none, and
    growth appeared and disappeared between successive forecasts.
    ``trend_growth_ratio_min`` > 0: the trend is added only to a scene whose
    growth did not slow within its window: where the rate grows, the newer
    half's rate averages at least this fraction of the older half's
    (:func:`growth_ratio`; a growth the older half did not show passes). 0
    (the default): no such floor, as before the thirtieth round. Why: the
    costly read windows of the "grew, then stopped" kind (seed 7 window 117,
    seed 20 window 33) grew in their newer half 0.79 and 0.60 as fast as in
    their older half, the growth sets' windows 0.89 or more; the
    twenty-sixth look named a floor of 0.85 (docs/benchmarks.md, "Skill,
    thirtieth round"). It needs ``trend_frames`` >= 6 (two halves of three),
    not a persistence gate.
    """

    growth: tuple[float, ...]
    decay: tuple[float, ...]
    trend: tuple[float, ...] = ()
    trend_linearity_power: float = TREND_LINEARITY_POWER
    trend_decay: tuple[float, ...] = ()
    trend_lifetime: float = TREND_DAMPING_STEPS
    trend_frames: int = 0
    trend_estimator: str = "slope"
    trend_smoothing_px: float = 0.0
    trend_persistence_min: float = NO_GATE
    trend_network_agrees: bool = False
    trend_align: bool = False
    trend_ceiling: str = "none"
    trend_persistence_samples: float = 0.0
    trend_growth_min: float = 0.0
    trend_persistence_full: float = NO_GATE
    trend_growth_ratio_min: float = 0.0

    def __post_init__(self) -> None:
        if not self.trend:
            object.__setattr__(self, "trend", (0.0,) * len(self.growth))
        if not self.trend_decay:
            object.__setattr__(self, "trend_decay", self.trend)
        lengths = {len(w) for w in (self.growth, self.decay, self.trend, self.trend_decay)}
        if len(lengths) != 1 or not self.growth:
            raise ValueError(f"change weights need one growth, one decay and one trend weight per lead, got "
                             f"{len(self.growth)}, {len(self.decay)}, {len(self.trend)} and {len(self.trend_decay)}")
        values = np.asarray(self.growth + self.decay + self.trend + self.trend_decay, dtype=np.float64)
        if not np.all(np.isfinite(values)) or values.min() < 0.0 or values.max() > MAX_WEIGHT:
            raise ValueError(f"change weights must lie in [0, {MAX_WEIGHT:g}], got growth {list(self.growth)}, "
                             f"decay {list(self.decay)}, trend {list(self.trend)}, trend decay {list(self.trend_decay)}")
        if not np.isfinite(self.trend_linearity_power) or self.trend_linearity_power < 0:
            raise ValueError(f"trend_linearity_power must be finite and >= 0, got {self.trend_linearity_power}")
        if not np.isfinite(self.trend_lifetime) or self.trend_lifetime <= 0:
            raise ValueError(f"trend_lifetime must be a positive number of steps, got {self.trend_lifetime}")
        if int(self.trend_frames) != self.trend_frames or not (self.trend_frames == 0 or self.trend_frames >= 2):
            raise ValueError(f"trend_frames must be 0 (the network's window) or a whole number of frames >= 2, "
                             f"got {self.trend_frames}")
        object.__setattr__(self, "trend_frames", int(self.trend_frames))
        if self.trend_estimator not in TREND_ESTIMATORS:
            raise ValueError(f"unknown trend_estimator {self.trend_estimator!r}: choose from {list(TREND_ESTIMATORS)}")
        if self.trend_estimator == "minmod" and self.trend_frames < MINMOD_FRAMES:
            raise ValueError(f"the minmod trend needs trend_frames >= {MINMOD_FRAMES} (two halves of three), "
                             f"got {self.trend_frames}")
        if not np.isfinite(self.trend_smoothing_px) or self.trend_smoothing_px < 0:
            raise ValueError(f"trend_smoothing_px must be finite and >= 0, got {self.trend_smoothing_px}")
        if not NO_GATE <= self.trend_persistence_min <= 1.0:  # NaN fails too
            raise ValueError(f"trend_persistence_min must be a correlation in [-1, 1] (-1: no gate), "
                             f"got {self.trend_persistence_min}")
        if not isinstance(self.trend_network_agrees, (bool, np.bool_)):
            raise TypeError(f"trend_network_agrees must be true or false, got {self.trend_network_agrees!r}")
        object.__setattr__(self, "trend_network_agrees", bool(self.trend_network_agrees))
        if not isinstance(self.trend_align, (bool, np.bool_)):
            raise TypeError(f"trend_align must be true or false, got {self.trend_align!r}")
        object.__setattr__(self, "trend_align", bool(self.trend_align))
        if self.trend_persistence_min > NO_GATE and self.trend_frames < MINMOD_FRAMES:
            raise ValueError(f"the trend's persistence gate needs trend_frames >= {MINMOD_FRAMES} (two halves of "
                             f"three), got {self.trend_frames}")
        if self.trend_ceiling not in TREND_CEILINGS:
            raise ValueError(f"unknown trend_ceiling {self.trend_ceiling!r}: choose from {list(TREND_CEILINGS)}")
        if not np.isfinite(self.trend_persistence_samples) or self.trend_persistence_samples < 0:
            raise ValueError(f"trend_persistence_samples must be a number of independent samples >= 0, "
                             f"got {self.trend_persistence_samples}")
        if not np.isfinite(self.trend_growth_min) or self.trend_growth_min < 0:
            raise ValueError(f"trend_growth_min must be a growth rate >= 0 (network units per step), "
                             f"got {self.trend_growth_min}")
        if not NO_GATE <= self.trend_persistence_full <= 1.0:  # NaN fails too
            raise ValueError(f"trend_persistence_full must be a correlation in [-1, 1] (-1: no ramp), "
                             f"got {self.trend_persistence_full}")
        if self.trend_persistence_full > NO_GATE and not self.trend_persistence_min > NO_GATE:
            raise ValueError(f"trend_persistence_full {self.trend_persistence_full:g} needs a persistence gate: "
                             f"trend_persistence_min above -1, got {self.trend_persistence_min:g}")
        if self.trend_persistence_full > NO_GATE and not self.trend_persistence_full > self.trend_persistence_min:
            raise ValueError(f"trend_persistence_full must lie above trend_persistence_min (the ramp rises from the "
                             f"gate; -1: no ramp), got {self.trend_persistence_full:g} <= "
                             f"{self.trend_persistence_min:g}")
        if not np.isfinite(self.trend_growth_ratio_min) or self.trend_growth_ratio_min < 0:
            raise ValueError(f"trend_growth_ratio_min must be a ratio >= 0 (the newer half's growth over the older "
                             f"half's; 0: no floor), got {self.trend_growth_ratio_min}")
        if self.trend_growth_ratio_min > 0 and self.trend_frames < MINMOD_FRAMES:
            raise ValueError(f"trend_growth_ratio_min {self.trend_growth_ratio_min:g} needs trend_frames >= "
                             f"{MINMOD_FRAMES} (two halves of three), got {self.trend_frames}")

    @classmethod
    def constant(cls, growth: float, decay: float, leads: int, trend: float = 0.0,
                 trend_linearity_power: float = TREND_LINEARITY_POWER, trend_decay: float | None = None,
                 trend_lifetime: float = TREND_DAMPING_STEPS, trend_frames: int = 0, trend_estimator: str = "slope",
                 trend_smoothing_px: float = 0.0, trend_persistence_min: float = NO_GATE,
                 trend_network_agrees: bool = False, trend_align: bool = False,
                 trend_ceiling: str = "none", trend_persistence_samples: float = 0.0,
                 trend_growth_min: float = 0.0, trend_persistence_full: float = NO_GATE,
                 trend_growth_ratio_min: float = 0.0) -> ChangeWeights:
        """The same weights at every one of ``leads`` leads (``trend_decay`` ``None``: the signed trend)."""
        n = int(leads)
        trend_decay = float(trend if trend_decay is None else trend_decay)
        return cls((float(growth),) * n, (float(decay),) * n, (float(trend),) * n, float(trend_linearity_power),
                   (trend_decay,) * n, float(trend_lifetime), trend_frames, trend_estimator, float(trend_smoothing_px),
                   float(trend_persistence_min), bool(trend_network_agrees), bool(trend_align), str(trend_ceiling),
                   float(trend_persistence_samples), float(trend_growth_min), float(trend_persistence_full),
                   float(trend_growth_ratio_min))

    @classmethod
    def from_key(cls, key: Sequence[float], leads: int, trend_linearity_power: float = TREND_LINEARITY_POWER,
                 trend_frames: int = 0) -> ChangeWeights:
        """The weights of a candidate (:func:`as_candidate`) at every one of ``leads`` leads."""
        growth, decay, trend, trend_decay, lifetime = as_candidate(key)
        return cls.constant(growth, decay, leads, trend, trend_linearity_power, trend_decay, lifetime, trend_frames)

    @property
    def uses_network(self) -> bool:
        """Whether any lead applies the network's change (else it need not run)."""
        return any(w > 0 for w in self.growth + self.decay)

    @property
    def needs_network(self) -> bool:
        """Whether a forecast must run the network: to apply its change, or to read where it agrees with the trend."""
        return self.uses_network or (self.uses_trend and self.trend_network_agrees)

    @property
    def uses_trend(self) -> bool:
        """Whether any lead adds the window's trend (then :meth:`apply` needs its rate)."""
        return any(t > 0 for t in self.trend + self.trend_decay)

    def rate(self, x: np.ndarray, reading: dict | None = None) -> np.ndarray:
        """The trend's rate ``(h, w)`` of moved frames ``x`` as these weights read it (:func:`window_trend`).

        All 0 where :attr:`trend_persistence_min` is above -1 and the scene's
        :func:`scene_persistence` is below it (given ``reading``, its value is
        put there as ``persistence``), and where the scene's
        :func:`scene_growth` is below :attr:`trend_growth_min` (put there as
        ``growth``), and where the scene's :func:`growth_ratio` is below
        :attr:`trend_growth_ratio_min` (put there as ``growth_ratio``); with
        :attr:`trend_persistence_full`, weighed by :func:`persistence_ramp`
        (put there as ``ramp`` wherever the gate opens).
        """
        return window_trend(x, self.trend_linearity_power, self.trend_estimator, self.trend_smoothing_px,
                            self.trend_persistence_min, self.trend_align, reading,
                            self.trend_persistence_samples, self.trend_growth_min, self.trend_persistence_full,
                            self.trend_growth_ratio_min)

    def trend_note(self, rate: np.ndarray, reading: Mapping[str, float], ceiling_mm_h: float | None = None,
                   timestep_minutes: int = 5, frames: int | None = None, db_per_unit: float | None = None) -> str:
        """One line for a product and its map: whether this forecast added the window's trend, and why (or not).

        A forecaster reads it beside the map: a forecast that continues the
        growth of the last 40 minutes for an hour should say so, and one that
        does not should say why. ``rate``: what :meth:`rate` read;
        ``reading``: what it filled; ``ceiling_mm_h``: the ``scene`` ceiling
        in mm/h, if any; ``timestep_minutes``: the model's step (the lifetime
        is in steps); ``frames``: how many frames the trend was read over
        (default :attr:`trend_frames`); ``db_per_unit``: dB per network unit
        (the ``db`` normaliser's scale), to say a growth rate in dB/h (else in
        network units per step). Starts with ``added`` or ``not added``. Where
        the persistence lies within :data:`RHO_RUN_TO_RUN` of the gate it says
        "near the gate" and that the next run may decide otherwise: the gate
        is a step, and successive runs move the persistence by that much.
        """
        window = f"the last {timestep_minutes * int(frames or self.trend_frames or 4)} min"
        if self.trend_persistence_min > NO_GATE and frames is not None and frames < MINMOD_FRAMES:
            return (f"not added: {frames} frames are too few to tell whether the growth persisted (the gate reads "
                    f"{max(self.trend_frames, MINMOD_FRAMES)}; older frames missing)")
        rho = reading.get("persistence")
        if reading.get("pixels", 1) < reading.get("pixels_needed", 0):
            return (f"not added: too little steadily changing rain to tell whether its growth persisted through "
                    f"{window} ({reading['pixels']} of the {reading['pixels_needed']} pixels needed)")
        near = (self.trend_persistence_min > NO_GATE and rho is not None
                and abs(rho - self.trend_persistence_min) < RHO_RUN_TO_RUN - 1e-9)
        if self.trend_persistence_min > NO_GATE and rho is not None and rho < self.trend_persistence_min:
            return (f"not added: the scene's growth did not persist through {window} "
                    f"(rho {rho:.2f} < {self.trend_persistence_min:g})"
                    + (", near the gate (the next run may add it)" if near else ""))
        growth = reading.get("growth")
        if self.trend_growth_min > 0 and growth is not None and growth < self.trend_growth_min:
            def rate_text(value: float) -> str:
                if db_per_unit is None:
                    return f"{value:.4f}"
                return f"{value * db_per_unit * 60.0 / timestep_minutes:.2f} dB/h"

            return (f"not added: the scene grew too little in {window} to tell from rain that only moves "
                    f"({rate_text(growth)} < {rate_text(self.trend_growth_min)} where it grew)")
        ratio = reading.get("growth_ratio")
        if self.trend_growth_ratio_min > 0 and ratio is not None and ratio < self.trend_growth_ratio_min:
            return (f"not added: the scene's growth slowed within {window} (its newer half grew {ratio:.2f} as fast "
                    f"as its older half; at least {self.trend_growth_ratio_min:g} needed)")
        ramp = reading.get("ramp")
        ramped = self.trend_persistence_full > NO_GATE and rho is not None and ramp is not None
        if ramped and ramp <= 0.0:
            return (f"not added: the scene's growth persisted too little through {window} to add any "
                    f"(rho {rho:.2f}; none at {self.trend_persistence_min:g}, full at "
                    f"rho {self.trend_persistence_full:g})")
        growing = bool(np.any(np.asarray(rate) > 0) and any(t > 0 for t in self.trend))
        decaying = bool(np.any(np.asarray(rate) < 0) and any(t > 0 for t in self.trend_decay))
        if not (growing or decaying):
            return f"not added: no steady growth in {window}"
        kind = "growth and decay" if growing and decaying else ("growth" if growing else "decay")
        text = (f"added: {kind} of {window} continued with a "
                f"{timestep_minutes * self.trend_lifetime:g}-min lifetime")
        if rho is not None:
            text += f", where the scene's growth persisted (rho {rho:.2f} >= {self.trend_persistence_min:g}"
            if ramped and ramp < 1.0:
                text += f"; x{ramp:.2f} of it, full at rho {self.trend_persistence_full:g}"
            text += ")" + (", near the gate (the next run may not add it)" if near else "")
        if self.trend_ceiling == "scene" and ceiling_mm_h is not None:
            text += f", capped at the window's heaviest rain, {ceiling_mm_h:.1f} mm/h"
        elif self.trend_ceiling == "local":
            text += f", capped at the window's heaviest rain within {LOCAL_CEILING_PX} grid cells"
        return text

    def headroom(self, x: np.ndarray) -> np.ndarray | None:
        """How far above the analysis the trend may lift each pixel, ``(h, w)`` network units (``None``: unbounded).

        ``x``: the moved frames (network units), oldest first, the analysis
        last. The ceiling (:attr:`trend_ceiling`) is the heaviest rain of the
        window: of the whole scene (``scene``) or within
        :data:`LOCAL_CEILING_PX` of the pixel (``local``). Why (seventeenth
        round): a trend read from a window is evidence that rain grows towards
        what the scene already produces, not beyond; the sixteenth round's
        costliest fresh window was 3.4 mm/h rain that a trend carried over
        5 mm/h where the observation never reached 3.3. Never negative: the
        analysis is one of the window's frames.
        """
        if self.trend_ceiling == "none":
            return None
        x = np.asarray(x, dtype=np.float32)
        heaviest = np.nanmax(x, axis=0)  # every frame, per pixel
        if self.trend_ceiling == "scene":
            ceiling = np.full_like(heaviest, np.nanmax(heaviest))
        else:
            from scipy.ndimage import maximum_filter

            ceiling = maximum_filter(np.nan_to_num(heaviest, nan=-np.inf), size=2 * LOCAL_CEILING_PX + 1,
                                     mode="nearest")
        return np.nan_to_num(ceiling - x[-1], nan=0.0)  # no coverage: no lift

    def history_frames(self, input_frames: int) -> int:
        """Frames a forecast under these weights reads: the network's ``input_frames``, or more for the trend."""
        return max(int(input_frames), self.trend_frames) if self.uses_trend else int(input_frames)

    def key(self, lead: int = 0) -> Candidate:
        """``(growth, decay, trend, trend_decay, trend_lifetime)`` at ``lead`` (0-based): a candidate of the rule."""
        return (self.growth[lead], self.decay[lead], self.trend[lead], self.trend_decay[lead],
                float(self.trend_lifetime))

    def per_lead(self, leads: int) -> tuple[np.ndarray, ...]:
        """``(growth, decay, trend, trend_decay)`` arrays of length ``leads`` (the last weight repeated past the calibrated leads)."""
        idx = np.minimum(np.arange(int(leads)), len(self.growth) - 1)
        return tuple(np.asarray(w, dtype=np.float64)[idx]
                     for w in (self.growth, self.decay, self.trend, self.trend_decay))

    def apply(self, change: np.ndarray, rate: np.ndarray | None = None,
              headroom: np.ndarray | None = None) -> np.ndarray:
        """Weigh a ``(leads, h, w)`` change and add the weighted trend.

        Growth (change > 0) times its lead's growth weight, decay times its
        decay weight, plus :func:`trend_ramp` of ``rate`` (``(h, w)`` network
        units per step, :func:`window_trend`) times the trend weight where the
        rate is positive and the trend-decay weight where it is negative;
        ``rate`` is needed only if :attr:`uses_trend`. With
        :attr:`trend_network_agrees` the trend is added only where the
        network's own (unweighted) ``change`` grows on average over the leads
        (:func:`network_agreement`). With a :attr:`trend_ceiling`, ``headroom``
        (:meth:`headroom` of the moved frames) bounds the trend's growth: it
        lifts a pixel's weighed change at most to the headroom, and adds
        nothing where the change is already there; its decay is not bounded.
        """
        change = np.asarray(change)
        growth, decay, trend, trend_decay = self.per_lead(change.shape[0])
        shape = (-1,) + (1,) * (change.ndim - 1)
        weights = np.where(change > 0, growth.reshape(shape), decay.reshape(shape))
        out = change * weights
        if self.uses_trend:
            if rate is None:
                raise ValueError("these change weights add the window's trend: pass its rate (window_trend)")
            rate = np.asarray(rate)
            if rate.shape != change.shape[1:]:
                raise ValueError(f"trend rate of shape {rate.shape} for changes of shape {change.shape}")
            if self.trend_network_agrees:
                rate = network_agreement(rate, change)
            ramp = trend_ramp(change.shape[0], self.trend_lifetime).reshape(shape)
            lift = ramp * trend.reshape(shape) * np.maximum(rate, 0.0)[None]
            if self.trend_ceiling != "none":
                if headroom is None:
                    raise ValueError(f"these change weights bound the trend by the {self.trend_ceiling} ceiling: "
                                     f"pass its headroom (ChangeWeights.headroom)")
                headroom = np.asarray(headroom)
                if headroom.shape != change.shape[1:]:
                    raise ValueError(f"trend headroom of shape {headroom.shape} for changes of shape {change.shape}")
                lift = np.minimum(lift, np.maximum(headroom[None] - out, 0.0))
            out = out + lift + ramp * trend_decay.reshape(shape) * np.minimum(rate, 0.0)[None]
        return out.astype(change.dtype, copy=False)

    def brief(self) -> str:
        """One line for a product or a listing: ``network growth x0.25, decay x0 ...`` (per lead if they differ)."""
        def weights(values: tuple[float, ...]) -> str:
            return f"{values[0]:g}" if len(set(values)) == 1 else "/".join(f"{v:g}" for v in values)

        constant = all(len(set(w)) == 1 for w in (self.growth, self.decay, self.trend, self.trend_decay))
        text = f"network growth x{weights(self.growth)}, decay x{weights(self.decay)}"
        if self.uses_trend:
            text += f", window trend (R^{self.trend_linearity_power:g}-weighted"
            if self.trend_frames:
                text += f", read over {self.trend_frames} frames"
            if self.trend_estimator == "minmod":
                text += " as the minmod of its halves"
            if self.trend_smoothing_px:
                text += f", rain smoothed {self.trend_smoothing_px:g} px"
            if self.trend_align:
                text += ", residual displacement removed"
            if self.trend_persistence_min > NO_GATE:
                text += f", only where the scene's trend persisted (rho >= {self.trend_persistence_min:g}"
                if self.trend_persistence_full > NO_GATE:
                    text += f", weight rising to full at rho {self.trend_persistence_full:g}"
                    text += "," if self.trend_persistence_samples else ""
                if self.trend_persistence_samples:
                    text += f" over {self.trend_persistence_samples:g}+ independent samples"
                text += ")"
            if self.trend_growth_min > 0:
                text += (f", only where the scene grew at least {self.trend_growth_min:g} units per step "
                         f"where it grew")
            if self.trend_growth_ratio_min > 0:
                text += (f", only where the growth did not slow within the window (newer half >= "
                         f"{self.trend_growth_ratio_min:g} of the older)")
            if self.trend_network_agrees:
                text += " and the network grows"
            if self.trend_ceiling != "none":
                text += f", bounded by the {self.trend_ceiling} ceiling (the window's heaviest rain)"
            if self.trend_lifetime != TREND_DAMPING_STEPS:
                text += f", lifetime {self.trend_lifetime:g} steps"
            text += f") x{weights(self.trend)}"
            if self.trend_decay != self.trend:
                text += f" where it grows, x{weights(self.trend_decay)} where it decays"
        return text + (" at every lead" if constant else " per lead")

    def to_metadata(self, **provenance: Any) -> dict[str, Any]:
        """The checkpoint's ``change_weights`` entry: the weights and how they were chosen."""
        return {"growth": [float(g) for g in self.growth], "decay": [float(d) for d in self.decay],
                "trend": [float(t) for t in self.trend], "trend_decay": [float(t) for t in self.trend_decay],
                "trend_linearity_power": float(self.trend_linearity_power),
                "trend_lifetime_steps": float(self.trend_lifetime), "trend_frames": int(self.trend_frames),
                "trend_estimator": self.trend_estimator, "trend_smoothing_px": float(self.trend_smoothing_px),
                "trend_persistence_min": float(self.trend_persistence_min),
                "trend_network_agrees": bool(self.trend_network_agrees), "trend_align": bool(self.trend_align),
                "trend_ceiling": self.trend_ceiling,
                "trend_persistence_samples": float(self.trend_persistence_samples),
                "trend_growth_min": float(self.trend_growth_min),
                "trend_persistence_full": float(self.trend_persistence_full),
                "trend_growth_ratio_min": float(self.trend_growth_ratio_min), **provenance}

    @classmethod
    def from_metadata(cls, entry: Mapping[str, Any] | None, where: str | Path = "checkpoint") -> ChangeWeights | None:
        """The weights of a checkpoint's ``change_weights`` entry (``None``: none recorded).

        An entry without ``trend`` (calibrated before the window trend) adds
        none; one without ``trend_decay`` or ``trend_lifetime_steps``
        (thirteenth round) adds the signed trend with the 6-step lifetime; one
        without ``trend_frames`` (before the fifteenth) reads it over the
        network's window, as a slope, unsmoothed; one without
        ``trend_persistence_min`` (before the sixteenth) adds it to every scene,
        one without ``trend_network_agrees`` wherever the trend is read, one
        without ``trend_align`` without removing a residual displacement, one
        without ``trend_ceiling`` (before the seventeenth) without a bound, one
        without ``trend_persistence_samples`` (before the twentieth) with the
        50-pixel floor of evidence, one without ``trend_growth_min`` (before
        the twenty-fourth) at any growth, one without ``trend_persistence_full``
        (before the twenty-eighth) with a step at the gate, one without
        ``trend_growth_ratio_min`` (before the thirtieth) without it (whether
        the growth slowed within the window is not read).

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
                       float(entry.get("trend_linearity_power", TREND_LINEARITY_POWER)),
                       tuple(float(t) for t in entry.get("trend_decay") or ()),
                       float(entry.get("trend_lifetime_steps", TREND_DAMPING_STEPS)),
                       _whole(entry.get("trend_frames", 0)), str(entry.get("trend_estimator", "slope")),
                       float(entry.get("trend_smoothing_px", 0.0)),
                       float(entry.get("trend_persistence_min", NO_GATE)),
                       entry.get("trend_network_agrees", False), entry.get("trend_align", False),
                       str(entry.get("trend_ceiling", "none")),
                       float(entry.get("trend_persistence_samples", 0.0)),
                       float(entry.get("trend_growth_min", 0.0)),
                       float(entry.get("trend_persistence_full", NO_GATE)),
                       float(entry.get("trend_growth_ratio_min", 0.0)))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise CheckpointError(f"{where}: invalid change_weights: {exc}") from exc


def check_trend_reading(trend_frames: int = 0, trend_estimator: str = "slope", trend_smoothing_px: float = 0.0,
                        trend_persistence_min: float = NO_GATE, trend_ceiling: str = "none",
                        trend_persistence_samples: float = 0.0, trend_growth_min: float = 0.0,
                        trend_persistence_full: float = NO_GATE, trend_growth_ratio_min: float = 0.0) -> None:
    """Raise the one-line ValueError :class:`ChangeWeights` would for an impossible way of reading the trend.

    For callers that must refuse it before minutes of scoring (the CLI, a
    model config, :func:`calibrate`).
    """
    ChangeWeights.constant(0.0, 0.0, 1, trend_frames=trend_frames, trend_estimator=trend_estimator,
                           trend_smoothing_px=trend_smoothing_px, trend_persistence_min=trend_persistence_min,
                           trend_ceiling=trend_ceiling, trend_persistence_samples=trend_persistence_samples,
                           trend_growth_min=trend_growth_min, trend_persistence_full=trend_persistence_full,
                           trend_growth_ratio_min=trend_growth_ratio_min)


def check_trend_weights(weights: Sequence[float], what: str = "trend") -> None:
    """Raise a one-line ValueError for a weight grid a calibration cannot use (empty, negative, above the cap)."""
    values = np.asarray(list(weights), dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > MAX_WEIGHT:
        raise ValueError(f"{what} weights must be one or more numbers in [0, {MAX_WEIGHT:g}], got {list(weights)}")


def check_trend_grid(network_weights: Sequence[float] = NETWORK_GRID, trend_weights: Sequence[float] = TREND_GRID,
                     trend_forms: Sequence[str] = TREND_FORMS, trend_lifetimes: Sequence[float] = TREND_LIFETIMES) -> None:
    """Raise a one-line ValueError for candidates a calibration cannot try (before minutes of scoring)."""
    check_trend_weights(trend_weights)
    check_trend_weights(network_weights, "network")
    unknown = set(trend_forms) - set(TREND_FORMS)
    if not trend_forms or unknown:
        raise ValueError(f"trend forms must be one or more of {list(TREND_FORMS)}, got {list(trend_forms)}")
    lives = np.asarray(list(trend_lifetimes), dtype=np.float64)
    if lives.size == 0 or not np.all(np.isfinite(lives)) or lives.min() <= 0:
        raise ValueError(f"trend lifetimes must be one or more positive numbers of steps, got {list(trend_lifetimes)}")
    if not {float(w) for w in (*network_weights, *trend_weights)} - {0.0}:
        raise ValueError("these weights hold no candidate but extrapolation itself (every weight 0)")


def _whole(value: Any) -> int:
    """A whole number from a checkpoint's metadata (``8`` or ``8.0``; ``8.5`` is refused, not truncated)."""
    number = float(value)
    if number != int(number):
        raise ValueError(f"trend_frames must be a whole number of frames, got {value!r}")
    return int(number)


def window_trend(x: np.ndarray, linearity_power: float = TREND_LINEARITY_POWER, estimator: str = "slope",
                 smoothing_px: float = 0.0, persistence_min: float = NO_GATE, align: bool = False,
                 reading: dict | None = None, persistence_samples: float = 0.0,
                 growth_min: float = 0.0, persistence_full: float = NO_GATE,
                 growth_ratio_min: float = 0.0) -> np.ndarray:
    """The Lagrangian window's growth rate ``(h, w)``, network units per step.

    ``x``: ``(T, h, w)`` normalised Lagrangian frames (what the network reads;
    dry exactly 0). ``slope``: the trend gate's estimate
    (:func:`nowcast.models.predictor.trend_rate`): per pixel the dB slope of
    its wet frames weighted by ``R² ** linearity_power``, smoothed over the
    rain, bounded, 0 where the analysis is dry. ``minmod``: that estimate
    over the older and over the newer half of the frames, the smaller where
    they agree in sign and 0 where they do not (:func:`minmod`): a growth
    both halves show, at the rate both support. ``smoothing_px`` > 0: every
    frame's rain is first smoothed within the rain (:func:`smooth_within_rain`).
    Why (fifteenth round, validation only, ``benchmarks/trend_consistency.py``):
    at full weight the slope over 8 frames lost 0.015 at its worst lead for
    +0.19 CSI@5 on the growth twin; the minmod of the halves with the rain
    smoothed 4 px lost 0.006 for +0.15, and allowed +0.11 at a worst lead of
    -0.0044 where the slope allowed +0.07. ``persistence_min`` above -1: all
    0 unless the scene's :func:`scene_persistence` (read from the same
    smoothed frames) is at least that (sixteenth round). ``align``: each
    rate (each half's, for the minmod and the persistence) has its residual
    displacement removed first (:func:`remove_displacement`). ``reading``: if
    given, filled with the scene's ``persistence`` where a gate reads it (what
    a product says about its forecast, without reading it twice).
    ``persistence_samples``: the persistence is evidence only over at least
    that many independent samples (:func:`persistence_pixels`; 0: over 50
    pixels, as before the twentieth round); with fewer the gate stays shut.
    ``growth_min`` > 0: all 0 unless the rate, where it grows, averages at
    least that (:func:`scene_growth`; given ``reading``, its value is put
    there as ``growth``): the twenty-fourth round's floor under what a
    rigidly moving field reads as growth. ``persistence_full`` above
    ``persistence_min`` (a ramp; it needs a gate): the rate, once the gate,
    the evidence and the growth floor (read on the unscaled rate) have let it
    through, is multiplied by :func:`persistence_ramp` of the scene's
    persistence, 0 at the gate rising linearly to 1 at ``persistence_full``;
    at or below ``persistence_min`` (:data:`NO_GATE`, the default): no ramp,
    the hard step of before the twenty-eighth round, the rate unchanged bit
    for bit. Given ``reading``, the factor is put there as ``ramp`` wherever
    the gate opens (1.0 without a ramp or without a gate); where a gate shuts,
    ``ramp`` is not put. Why (twenty-eighth round): a step turns the small
    moves of the persistence between runs 5 min apart (median 0.02-0.03)
    into the whole growth or none. ``growth_ratio_min`` > 0: all 0 where
    the scene's growth slowed within the window, i.e. where
    :func:`growth_ratio` of the rate (unscaled, after the growth floor,
    before the ramp) and the two halves' rates (:func:`half_rates` of the
    same frames, those the gate reads) is below it; an undefined ratio (the
    older half did not grow where the rate grows: a growth that began in the
    newer half) passes. 0 (the default): no such floor, the rate unchanged
    bit for bit. Given ``reading``, the ratio (``None`` where undefined) is
    put there as ``growth_ratio`` wherever it is computed: with the floor,
    or wherever the halves are read anyway (a gate, the minmod). Why
    (thirtieth round): a growth that slows within its 40 minutes is the
    "grew, then stopped" kind; the two costly read windows of that kind
    (seed 7 window 117, seed 20 window 33) grew in their newer half 0.79 and
    0.60 as fast as in their older half, the growth sets' windows 0.89 or
    more, and the twenty-sixth look named a floor of 0.85
    (docs/benchmarks.md, "Skill, thirtieth round").

    Raises
    ------
    ValueError
        An unknown ``estimator``; a ramp (``persistence_full`` above
        ``persistence_min``) without a gate (``persistence_min`` at
        :data:`NO_GATE`); a ``growth_ratio_min`` below 0 or not finite.
    """
    if estimator not in TREND_ESTIMATORS:
        raise ValueError(f"unknown trend estimator {estimator!r}: choose from {list(TREND_ESTIMATORS)}")
    ramped = persistence_full > persistence_min
    if ramped and not persistence_min > NO_GATE:
        raise ValueError(f"a persistence ramp (full at {persistence_full:g}) needs a persistence gate above "
                         f"{NO_GATE:g}, got {persistence_min:g}")
    if not 0.0 <= growth_ratio_min < np.inf:  # NaN fails too
        raise ValueError(f"a growth-ratio floor must be a ratio >= 0 (0: none), got {growth_ratio_min}")
    x = np.asarray(x, dtype=np.float32)
    if smoothing_px > 0:
        x = smooth_within_rain(x, smoothing_px)
    halves = half_rates(x, linearity_power, align) if estimator == "minmod" or persistence_min > NO_GATE else None
    if persistence_min > NO_GATE:  # the gate first: a shut one needs no rate (most forecasts; the slope is dear)
        needed = persistence_pixels(persistence_samples, smoothing_px)
        persistence = rate_correlation(*halves, min_pixels=needed)
        pixels = int(((halves[0] != 0) & (halves[1] != 0)).sum())
        if reading is not None:
            reading.update(persistence=persistence, pixels=pixels, pixels_needed=needed)
        if pixels < needed or persistence < persistence_min:  # too little evidence shuts any gate
            return np.zeros(x.shape[1:], dtype=halves[0].dtype)
    factor = persistence_ramp(persistence, persistence_min, persistence_full) if ramped else 1.0
    if reading is not None:
        reading.update(ramp=factor)
    if estimator == "minmod":
        rate = minmod(*halves)
    else:
        rate = _slope_rate(x, linearity_power)
        rate = remove_displacement(rate, x[-1]) if align else rate
    if growth_min > 0 or reading is not None:
        growth = scene_growth(rate)
        if reading is not None:
            reading.update(growth=growth)
        if growth < growth_min:  # no more growth than a field that only moves reads
            return np.zeros_like(rate)
    if growth_ratio_min > 0 or (reading is not None and halves is not None):  # the halves cost nothing more here
        if halves is None:
            halves = half_rates(x, linearity_power, align)
        ratio = growth_ratio(rate, *halves)
        if reading is not None:
            reading.update(growth_ratio=ratio)
        if growth_ratio_min > 0 and ratio is not None and ratio < growth_ratio_min:  # grew, then slowed
            return np.zeros_like(rate)
    if ramped and factor != 1.0:  # after the floor: the floor reads the scene's growth, not the ramp's share
        rate = (rate * np.asarray(factor, dtype=rate.dtype)).astype(rate.dtype, copy=False)
    return rate


def persistence_ramp(persistence: float, persistence_min: float, persistence_full: float) -> float:
    """The share of the window's trend a scene of persistence ``persistence`` (rho) gets: 0 at the gate, 1 at ``full``.

    ``clip((persistence - persistence_min) / (persistence_full -
    persistence_min), 0, 1)``: exactly 0 at the gate ``persistence_min``,
    rising linearly to exactly 1 at ``persistence_full`` and staying 1 above
    it. ``persistence_full`` at or below ``persistence_min`` (e.g.
    :data:`NO_GATE`): no ramp, 1.0 (the hard step at the gate, which
    :func:`window_trend` applies itself). A persistence that is not a number:
    0 (no evidence, as :func:`rate_correlation` reads one). Why (twenty-eighth
    round, ``benchmarks/gate_consistency.py``): the persistence of a scene
    moves a little between runs 5 min apart (median 0.02-0.03), and a hard
    threshold turned those moves into the whole growth or none, so a
    forecaster saw growth appear and disappear between successive runs; on
    the read growth sets a quarter to two fifths of the growing scenes switched
    it off and on within an hour of runs. With a ramp a small move of the
    persistence moves the forecast a little. Public so that the benchmarks
    weigh their candidates as forecasts do.
    """
    low, high = float(persistence_min), float(persistence_full)
    if not high > low:
        return 1.0
    rho = float(persistence)
    if np.isnan(rho):
        return 0.0
    return float(min(max((rho - low) / (high - low), 0.0), 1.0))


def scene_growth(rate: np.ndarray) -> float:
    """The mean of ``rate`` (network units per step) over the pixels where it grows; 0 where nothing grows.

    Why (twenty-fourth round, ``benchmarks/persistence_evidence.py``): a field
    that only moves still reads as growing where the motion's error and the
    interpolation of the older frames lower its peaks, and on the read rigid
    sets the windows that opened a persistence gate of 0.55 read 0.0007-0.0038
    per step where they grew (0.057 dB per 5 min at most, 15 dB per unit); the
    growth sets' windows read 0.0034-0.056, 201 of 204 above 0.0038. Not the net (growth and decay summed):
    a moving field's apparent growth is net positive inside the analysis' rain
    (the flanks the smoothing wets lie outside it), so the net did not tell
    the two apart.
    """
    rate = np.asarray(rate)
    grows = rate > 0
    return float(rate[grows].mean()) if grows.any() else 0.0


def growth_ratio(rate: np.ndarray, older: np.ndarray, newer: np.ndarray) -> float | None:
    """How fast the newer half of the window grew against the older, where ``rate`` grows (``None``: undefined).

    The mean of ``newer`` over the pixels where ``rate`` > 0, over the mean
    of ``older`` there (``older`` and ``newer``: :func:`half_rates` of the
    frames ``rate`` was read from). ``None`` where nothing grows or the older
    half's mean there is not positive: the older half did not grow there, a
    growth that began in the newer half. Below 1: the growth slowed within
    the window. Why (thirtieth round): the costly read windows of the "grew,
    then stopped" kind read 0.79 and 0.60, the growth sets' windows 0.89 or
    more (``benchmarks/persistence_evidence.py``, which reads it with this
    function); :func:`window_trend` shuts the trend below
    ``growth_ratio_min``. Public so that the benchmarks read it as forecasts do.
    """
    grows = np.asarray(rate) > 0
    before = float(np.asarray(older)[grows].mean()) if grows.any() else 0.0
    return float(np.asarray(newer)[grows].mean()) / before if before > 0 else None


def half_rates(x: np.ndarray, linearity_power: float = TREND_LINEARITY_POWER,
               align: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The rates ``(h, w)`` read over the older and over the newer half of moved frames ``x`` (older first).

    What the minmod estimator limits and :func:`scene_persistence` correlates;
    ``x`` as the caller reads it (smoothed or not). ``align``: each with its
    residual displacement removed (:func:`remove_displacement`, on the
    gradient of the half's newest frame).
    """
    half = x.shape[0] // 2
    older, newer = _slope_rate(x[:half], linearity_power), _slope_rate(x[half:], linearity_power)
    if align:
        older, newer = remove_displacement(older, x[half - 1]), remove_displacement(newer, x[-1])
    return older, newer


def remove_displacement(rate: np.ndarray, field: np.ndarray, min_pixels: int = MIN_PERSISTENCE_PIXELS,
                        sigma: float | None = None) -> np.ndarray:
    """``rate`` less the part a residual displacement of ``field`` explains: growth that is only misplaced rain.

    An older frame moved to the analysis time by a slightly wrong motion is
    displaced, so the rate read over the window picks up ``∇field · d``:
    growth where the error moves the rain, decay on the other side, the same
    in every half (sixteenth round: why a field that only moves reads as a
    persistent trend). Here ``d`` is a residual translation and rotation
    of the scene (three numbers), fitted by least squares to the rate over
    its non-zero pixels, and its part is removed there; zeros stay zero.
    Fewer than ``min_pixels``: unchanged. Not a divergence: a cell growing in
    place reads like one expanding, and a fit with divergence (and shear)
    removed 40 % of a uniform growth in the tests. Each column of the fit is
    smoothed over the rain as the rate was (``sigma``, default
    :data:`nowcast.models.predictor.TREND_SIGMA_PX`), so that a displacement's
    smoothed rate is what is fitted.
    """
    from nowcast.models.predictor import TREND_SIGMA_PX

    rate = np.asarray(rate)
    use = rate != 0
    if int(use.sum()) < int(min_pixels):
        return rate
    field = np.asarray(field, dtype=np.float64)
    gy, gx = np.gradient(field)
    ny, nx = rate.shape
    yy, xx = np.mgrid[:ny, :nx]
    yy, xx = (yy - (ny - 1) / 2) / max(ny, 1), (xx - (nx - 1) / 2) / max(nx, 1)
    columns = smooth_within_rain(np.stack([gx, gy, gy * xx - gx * yy]) * (field > 0), TREND_SIGMA_PX
                                 if sigma is None else sigma, wet=field > 0)  # d = (a - w y, b + w x)
    design = np.moveaxis(columns, 0, -1)[use]
    coef, *_ = np.linalg.lstsq(design, rate[use].astype(np.float64), rcond=None)
    out = rate.astype(np.float64, copy=True)
    out[use] -= design @ coef
    return out.astype(rate.dtype, copy=False)


def scene_persistence(x: np.ndarray, linearity_power: float = TREND_LINEARITY_POWER, smoothing_px: float = 0.0,
                      min_pixels: int = MIN_PERSISTENCE_PIXELS, align: bool = False) -> float:
    """How far the scene's trend went on within its window: one number per forecast, read from the frames alone.

    The Pearson correlation, over the pixels where both are read (non-zero),
    of the rates over the older and the newer half of ``x`` (``(T, h, w)``
    moved frames, network units, dry exactly 0; the rain smoothed
    ``smoothing_px`` first, as :func:`window_trend` reads it). Near 1: the
    growth and decay of the first half went on into the second; near 0 or
    below: cells grew and died at random. Why (sixteenth round): on the
    simulated days a pixel's trend tells nothing about its next hour, on the
    growth set it tells most; the field's practice is to estimate
    persistence from the window being forecast (STEPS fits each cascade
    level's autocorrelation to the newest frames). Fewer than
    ``min_pixels`` such pixels, or rates that do not vary: 0 (no evidence).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.shape[0] < MINMOD_FRAMES:
        raise ValueError(f"scene persistence needs at least {MINMOD_FRAMES} frames (two halves of three), "
                         f"got {x.shape[0]}")
    if smoothing_px > 0:
        x = smooth_within_rain(x, smoothing_px)
    return rate_correlation(*half_rates(x, linearity_power, align), min_pixels=min_pixels)


def rate_correlation(older: np.ndarray, newer: np.ndarray, min_pixels: int = MIN_PERSISTENCE_PIXELS) -> float:
    """:func:`scene_persistence` of two halves' rates: their correlation where both are read, 0 without evidence."""
    use = (older != 0) & (newer != 0)
    if int(use.sum()) < int(min_pixels):
        return 0.0
    a, b = older[use].astype(np.float64), newer[use].astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def _slope_rate(x: np.ndarray, linearity_power: float) -> np.ndarray:
    """:func:`nowcast.models.predictor.trend_rate` of ``(T, h, w)`` frames, as a numpy ``(h, w)``."""
    import torch

    from nowcast.models.predictor import trend_rate

    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, :, None]
    with torch.no_grad():
        return trend_rate(inputs, linearity_power=float(linearity_power))[0, 0].numpy()


def network_agreement(rate: np.ndarray, change: np.ndarray) -> np.ndarray:
    """``rate`` kept only where the network's ``(leads, h, w)`` change grows on average over the leads, else 0.

    Why (sixteenth round, step 5): a cell that grew steadily through the
    window and is about to decay reads as a persisting growth; the network was
    trained on days whose cells are born, grow and die, and its own change
    carried information about the days' next hour that no trend did.
    """
    grows = np.asarray(change, dtype=np.float64).mean(axis=0) > 0
    return np.where(grows, rate, 0.0).astype(np.asarray(rate).dtype, copy=False)


def minmod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smaller of ``a`` and ``b`` in magnitude where they agree in sign, 0 where they do not (a slope limiter)."""
    return np.where(np.sign(a) == np.sign(b), np.sign(a) * np.minimum(np.abs(a), np.abs(b)), 0.0).astype(
        np.result_type(a, b), copy=False)


def smooth_within_rain(x: np.ndarray, sigma: float, wet: np.ndarray | None = None) -> np.ndarray:
    """Every frame of ``x`` (network units, dry exactly 0) smoothed over its wet pixels; dry stays dry.

    A Gaussian of ``sigma`` pixels normalised by the smoothed wet mask, so a
    rain edge is not pulled towards the dry zero around it. ``wet``: one
    ``(h, w)`` mask for every frame instead of each frame's ``x > 0`` (for
    frames of any sign).
    """
    from scipy.ndimage import gaussian_filter

    wet = ((x > 0) if wet is None else np.broadcast_to(np.asarray(wet, dtype=bool), x.shape)).astype(np.float64)
    out = np.zeros_like(x)
    for k in range(x.shape[0]):
        num = gaussian_filter(x[k] * wet[k], sigma)
        den = gaussian_filter(wet[k], sigma)
        out[k] = np.where(wet[k] > 0, num / np.maximum(den, 1e-6), 0.0)
    return out


#: A candidate of the rule: ``(growth, decay, trend, trend_decay, trend_lifetime)``, the same at every lead.
Candidate = tuple[float, float, float, float, float]
#: ``scores[candidate][set] -> {"csi@1": [...per lead], "csi@5": [...], "change": mean absolute applied change}``.
GridScores = dict[Candidate, dict[str, dict[str, Any]]]


def as_candidate(key: Sequence[float]) -> Candidate:
    """A candidate from ``(growth, decay)``, ``(growth, decay, trend)`` (the signed trend, 6-step lifetime) or all five."""
    values = [float(v) for v in key]
    if len(values) not in (2, 3, 5):
        raise ValueError(f"a candidate is (growth, decay[, trend[, trend_decay, lifetime]]), got {tuple(key)}")
    if len(values) == 2:
        values.append(0.0)
    if len(values) == 3:
        values += [values[2], TREND_DAMPING_STEPS]
    return tuple(values)  # type: ignore[return-value]


def candidates(grid: Sequence[float] = NETWORK_GRID, trend_grid: Sequence[float] = TREND_GRID,
               forms: Sequence[str] = TREND_FORMS, lifetimes: Sequence[float] = TREND_LIFETIMES) -> list[Candidate]:
    """Every candidate of ``grid`` x ``grid`` x ``trend_grid`` x ``forms`` x ``lifetimes``, extrapolation's included.

    A trend weight of 0 is one candidate per network pair (no trend has no
    form or lifetime). ``candidates(GRID, TREND_GRID, ["signed"], [6])``: the
    thirteenth round's 245; ``candidates(GRID, [0])``: the twelfth round's 49.
    """
    unknown = set(forms) - set(TREND_FORMS)
    if unknown:
        raise ValueError(f"unknown trend form(s) {sorted(unknown)}: choose from {list(TREND_FORMS)}")
    keys: list[Candidate] = []
    for t in trend_grid:
        trends = ([(0.0, 0.0, TREND_DAMPING_STEPS)] if float(t) == 0.0 else
                  [(float(t), float(t) if form == "signed" else 0.0, float(life)) for form in forms for life in lifetimes])
        keys += [(float(g), float(d), *trend) for trend in trends for g in grid for d in grid]
    return list(dict.fromkeys(keys))


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
    ``change``: the mean over sets of the mean absolute change the candidate
    applies (NaN if the scores do not carry it).
    """
    diffs = np.concatenate([gains(by_set[s], references[s], thresholds).ravel() for s in references])
    diffs = diffs[np.isfinite(diffs)]
    heavy = [np.asarray(by_set[s]["csi@5"], dtype=np.float64) for s in references]
    heavy = [float(np.nanmean(c)) for c in heavy if np.isfinite(c).any()]
    change = [float(by_set[s]["change"]) for s in references if "change" in by_set[s]]
    return {"worst": float(diffs.min()) if diffs.size else 0.0, "csi5": float(np.mean(heavy)) if heavy else float("nan"),
            "change": float(np.mean(change)) if change else float("nan")}


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


def choose_candidate(summaries: Mapping[Candidate, Mapping[str, float]], tie_break: str = "least-change",
                     tie: float = TIE) -> Candidate:
    """The rule's choice among candidates' :func:`summarise` (``worst``, ``csi5``, ``change``), as :func:`choose_weights`.

    Apart so that ``benchmarks/rule_cv.py`` judges the very rule that chooses
    the shipped weights. ``tie``: the worst-lead (and CSI@5) tolerance, 0 for
    no tolerance; a difference of exactly ``tie`` ties (1e-9: float noise).
    Where ``change`` is NaN (scores without it) the sum of the weights stands
    in for it.
    """
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"unknown tie_break {tie_break!r}: choose from {list(TIE_BREAKS)}")

    def weight_sum(key: Candidate) -> float:
        return sum(key[:4])

    if tie_break == "csi5":  # equal CSI@5 goes to the candidate closer to extrapolation
        return choose_best(summaries, tie=tie, slack=1e-9, order=lambda key: -weight_sum(key))
    best = max(r["worst"] for r in summaries.values())
    tied = [key for key, r in summaries.items() if r["worst"] >= best - tie - 1e-9]
    if tie_break == "csi5-then-least-change":
        heavy = max(summaries[key]["csi5"] for key in tied)
        tied = [key for key in tied if summaries[key]["csi5"] >= heavy - tie - 1e-9]

    def departure(key: Candidate) -> float:
        change = summaries[key]["change"]
        return change if np.isfinite(change) else weight_sum(key)

    return min(tied, key=lambda key: (departure(key), -summaries[key]["worst"], -summaries[key]["csi5"]))


def choose_weights(grid_scores: GridScores, references: Mapping[str, Mapping[str, Sequence[float]]],
                   leads: int | None = None, tie_break: str = "least-change", tie: float = TIE,
                   ) -> tuple[ChangeWeights, dict[Candidate, dict[str, float]]]:
    """The rule of the module docstring over ``grid_scores`` (:data:`EXTRAPOLATION` left out).

    Parameters
    ----------
    grid_scores
        Per candidate (:func:`as_candidate`) and validation set, the per-lead
        CSI (and the mean absolute change applied, ``change``).
    references
        Per validation set, extrapolation's per-lead CSI on the same sequences.
    leads
        Leads the weights are written for (default: the scores' leads).
    tie_break
        ``least-change`` (the current rule, "rule 15"): among the candidates
        tied on the worst lead the one applying the least change wins (the
        smallest sum of weights where the scores carry no ``change``).
        ``csi5-then-least-change`` (the fourteenth round's first rule): those
        within :data:`TIE` of the largest mean CSI@5 are tied again first.
        ``csi5`` (rounds 12 and 13): the larger mean CSI@5, then the
        candidate with the smaller sum of weights.
    tie
        The worst-lead (and CSI@5) tolerance of :func:`choose_candidate`
        (0: "best worst lead", the rule the fifteenth round's cross-validation
        chose for the sixteenth).

    Returns
    -------
    weights, summaries
        The chosen weights at every lead, and every candidate's :func:`summarise`.
    """
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"unknown tie_break {tie_break!r}: choose from {list(TIE_BREAKS)}")
    scores = {as_candidate(key): by_set for key, by_set in grid_scores.items()}
    summaries = {key: summarise(by_set, references) for key, by_set in scores.items() if key != EXTRAPOLATION}
    if not summaries:
        raise ValueError("no candidate: the grid holds only (0, 0, 0), extrapolation itself")
    chosen = choose_candidate(summaries, tie_break, tie)
    if leads is None:
        first = next(iter(scores[chosen].values()))
        leads = len(first["csi@1"])
    return ChangeWeights.from_key(chosen, leads), summaries


def score_grid(raw_changes: Callable[[np.ndarray, int], np.ndarray], normaliser, sequences: Mapping[str, np.ndarray],
               input_frames: int, leads: int, motion_method: str = "LK",
               keys: Sequence[Sequence[float]] | None = None,
               trend_linearity_power: float = TREND_LINEARITY_POWER, motion_frames: int | None = None,
               per_sequence: dict | None = None,
               trend: Callable[[np.ndarray, float], np.ndarray] | None = None,
               network_agrees: bool = False, ceiling: str = "none") -> GridScores:
    """Per-lead scores of a Lagrangian forecast under every candidate's weights, on every validation set.

    The motion, the moved window (:func:`nowcast.models.lagrangian.prepare`),
    the network and the window trend run once per sequence; every candidate
    then only weighs the stored change, adds the weighted trend, advects
    (:func:`nowcast.models.lagrangian.finish`) and is scored at
    :data:`THRESHOLDS` (CSI pooled from each forecast's
    :func:`nowcast.models.skill.csi_counts`, the CSI of every other score).
    Each set's scores also carry ``change``, the mean absolute change
    (network units) the candidate applies, averaged over the set's sequences
    (0 for a dry window).

    Parameters
    ----------
    raw_changes
        The network's *unweighted* change, ``(x, leads) -> (leads, h, w)``
        (:meth:`nowcast.models.zoo.Forecaster._raw_changes`).
    sequences
        Per validation set, ``(n, input_frames + leads, ny, nx)`` mm/h.
    keys
        Candidates to score (:func:`as_candidate`; default: every one of
        :func:`candidates`).
    motion_frames
        Motion from the newest ``motion_frames`` of the ``input_frames``
        (:func:`nowcast.models.lagrangian.prepare`; ``None``: all). With
        ``input_frames`` longer than the network's window, ``raw_changes``
        gets every moved frame and must read its own (the trend reads all).
    per_sequence
        If given, filled with what each forecast scored, for resampling the
        sequences (``benchmarks/rule_cv.py``): ``per_sequence[set] =
        {"counts": (candidates, sequences, leads, thresholds, 3)`` CSI counts
        (:func:`nowcast.models.skill.csi_counts`) ``, "change": (candidates,
        sequences)`` mean absolute applied change, ``"keys": [...]}``.
    trend
        ``(moved frames, linearity power) -> (h, w)`` rate the weights add
        (default :func:`window_trend`, what a forecast adds); another
        estimator only for experiments (``benchmarks/trend_consistency.py``).
    network_agrees
        Every candidate adds its trend only where the network grows
        (:attr:`ChangeWeights.trend_network_agrees`).
    ceiling
        Every candidate's trend is bounded by this ceiling
        (:attr:`ChangeWeights.trend_ceiling`).
    """
    from nowcast.models import lagrangian
    from nowcast.models.skill import csi_counts, csi_from_counts

    keys = [as_candidate(key) for key in (keys or candidates())]
    weights = {key: replace(ChangeWeights.from_key(key, leads, trend_linearity_power),
                            trend_network_agrees=bool(network_agrees), trend_ceiling=str(ceiling)) for key in keys}
    trended = any(w.uses_trend for w in weights.values())
    out: GridScores = {key: {} for key in keys}
    for name, seqs in sequences.items():
        # what the rule reads, per forecast: CSI counts at its thresholds (pooled below) and the change applied
        counts = np.zeros((len(keys), len(seqs), leads, len(THRESHOLDS), 3), dtype=np.int32)
        applied = np.zeros((len(keys), len(seqs)))
        for i, seq in enumerate(seqs):
            window = np.asarray(seq[:input_frames], dtype=np.float32)
            truth = seq[input_frames : input_frames + leads]
            prepared = lagrangian.prepare(window, leads, normaliser, motion_method,
                                          motion_frames=motion_frames)  # once per window
            if prepared.wet:  # a dry window stays dry whatever the weights (the network is not run)
                change = np.asarray(raw_changes(prepared.inputs, leads))
                rate = (trend or window_trend)(prepared.inputs, trend_linearity_power) if trended else None
                headroom = weights[keys[0]].headroom(prepared.inputs) if trended else None  # one ceiling for all
            for k, key in enumerate(keys):
                weighed = weights[key].apply(change, rate, headroom) if prepared.wet else None
                counts[k, i] = csi_counts(lagrangian.finish(prepared, weighed).astype(np.float32), truth, THRESHOLDS)
                applied[k, i] = float(np.abs(weighed).mean()) if weighed is not None else 0.0
            if (i + 1) % 16 == 0:
                log.info("%s: %d / %d sequences scored under %d candidate weights", name, i + 1, len(seqs), len(keys))
        pooled = csi_from_counts(counts.sum(axis=1, dtype=np.int64))  # (candidates, leads, thresholds)
        for k, key in enumerate(keys):
            out[key][name] = {**{f"csi@{t:g}": pooled[k, :, j].tolist() for j, t in enumerate(THRESHOLDS)},
                              "change": float(applied[k].sum()) / max(len(seqs), 1)}
        if per_sequence is not None:
            per_sequence[name] = {"keys": keys, "counts": counts, "change": applied}
    return out


def newest_frames(network: Callable[[np.ndarray, int], np.ndarray], frames: int) -> Callable[[np.ndarray, int], np.ndarray]:
    """``network`` reading only the newest ``frames`` of the moved frames it is given (the trend may read more)."""
    def run(x: np.ndarray, leads: int) -> np.ndarray:
        return network(x[-int(frames):], leads)
    return run


def extrapolation_references(sequences: Mapping[str, np.ndarray], input_frames: int, leads: int,
                             history: int | None = None) -> dict[str, dict[str, list[float]]]:
    """Per set, pysteps extrapolation's per-lead CSI at :data:`THRESHOLDS`: what the rule compares candidates with.

    Extrapolation reads the newest ``input_frames`` of each sequence's first
    ``history`` frames (default ``input_frames``) and is verified on the
    ``leads`` after them, the leads a forecast reading ``history`` frames is
    verified on.
    """
    from nowcast.baselines import extrapolation
    from nowcast.models.skill import score_method

    n_in = int(input_frames)
    history = n_in if history is None else int(history)
    out = {}
    for name, seqs in sequences.items():
        scores = score_method(extrapolation, np.asarray(seqs)[:, history - n_in :], n_in, leads)
        out[name] = {f"csi@{t:g}": scores[f"csi@{t:g}"] for t in THRESHOLDS}
    return out


def calibrate(forecaster, sequences: Mapping[str, np.ndarray], leads: int = 12,
              keys: Sequence[Sequence[float]] | None = None, tie_break: str = "least-change", trend_frames: int = 0,
              trend_estimator: str = "slope", trend_smoothing_px: float = 0.0,
              trend_persistence_min: float = NO_GATE, tie: float = TIE,
              trend_grid: Sequence[float] = TREND_GRID, trend_network_agrees: bool = False,
              trend_align: bool = False, network_grid: Sequence[float] = NETWORK_GRID,
              trend_forms: Sequence[str] = TREND_FORMS, trend_lifetimes: Sequence[float] = TREND_LIFETIMES,
              per_sequence: dict | None = None, trend_ceiling: str = "none", trend_persistence_samples: float = 0.0,
              trend_growth_min: float = 0.0, trend_persistence_full: float = NO_GATE,
              trend_growth_ratio_min: float = 0.0):
    """Choose a Lagrangian forecaster's change weights on validation ``sequences`` (:func:`choose_weights`).

    ``trend_frames`` (more than the network's ``input_frames``): the trend is
    read over that many frames (:attr:`ChangeWeights.trend_frames`; the
    sequences must hold ``trend_frames + leads`` frames), the motion and the
    network from the newest ``input_frames``, as a forecast under the chosen
    weights reads them; extrapolation, the reference, from those newest
    ``input_frames`` too. 0: all from the network's window.
    ``trend_estimator``, ``trend_smoothing_px``, ``trend_persistence_min``:
    how every candidate's trend is read (:func:`window_trend`), stored with
    the chosen weights. ``tie``: the rule's worst-lead tolerance
    (:func:`choose_candidate`; 0: "best worst lead"; :data:`SELECTION_RULES`).
    ``trend_network_agrees``: every candidate adds its trend only where the
    network grows (:func:`network_agreement`), stored with the chosen weights.
    ``trend_align``: every candidate's rate has its residual displacement
    removed (:func:`remove_displacement`), stored with the chosen weights.
    ``trend_ceiling``: every candidate's trend is bounded by this ceiling
    (:meth:`ChangeWeights.headroom`), stored with the chosen weights.
    ``trend_persistence_samples``: the gate's floor of evidence
    (:func:`persistence_pixels`), stored with the chosen weights.
    ``trend_growth_min``: the scene's growth floor (:func:`scene_growth`),
    stored with the chosen weights.
    ``trend_persistence_full``: every candidate's trend is weighed by the
    persistence ramp up to this correlation (:func:`persistence_ramp`;
    :data:`NO_GATE`: the step at the gate), stored with the chosen weights.
    ``trend_growth_ratio_min``: every candidate's trend is shut where the
    scene's growth slowed within the window (:func:`growth_ratio` below it;
    0: no floor), stored with the chosen weights.
    ``network_grid``, ``trend_grid``, ``trend_forms``, ``trend_lifetimes``:
    the candidates when ``keys`` is not given (:func:`candidates`;
    :data:`EXTENDED_TREND_GRID` adds 1.5 and 2 to the trend weights).
    ``per_sequence``: filled with every forecast's CSI counts
    (:func:`score_grid`), for ``benchmarks/rule_cv.py``.

    Returns
    -------
    weights, summaries, grid_scores, references
        The chosen :class:`ChangeWeights`, every candidate's worst-lead
        difference and mean CSI@5, every candidate's scores and extrapolation's,
        per validation set.
    """
    if not forecaster.lagrangian:
        raise ValueError(f"model {forecaster.config.name!r}: change weights are for Lagrangian models")
    n_in = int(forecaster.config.input_frames)
    history = max(n_in, int(trend_frames))
    check_trend_reading(trend_frames, trend_estimator, trend_smoothing_px, trend_persistence_min,
                        trend_ceiling, trend_persistence_samples, trend_growth_min,
                        trend_persistence_full, trend_growth_ratio_min)  # before any scoring
    check_trend_grid(network_grid, trend_grid, trend_forms, trend_lifetimes)
    for name, seqs in sequences.items():
        if np.shape(seqs)[1] < history + leads:
            raise ValueError(f"validation set {name}: sequences of {np.shape(seqs)[1]} frames, {history + leads} "
                             f"needed ({history} of history, {leads} leads)")
    short = {name: seqs[:, : history + leads] for name, seqs in sequences.items()}
    m = forecaster.config.motion_frames  # extrapolation and the forecast read the motion over these frames
    references = extrapolation_references(short, m, leads, history)
    keys = keys or candidates(network_grid, trend_grid, trend_forms, trend_lifetimes)
    grid = score_grid(newest_frames(forecaster._raw_changes, n_in), forecaster.normaliser, short, history, leads,
                      forecaster.config.motion.method, keys,
                      motion_frames=m if history > m else None,
                      trend=lambda x, power: window_trend(x, power, trend_estimator, trend_smoothing_px,
                                                          trend_persistence_min, trend_align,
                                                          persistence_samples=trend_persistence_samples,
                                                          growth_min=trend_growth_min,
                                                          persistence_full=trend_persistence_full,
                                                          growth_ratio_min=trend_growth_ratio_min),
                      network_agrees=trend_network_agrees, per_sequence=per_sequence, ceiling=trend_ceiling)
    weights, summaries = choose_weights(grid, references, leads, tie_break, tie)
    weights = replace(weights, trend_frames=history if history > n_in else 0, trend_estimator=trend_estimator,
                      trend_smoothing_px=float(trend_smoothing_px), trend_persistence_min=float(trend_persistence_min),
                      trend_network_agrees=bool(trend_network_agrees), trend_align=bool(trend_align),
                      trend_ceiling=str(trend_ceiling), trend_persistence_samples=float(trend_persistence_samples),
                      trend_growth_min=float(trend_growth_min),
                      trend_persistence_full=float(trend_persistence_full),
                      trend_growth_ratio_min=float(trend_growth_ratio_min))
    return weights, summaries, grid, references
