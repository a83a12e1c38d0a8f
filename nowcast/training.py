"""One training loop for every regime of the transfer study.

The regimes differ only in their config (``configs/models/*.yaml``):

* **source pretraining** and **target from scratch**: a plain predictor;
* **finetune**: ``training.init_from`` names a source checkpoint whose
  weights (where names and shapes match) start the target;
* **TMU**: ``tmu.sources`` names N frozen source checkpoints; the loss is the
  prediction MSE plus ``lambda * sum_n w_n * distillation MSE_n``, with
  ``w_n = 1/N`` or adaptive (softmax over sources of the negative running
  distillation error, relative to its mean: sources whose memory the target
  can explain weigh more; the running error is an EMA and detached).

Reproducibility: the initial weights come from ``training.seed``; batch ``k``
and the scheduled-sampling mask of iteration ``k`` are pure functions of
``(seed, k)``. Together with the optimizer state saved beside the checkpoint
(``NAME.state.pt``), a resumed run therefore continues *exactly* as an
uninterrupted one (tested), and two runs with the same seed give the same
weights bit for bit on CPU.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nowcast.errors import CheckpointError, ConfigError, NowcastError
from nowcast.models.config import ModelConfig, TMUConfig, TrainingConfig
from nowcast.models.predictor import Predictor, PredictorOutput, fold
from nowcast.models.tmu import MemoryBank, layer_index
from nowcast.models.zoo import (
    Checkpoint,
    _atomic_torch_save,
    architecture_metadata,
    load_named_checkpoint,
    save_checkpoint,
)
from nowcast.precision import autocast, resolve_precision

log = logging.getLogger(__name__)

#: ``start_batch -> iterator of (B, T, 1, H, W) normalised float32 batches``.
BatchFactory = Callable[[int], Iterable[torch.Tensor]]


class TrainingDivergedError(NowcastError):
    """The loss became NaN or infinite: training stops instead of saving garbage."""


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    checkpoint: Path
    iterations: int
    final_losses: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    sha256: str = ""
    seconds_per_iteration: float = float("nan")


# ================================================================ data
def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]) & (2**63 - 1)


class ZarrSequences:
    """Random crops of sequences written by :func:`pipelines.simulate.simulate_dataset`.

    The store holds ``rain_rate`` (mm h-1) or ``brightness_temperature`` (K)
    with dims ``(sequence, time, y, x)``. Batch ``k`` draws its sequences, time
    offsets and crop corners from ``default_rng([seed, split, k])``, so a
    resumed run sees the batches it would have seen.
    """

    def __init__(self, path: str | Path, config: ModelConfig) -> None:
        import xarray as xr

        from nowcast.units import canonical_units

        self.path = Path(path)
        if not self.path.exists():
            raise ConfigError(f"{self.path}: training store does not exist (make it with 'python -m pipelines.simulate')")
        try:
            ds = xr.open_zarr(self.path)
        except Exception as exc:  # noqa: BLE001 - any failure means an unreadable store
            raise ConfigError(f"{self.path}: not a readable Zarr store ({exc})") from None
        names = [n for n, v in ds.data_vars.items() if v.dims == ("sequence", "time", "y", "x")]
        if not names:
            raise ConfigError(f"{self.path}: no variable with dims (sequence, time, y, x)")
        da = ds[names[0]]
        units = da.attrs.get("units", ds.attrs.get("units", ""))
        want = config.data.units
        if want != "unit" and units and canonical_units(units) != want:
            raise ConfigError(f"{self.path}: holds {names[0]} in {units!r}, model config {config.name!r} expects data.units {want!r}")
        self.data = da
        self.n_seq, self.n_time, self.ny, self.nx = da.shape
        d = config.data
        self.frames = d.input_frames + d.output_frames
        self.size = d.frame_size
        if self.n_time < self.frames:
            raise ConfigError(f"{self.path}: sequences of {self.n_time} frames, model needs {self.frames}")
        if self.ny < self.size or self.nx < self.size:
            raise ConfigError(f"{self.path}: frames of {self.ny}x{self.nx}, smaller than data.frame_size {self.size}")
        self.normaliser = d.normaliser
        self.cache: np.ndarray | None = None
        if da.size * 4 <= 512 * 2**20:  # small stores: read once
            self.cache = np.asarray(da.values, dtype=np.float32)
        self.lagrangian = config.frame == "lagrangian"
        self.input_frames = d.input_frames
        self.persistent_fraction = config.training.persistent_fraction
        self.persistent_motion = config.motion.method if config.training.persistent_motion == "estimated" else None
        self.persistent_rotation = config.training.persistent_rotation_deg
        self.trend_fraction = config.training.persistent_trend_fraction if config.data.modality == "rain" else 0.0
        self.trend_db = config.training.persistent_trend_db
        shift = config.training.intensity_shift_db
        self.intensity_shift_db = shift if (shift is not None and config.data.modality == "rain") else None
        self.motion = None
        if self.lagrangian:
            from pipelines.sequences import MOTION_VARIABLE, ensure_motion

            ds.close()
            self.motion_frames = config.motion_frames  # the newest input frames the motion is read from
            ensure_motion(self.path, self.motion_frames, config.motion.method)
            self.motion = xr.open_zarr(self.path)[MOTION_VARIABLE]
            if self.motion.size * 4 <= 1024 * 2**20:
                self.motion = np.asarray(self.motion.values, dtype=np.float32)
            # Frames are moved on a crop with a margin, so rain can come in
            # from outside the training crop as it does in a forecast.
            self.margin = 8

    def _read(self, sl: tuple) -> np.ndarray:
        return self.cache[sl] if self.cache is not None else np.asarray(self.data[sl].values, dtype=np.float32)

    def _draw_sequences(self, seed: int, split: int, index: int, batch_size: int) -> tuple[np.random.Generator, np.ndarray]:
        """The random stream of batch ``index`` and the sequences it draws first (the rest follows in :meth:`batch`)."""
        rng = np.random.default_rng([seed, split, index])
        return rng, rng.integers(0, self.n_seq, batch_size)

    def sequences(self, seed: int, split: int, index: int, batch_size: int) -> np.ndarray:
        """Which stored sequence each sample of batch ``index`` is cut from (e.g. to look up its regime)."""
        return self._draw_sequences(seed, split, index, batch_size)[1]

    def batch(self, seed: int, split: int, index: int, batch_size: int,
              part: slice | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Batch ``index``: ``(B, T, 1, H, W)`` normalised frames (Lagrangian models: and a validity mask).

        ``part`` (a slice of ``range(batch_size)``) returns only those samples
        of the batch, read alone: one process's share in distributed training.
        """
        rng, seqs = self._draw_sequences(seed, split, index, batch_size)
        t0 = rng.integers(0, self.n_time - self.frames + 1, batch_size)
        y0 = rng.integers(0, self.ny - self.size + 1, batch_size)
        x0 = rng.integers(0, self.nx - self.size + 1, batch_size)
        persistent = rng.random(batch_size) < self.persistent_fraction if self.lagrangian else None
        # Drawn last, and only for training batches, so batches without it are unchanged.
        gain = None
        if self.intensity_shift_db is not None and split == 0:
            gain = (10.0 ** (rng.uniform(*self.intensity_shift_db, batch_size) / 10.0)).astype(np.float32)
        rotation = None  # (B, 3): degrees per step, centre row and column as fractions of the window
        if self.lagrangian and self.persistent_rotation > 0:
            a = self.persistent_rotation
            rotation = np.column_stack([rng.uniform(-a, a, batch_size), rng.random(batch_size), rng.random(batch_size)])
        trend = None  # (B, 2): dB per step of each trend sample's pattern (0: none) and the pattern's seed
        if self.lagrangian and self.trend_fraction > 0 and split == 0:  # drawn last: other batches unchanged
            on = (rng.random(batch_size) < self.trend_fraction) & persistent
            trend = np.column_stack([np.where(on, rng.uniform(0.0, self.trend_db, batch_size), 0.0),
                                     rng.integers(0, 2**31 - 1, batch_size)])
        if part is not None:
            seqs, t0, y0, x0 = seqs[part], t0[part], y0[part], x0[part]
            persistent = None if persistent is None else persistent[part]
            gain = None if gain is None else gain[part]
            rotation = None if rotation is None else rotation[part]
            trend = None if trend is None else trend[part]
            batch_size = len(seqs)
        if self.lagrangian:
            return self._lagrangian_batch(seqs, t0, y0, x0, persistent, gain, rotation, trend)
        out = np.empty((batch_size, self.frames, self.size, self.size), dtype=np.float32)
        for b in range(batch_size):
            sl = (int(seqs[b]), slice(int(t0[b]), int(t0[b]) + self.frames),
                  slice(int(y0[b]), int(y0[b]) + self.size), slice(int(x0[b]), int(x0[b]) + self.size))
            block = self.cache[sl] if self.cache is not None else np.asarray(self.data[sl].values, dtype=np.float32)
            out[b] = block if gain is None else block * gain[b]
        return self._normalised(out)

    def sequence_batch(self, indices: np.ndarray, start: int = 0) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Stored sequences ``indices`` from frame ``start``, cropped at the store's corner, with no synthetic sample.

        :meth:`batch` draws sequences at random and makes some of them
        persistent or trending; a measurement by what each stored sequence is
        (e.g. its simulated regime) needs every sequence once, as it was
        simulated. Lagrangian models: the same frame and validity mask as
        :meth:`batch`.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if not indices.size or indices.min() < 0 or indices.max() >= self.n_seq:
            raise ValueError(f"{self.path}: sequence indices must be given and lie in 0..{self.n_seq - 1}")
        if not 0 <= start <= self.n_time - self.frames:
            raise ValueError(f"{self.path}: start {start} leaves fewer than {self.frames} frames")
        zeros = np.zeros(len(indices), dtype=np.int64)
        if self.lagrangian:
            return self._lagrangian_batch(indices, zeros + start, zeros, zeros, np.zeros(len(indices), dtype=bool))
        window = (slice(start, start + self.frames), slice(0, self.size), slice(0, self.size))
        return self._normalised(np.stack([self._read((int(i), *window)) for i in indices]))

    def _normalised(self, rates: np.ndarray) -> torch.Tensor:
        """``(B, T, 1, H, W)`` network units of ``(B, T, H, W)`` data; NaN (no data) becomes the normalisation's zero."""
        with np.errstate(invalid="ignore"):
            x = np.nan_to_num(self.normaliser.forward(rates), nan=0.0, posinf=0.0, neginf=0.0)
        return torch.from_numpy(x)[:, :, None]

    def _lagrangian_batch(self, seqs, t0, y0, x0, persistent, gain=None, rotation=None,
                          trend=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames moved to their analysis time along the stored motion (:func:`nowcast.models.lagrangian.training_batch`).

        Each crop is moved inside a window ``margin`` cells wider on every
        side (where the store allows), so rain flows in from outside the crop
        as it does in a forecast; all windows of a batch have one size.
        ``gain`` (per sample) multiplies the rain rates first
        (``training.intensity_shift_db``); rates pushed below the rain
        threshold become dry, as they would on a lighter day. ``rotation``
        (per sample: degrees per step, centre as fractions of the window)
        is the motion error persistent samples are made with
        (``training.persistent_rotation_deg``). ``trend`` (per sample: dB
        per step and a seed) gives a persistent sample a Lagrangian trend,
        a :func:`nowcast.data.testcases.growth_rate_field` of areas growing
        or decaying at up to that rate (``training.persistent_trend_fraction``).
        """
        from nowcast.models.lagrangian import training_batch

        S, m, T = self.size, self.margin, self.frames
        wy, wx = min(self.ny, S + 2 * m), min(self.nx, S + 2 * m)
        B = len(seqs)
        frames = np.empty((B, T, wy, wx), dtype=np.float32)
        vel = np.empty((B, 2, wy, wx), dtype=np.float32)
        inner = []
        for b in range(B):
            s, t = int(seqs[b]), int(t0[b])
            ya = int(np.clip(int(y0[b]) - m, 0, self.ny - wy))
            xa = int(np.clip(int(x0[b]) - m, 0, self.nx - wx))
            frames[b] = self._read((s, slice(t, t + T), slice(ya, ya + wy), slice(xa, xa + wx)))
            if gain is not None:
                frames[b] *= gain[b]
            v = self.motion[s, t + self.input_frames - 1, :, ya : ya + wy, xa : xa + wx]
            vel[b] = v if isinstance(v, np.ndarray) else v.values
            inner.append((int(y0[b]) - ya, int(x0[b]) - xa))
        error = None
        if rotation is not None:
            from nowcast.models.lagrangian import rotation_field

            error = np.stack([rotation_field((wy, wx), deg, cy * wy, cx * wx) for deg, cy, cx in rotation])
        rates = None
        if trend is not None and np.any(trend[:, 0] > 0):
            from nowcast.data.testcases import growth_rate_field

            rates = np.stack([growth_rate_field((wy, wx), "cells", db, int(seed)) if db > 0 else np.zeros((wy, wx))
                              for db, seed in trend])
        x, valid = training_batch(frames, vel, self.input_frames, self.normaliser, persistent, self.persistent_motion,
                                  error, rates, motion_frames=self.motion_frames)
        x = torch.stack([x[b, :, iy : iy + S, ix : ix + S] for b, (iy, ix) in enumerate(inner)])
        valid = torch.stack([valid[b, :, iy : iy + S, ix : ix + S] for b, (iy, ix) in enumerate(inner)])
        return x[:, :, None].contiguous(), valid[:, :, None].contiguous()


def sequences_path(config: ModelConfig, split: str = "train") -> Path:
    """The Zarr store of ``config``'s training (``"train"``) or validation sequences; relative paths are under the project root."""
    from nowcast.config import project_root

    d = config.data
    raw = d.val_path if (split != "train" and d.val_path) else d.path
    path = Path(str(raw)).expanduser()
    return path if path.is_absolute() else project_root() / path


def make_batches(config: ModelConfig, split: str = "train", start: int = 0, n_batches: int | None = None,
                 seed: int | None = None, part: slice | None = None, workers: int = 0) -> Iterator[torch.Tensor]:
    """Batches ``(B, T, 1, H, W)`` float32, normalised, for ``config.data.kind``.

    Parameters
    ----------
    split
        ``"train"`` or ``"val"`` (Moving-MNIST validation uses the *test*
        digit instances; Zarr validation uses ``data.val_path`` when given).
    start
        Index of the first batch (resuming at iteration ``k`` passes ``k``).
    n_batches
        Stop after this many (``None``: forever).
    seed
        Defaults to ``training.seed``.
    part
        Only these samples of every batch (a slice of ``range(batch_size)``),
        made alone: one process's share in distributed training.
    workers
        Zarr sequences: make the next batches in this many worker processes
        while the caller trains on the current one (0: in this process).
        Batch ``k`` depends only on ``(seed, split, k)``, so the batches are
        the same whatever the number of workers. Lagrangian batches (optical
        flow for the persistent samples) cost more than a GPU step, so on a
        GPU a run is otherwise bound by them.
    """
    d, t = config.data, config.training
    seed = t.seed if seed is None else seed
    frames = d.input_frames + d.output_frames
    if d.kind == "moving_mnist":
        from nowcast.data.moving_mnist import MovingMNIST

        # Batch k holds items k*B ... (k+1)*B - 1 of a dataset seeded by the
        # training seed (validation: test digits, another seed), so a resumed
        # run sees exactly the batches it would have seen.
        mm_split = "train" if split == "train" else "test"
        mm_seed = seed if split == "train" else seed + 1_000_003
        B = t.batch_size
        stop = None if n_batches is None else start + n_batches
        ds = MovingMNIST(d.n_digits, mm_split, frames=frames, size=d.frame_size, seed=mm_seed,
                         length=(stop if stop is not None else 2**40) * B, input_frames=d.input_frames)
        lo, hi, _ = (part or slice(0, B)).indices(B)
        k = start
        while stop is None or k < stop:
            yield torch.stack([ds[i] for i in range(k * B + lo, k * B + hi)])
            k += 1
        return
    if d.kind == "zarr_sequences":
        path = sequences_path(config, split)
        # Opened here even when workers make the batches: a bad store fails in
        # this process with its own error, and the motion is computed once,
        # before several workers could race to write it.
        store = ZarrSequences(path, config)
        code = 0 if split == "train" else 1
        stop = None if n_batches is None else start + n_batches
        if workers > 0:
            yield from _prefetched(path, config, seed, code, start, stop, part, workers)
            return
        k = start
        while stop is None or k < stop:
            yield store.batch(seed, code, k, t.batch_size, part)
            k += 1
        return
    raise ConfigError(f"model config {config.name!r}: unknown data.kind {d.kind!r}")


# ================================================================ pieces
_WORKER_STORE: ZarrSequences | None = None


def _worker_open(path: Path, config: ModelConfig) -> None:
    """Worker-process initialiser: one store per worker, opened once (its cache read once)."""
    global _WORKER_STORE
    torch.set_num_threads(1)
    _WORKER_STORE = ZarrSequences(path, config)


def _worker_batch(seed: int, code: int, index: int, batch_size: int, part: slice | None):
    assert _WORKER_STORE is not None
    return _WORKER_STORE.batch(seed, code, index, batch_size, part)


def _prefetched(path: Path, config: ModelConfig, seed: int, code: int, start: int, stop: int | None,
                part: slice | None, workers: int) -> Iterator[Any]:
    """Batches ``start, start + 1, ...`` made ahead by ``workers`` processes, yielded in order.

    At most ``2 * workers`` batches are in flight, so an endless run holds a
    bounded number in memory. The processes are spawned (not forked: the
    parent may already run OpenMP/CUDA threads) and end with the generator.
    """
    import multiprocessing as mp
    from collections import deque

    pool = mp.get_context("spawn").Pool(workers, initializer=_worker_open, initargs=(path, config))
    try:
        pending: deque = deque()
        k = start
        while True:
            while len(pending) < 2 * workers and (stop is None or k < stop):
                pending.append(pool.apply_async(_worker_batch, (seed, code, k, config.training.batch_size, part)))
                k += 1
            if not pending:
                return
            yield pending.popleft().get()
    finally:
        pool.terminate()
        pool.join()


def split_batch(item: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(frames, weight)`` of a batch; plain batches weigh every pixel 1."""
    if isinstance(item, (tuple, list)):
        return item[0], item[1]
    return item, torch.ones_like(item)


def scored_weight(weight: torch.Tensor, input_frames: int, loss_on_inputs: bool) -> torch.Tensor:
    """Loss weights of the predictions ``(B, steps, ...)``: the first ``input_frames - 1`` predict inputs.

    With ``loss_on_inputs`` False they weigh 0 and only the leads are scored
    (``training.loss_on_inputs``).
    """
    if loss_on_inputs:
        return weight
    return torch.cat([torch.zeros_like(weight[:, : input_frames - 1]), weight[:, input_frames - 1 :]], dim=1)


def masked_mse(pred: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the pixels with weight (Lagrangian sources outside the domain weigh 0)."""
    return ((pred - truth) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)


def soft_csi_loss(pred: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor, thresholds: list[float],
                  sharpness: float = 0.05) -> torch.Tensor:
    """``1 - soft CSI`` averaged over thresholds (model-space thresholds).

    Exceedance is ``sigmoid((x - threshold) / sharpness)``; hits, misses and
    false alarms are sums of products of these, so the score is
    differentiable. Unlike MSE it does not reward a blurred forecast: a smear
    loses the hits above high thresholds.
    """
    return soft_csi_from_sums(soft_csi_sums(pred, truth, weight, thresholds, sharpness))


def soft_csi_sums(pred: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor, thresholds: list[float],
                  sharpness: float = 0.05) -> torch.Tensor:
    """``(hits, forecast, observed)`` soft sums per threshold, flattened: what :func:`soft_csi_loss` is a function of."""
    sums = []
    for thr in thresholds:
        p, o = _soft_exceedance(pred, thr, sharpness) * weight, _soft_exceedance(truth, thr, sharpness) * weight
        sums += [(p * o).sum(), p.sum(), o.sum()]
    return torch.stack(sums)


def _soft_exceedance(x: torch.Tensor, threshold: float, sharpness: float) -> torch.Tensor:
    """Differentiable "x above threshold": ``sigmoid((x - threshold) / sharpness)``."""
    return torch.sigmoid((x - threshold) / sharpness)


def soft_csi_from_sums(sums: torch.Tensor) -> torch.Tensor:
    """``1 - soft CSI`` averaged over thresholds, from :func:`soft_csi_sums` (possibly summed over processes)."""
    losses = []
    for k in range(0, len(sums), 3):
        hits, p, o = sums[k], sums[k + 1], sums[k + 2]
        csi = hits / (p + o - hits).clamp_min(1e-3)
        losses.append(1.0 - csi)
    return torch.stack(losses).mean()


def soft_area_sums(pred: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor, thresholds: list[float],
                   sharpness: float = 0.05) -> torch.Tensor:
    """Soft forecast and observed areas above each threshold, per lead: ``(thresholds, 2, leads)``.

    ``pred``, ``truth``, ``weight``: ``(B, L, C, H, W)``; exceedance as in :func:`soft_csi_sums`.
    """
    out = []
    for thr in thresholds:
        p = (_soft_exceedance(pred, thr, sharpness) * weight).sum(dim=(0, 2, 3, 4))
        o = (_soft_exceedance(truth, thr, sharpness) * weight).sum(dim=(0, 2, 3, 4))
        out.append(torch.stack([p, o]))
    return torch.stack(out)


def soft_area_bias_from_sums(sums: torch.Tensor, floor: float = 1.0) -> torch.Tensor:
    """Mean over thresholds and leads of ``log((forecast + floor) / (observed + floor))**2``.

    Symmetric in the ratio (twice and half the area cost alike); ``floor`` (in
    weighted pixels) keeps leads with almost no area above a threshold from
    dominating.
    """
    return (torch.log((sums[:, 0] + floor) / (sums[:, 1] + floor)) ** 2).mean()


def distill_lambda(tmu: TMUConfig, iteration: int) -> float:
    """``lambda`` at ``iteration``: ramped linearly over ``distill_warmup`` iterations."""
    if tmu.distill_warmup <= 0:
        return tmu.distill_weight
    return tmu.distill_weight * min(1.0, (iteration + 1) / tmu.distill_warmup)


def distillation_errors(tmu: TMUConfig, distilled: list[torch.Tensor], memories: list[torch.Tensor],
                        prediction_loss: torch.Tensor, ctx: Any = None) -> torch.Tensor:
    """One distillation error per source, scaled as ``tmu.distill_scale`` says.

    ``plain`` is the paper's MSE (its size follows the source memory's
    scale, which grows over a rollout: measured 10-20x the prediction loss);
    ``variance`` divides by the variance of that source's memory over the
    batch (scale-free: 1 means "explains nothing"); ``balanced`` further
    multiplies by the detached prediction loss, so the term is at most about
    ``lambda`` times the prediction loss and can never swamp it.

    With ``ctx`` (a :class:`nowcast.distributed.Context`) the memories and
    distilled tensors are this process's share of the batch: the variances
    are those of the global batch and ``prediction_loss`` this process's
    share of the global one (its mean over processes), so the mean of the
    returned errors over processes is the global-batch errors.
    """
    errors = torch.stack([F.mse_loss(d, m) for d, m in zip(distilled, memories)])
    if tmu.distill_scale == "plain":
        return errors
    if ctx is None:
        variances = torch.stack([m.detach().var() for m in memories]).clamp_min(1e-6)
    else:
        variances = _global_variances(ctx, memories).to(errors.dtype).clamp_min(1e-6)
    errors = errors / variances
    if tmu.distill_scale == "balanced":
        errors = errors * (prediction_loss.detach() if ctx is None else ctx.all_mean(prediction_loss))
    return errors


def _global_variances(ctx: Any, tensors: list[torch.Tensor]) -> torch.Tensor:
    """The (unbiased) variance of each tensor over all processes' shares, from float64 sums."""
    moments = []
    for t in tensors:
        x = t.detach().double()
        moments += [torch.tensor(float(x.numel()), dtype=torch.float64, device=x.device), x.sum(), (x * x).sum()]
    total = ctx.all_sum(torch.stack(moments)).view(-1, 3)
    n, s1, s2 = total[:, 0], total[:, 1], total[:, 2]
    return ((s2 - s1 * s1 / n) / (n - 1).clamp_min(1.0)).clamp_min(0.0)


def learning_rate(t: TrainingConfig, iteration: int) -> float:
    """The rate of the step at 0-based ``iteration``: ``lr``, or a cosine from ``lr`` to ``lr x lr_final`` at the last step."""
    if t.lr_schedule == "constant":
        return t.lr
    progress = min(1.0, iteration / max(1, t.iterations - 1))
    return t.lr * (t.lr_final + (1.0 - t.lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def sampling_probability(t: TrainingConfig, iteration: int) -> float:
    """Probability of feeding the true frame: 1 until ``sampling_start``, linear to 0 at ``sampling_end``."""
    if iteration < t.sampling_start:
        return 1.0
    if iteration >= t.sampling_end:
        return 0.0
    return 1.0 - (iteration - t.sampling_start) / max(1, t.sampling_end - t.sampling_start)


def distillation_weights(tmu: TMUConfig, running_error: torch.Tensor | None, n: int) -> torch.Tensor:
    """``w_n``: uniform, or softmax of ``-(e_n / mean(e)) / temperature`` (adaptive).

    Dividing by the mean makes the weights independent of the sources'
    memory scale, so one temperature suits any zoo.
    """
    if tmu.weights == "uniform" or running_error is None:
        return torch.full((n,), 1.0 / n)
    rel = running_error / running_error.mean().clamp_min(1e-12)
    return torch.softmax(-rel / tmu.adaptive_temperature, dim=0)


def load_sources(config: ModelConfig) -> tuple[MemoryBank, list[Checkpoint]]:
    """The frozen sources of a TMU target, checked for compatibility.

    Raises
    ------
    CheckpointError, ConfigError
        A source is missing, corrupt, itself a TMU model, or has another
        patch size (its memory would not align with the target's grid).
    """
    assert config.tmu is not None
    ckpts, models = [], []
    for name in config.tmu.sources:
        ckpt = load_named_checkpoint(name)
        scfg = ckpt.config
        if scfg.architecture.patch_size != config.architecture.patch_size:
            raise ConfigError(
                f"model config {config.name!r}: key 'tmu.sources' source {name!r} has patch_size "
                f"{scfg.architecture.patch_size}, the target {config.architecture.patch_size}"
            )
        if ckpt.source_channels:
            raise ConfigError(f"model config {config.name!r}: key 'tmu.sources' source {name!r} is a TMU model, not a source")
        ckpts.append(ckpt)
        models.append(ckpt.build_model())
    return MemoryBank(models, layer=config.tmu.layer), ckpts


#: Pre-activation bias of a warm-started TMU's transfer gates: sigmoid(-4) = 0.018, nearly closed.
WARM_TRANSFER_BIAS = -4.0


def init_from_source(model: Predictor, name: str) -> Checkpoint:
    """Finetuning: copy every weight of a source whose name and shape match.

    A TMU target started from a plain source (``tmu`` and ``init_from``
    together, **[project]**) also takes the source's gate convolution of the
    layer the TMU replaces (the bottom, or the top with ``tmu.layer: top``):
    its ``i, f, o, g`` rows are copied, and each transfer
    gate's rows are a copy of one of them (cyclically), so that the layer
    norm over all gate channels sees the source's statistics (exactly when
    the number of sources is a multiple of 4). The transfer gates' norm
    affine starts at weight 0 and bias :data:`WARM_TRANSFER_BIAS`: they open
    only as training finds the distilled memories useful, so the target
    starts as the source's forecaster, like a finetune, plus the memories
    of every source. This holds for the ``convex`` memory update; the
    ``sum`` forms add the cell's own memory once per source and start far
    from the source whatever the gates.

    A target with the trend gate (``architecture.trend_gate``) started from
    a source without one takes the source's decoder output rows as its
    change rows and starts its gate rows shut (zero), as a fresh gated model
    does: it starts as the source's forecaster (thirty-seventh round).
    """
    ckpt = load_named_checkpoint(name)
    own = model.state_dict()
    matched = {k: v for k, v in ckpt.state_dict.items() if k in own and own[k].shape == v.shape}
    matched.update(_tmu_gate_rows(model, ckpt.state_dict, own))
    matched.update(_trend_gate_head_rows(model, ckpt.state_dict, own))
    if not matched:
        raise CheckpointError(f"{ckpt.path}: no weight of the source fits the target's architecture (training.init_from)")
    model.load_state_dict(matched, strict=False)
    skipped = sorted(set(own) - set(matched))
    log.info("init from %s: %d of %d tensors copied%s", ckpt.path, len(matched), len(own),
             f" (kept fresh: {', '.join(skipped[:6])}{'...' if len(skipped) > 6 else ''})" if skipped else "")
    return ckpt


def _tmu_gate_rows(model: Predictor, source: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The TMU layer's gate tensors built from the plain source's same layer (see :func:`init_from_source`).

    The TMU sits at the bottom or the top of the stack (``tmu.layer``): the
    source's cell at the same position gives the rows, so a top-layer TMU
    starts from the source's top cell (thirty-sixth round; before, only a
    bottom-layer TMU did, and a top one started its gates fresh).
    """
    if not model.has_tmu:
        return {}
    cell = f"cells.{layer_index(model.tmu_layer) % len(model.cells)}"
    conv_w, conv_b, norm_w, norm_b = (f"{cell}.{name}" for name in ("conv.weight", "conv.bias", "norm.weight", "norm.bias"))
    keys = (conv_w, conv_b)
    if not all(k in source for k in keys) or (norm_w in own) != (norm_w in source):
        return {}  # not a ConvLSTM layer like the target's: nothing fits
    rows = source[conv_w].shape[0]
    target_rows = own[conv_w].shape[0]
    if own[conv_w].shape[1:] != source[conv_w].shape[1:] or rows >= target_rows \
            or (target_rows - rows) % (rows // 4) != 0:
        return {}  # another width, input or kernel: the gates stay fresh
    hidden = rows // 4
    extra = (target_rows - rows) // hidden
    order = [n % 4 for n in range(extra)]  # transfer gate n copies gate (i, f, o, g)[n mod 4]

    def widen(t: torch.Tensor) -> torch.Tensor:
        blocks = [t[g * hidden:(g + 1) * hidden] for g in order]
        return torch.cat([t, *blocks])

    if norm_w not in own:  # no layer norm: the transfer gates' own bias closes them
        w, b = source[conv_w], source[conv_b]
        return {conv_w: torch.cat([w, w.new_zeros((extra * hidden, *w.shape[1:]))]),
                conv_b: torch.cat([b, b.new_full((extra * hidden,), WARM_TRANSFER_BIAS)])}
    out = {k: widen(source[k]) for k in keys}
    out[norm_w] = torch.cat([source[norm_w], source[norm_w].new_zeros(extra * hidden)])
    out[norm_b] = torch.cat([source[norm_b], source[norm_b].new_full((extra * hidden,), WARM_TRANSFER_BIAS)])
    return out


def _trend_gate_head_rows(model: Predictor, source: dict[str, torch.Tensor],
                          own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The gated target's decoder output layer from an ungated source's (see :func:`init_from_source`).

    The head's output rows are the change first and the trend gate after
    (:meth:`Predictor.split_trend_gate`), so the source's rows become the
    change rows and the gate rows are zero: the gate starts shut, and the
    target forecasts what the source forecasts.
    """
    if not model.trend_gate:
        return {}
    last = model.head if isinstance(model.head, torch.nn.Conv2d) else model.head.last
    names = {id(param): name for name, param in model.named_parameters()}
    out: dict[str, torch.Tensor] = {}
    for param in (last.weight, last.bias):
        key = names[id(param)]
        if key not in source:
            return {}
        rows, target_rows = source[key].shape[0], own[key].shape[0]
        if target_rows != 2 * rows or source[key].shape[1:] != own[key].shape[1:]:
            return {}  # a gated source (copied whole above) or another decoder: nothing to widen
        out[key] = torch.cat([source[key], source[key].new_zeros(source[key].shape)])
    return out


def state_path_for(checkpoint: Path) -> Path:
    """Resume state beside the checkpoint: ``NAME.pt`` -> ``NAME.state.pt``."""
    return checkpoint.with_name(checkpoint.stem + ".state.pt")


@torch.no_grad()
def validate(model: Predictor, batches: list[torch.Tensor], input_frames: int, output_frames: int) -> dict[str, Any]:
    """Closed-loop MSE (normalised units) over the output frames, overall and per lead."""
    per_lead = _validation_sum(model, batches, input_frames, output_frames)
    per_lead /= max(1, len(batches))
    return {"val_mse": float(per_lead.mean()), "val_mse_per_lead": [float(v) for v in per_lead]}


@torch.no_grad()
def _validation_sum(model: Predictor, batches: list[torch.Tensor], input_frames: int, output_frames: int) -> torch.Tensor:
    """Per lead, the sum over batches of each batch's weighted MSE."""
    was_training = model.training
    model.eval()
    per_lead = torch.zeros(output_frames)
    for item in batches:
        batch, weight = split_batch(item)
        pred = model.forecast(batch[:, :input_frames], output_frames)
        truth = batch[:, input_frames : input_frames + output_frames]
        w = weight[:, input_frames : input_frames + output_frames]
        per_lead += ((pred - truth) ** 2 * w).sum(dim=(0, 2, 3, 4)).cpu() / w.sum(dim=(0, 2, 3, 4)).clamp_min(1.0).cpu()
    model.train(was_training)
    return per_lead


def _validate_distributed(ctx: Any, model: Predictor, batches: list, input_frames: int, output_frames: int,
                          device: torch.device) -> dict[str, Any]:
    """:func:`validate` with the batches split between the processes (batch ``i`` on rank ``i mod W``)."""
    mine = [_to(v, device) for v in batches[ctx.rank :: ctx.world]]
    per_lead = ctx.all_sum(_validation_sum(model, mine, input_frames, output_frames))
    per_lead /= max(1, len(batches))
    return {"val_mse": float(per_lead.mean()), "val_mse_per_lead": [float(v) for v in per_lead]}


# ================================================================ the loop
def train(
    config: ModelConfig,
    *,
    resume: bool = True,
    max_iterations: int | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    batches: BatchFactory | None = None,
    val_batches: list[torch.Tensor] | None = None,
    data_workers: int = 0,
) -> TrainResult:
    """Train a model as its config says; write its checkpoint and resume state.

    In one process this is the whole story. Started by ``torchrun`` with
    several processes (or with a default process group the caller
    initialised), every process calls it alike and they train one model
    data-parallel (:mod:`nowcast.distributed`): each takes its share of every
    global batch, the gradients are averaged, process 0 writes the files and
    logs, and the result equals the one-process run with the same global
    batch up to float rounding.

    Parameters
    ----------
    config
        The model config (its ``checkpoint`` is where the result goes).
    resume
        Continue from ``NAME.state.pt`` beside the checkpoint if it exists.
    max_iterations
        Train up to this iteration instead of ``training.iterations``.
    progress
        Show a rich progress bar (loss, it/s); logs every ``log_every``
        iterations either way.
    device
        Torch device; nothing is hard-coded to CPU. Distributed, ``cuda``
        means ``cuda:LOCAL_RANK`` (one GPU per process).
    batches, val_batches
        Override the data (tests, custom pipelines): ``batches(start)``
        yields training batches from batch index ``start``; ``val_batches`` is
        a fixed list. Default: :func:`make_batches`. Distributed, both are
        global: each process takes its slice of every batch, and its share
        of the validation batches.
    data_workers
        Processes that make the next training batches while the network
        trains (:func:`make_batches`); the batches, and so the result, do not
        depend on it.

    Raises
    ------
    TrainingDivergedError
        The loss became NaN/inf (the last good checkpoint is kept).
    CheckpointError, ConfigError
        Bad sources, ``init_from`` or resume state; distributed, a global
        batch that does not split evenly between the processes.
    """
    from nowcast import distributed

    ctx = distributed.setup(device)
    try:
        return _train(config, ctx, resume=resume, max_iterations=max_iterations, progress=progress,
                      device=ctx.device if ctx is not None else torch.device(device), batches=batches,
                      val_batches=val_batches, data_workers=data_workers)
    finally:
        if ctx is not None:
            ctx.close()


def _train(
    config: ModelConfig,
    ctx: Any,
    *,
    resume: bool,
    max_iterations: int | None,
    progress: bool,
    device: torch.device,
    batches: BatchFactory | None,
    val_batches: list[torch.Tensor] | None,
    data_workers: int = 0,
) -> TrainResult:
    """:func:`train` in this process; ``ctx`` is its :class:`nowcast.distributed.Context` or ``None`` (one process)."""
    tcfg, dcfg = config.training, config.data
    total = int(max_iterations if max_iterations is not None else tcfg.iterations)
    ckpt_path = config.checkpoint_path
    state_path = state_path_for(ckpt_path)
    n_in, n_out = dcfg.input_frames, dcfg.output_frames
    steps = n_in + n_out - 1
    lead = slice(n_in - 1, steps)  # the forecast proper, what the soft-CSI and area-bias terms score
    # their mm/h thresholds in model space, once (only where one of them is used)
    soft_thresholds = ([float(v) for v in dcfg.normaliser.forward(np.asarray(tcfg.soft_csi_thresholds))]
                       if tcfg.soft_csi_weight > 0 or tcfg.area_bias_weight > 0 else [])
    main = ctx is None or ctx.is_main

    def global_value(t: torch.Tensor) -> torch.Tensor:
        """The detached global-batch value of a loss (distributed: the mean of the processes' shares)."""
        return t.detach() if ctx is None else ctx.all_mean(t)

    previous_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(tcfg.seed)
        precision = resolve_precision(tcfg.precision, str(device))
        if ctx is not None:  # 'auto' times the hardware in each process: process 0 decides for all
            precision = ctx.broadcast(precision)
        if main:
            log.info("%s: training in %s on %s", config.name, precision, device)
        if ctx is not None and main:
            log.info("%s: data-parallel on %d processes (%s backend)", config.name, ctx.world, ctx.backend)
        bank, source_ckpts = (load_sources(config) if config.tmu else (None, []))
        source_channels = bank.source_channels if bank is not None else []
        model = Predictor.for_model(config, source_channels)
        # On its device before any state is loaded: Adam puts a loaded state on
        # its parameters' device, so a state resumed on a GPU must find them there.
        model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
        start, history, running = 0, [], None
        extra: dict[str, Any] = {"tmu": None, "init_from": None, "training_provenance": _provenance(config),
                                 "training_precision": precision}
        if ctx is not None:
            extra["training_processes"] = ctx.world
        if config.tmu:
            extra["tmu"] = {
                "sources": [{"name": n, "path": str(c.path), "sha256": c.sha256, "domain": c.metadata.get("data", {}).get("domain"),
                             "modality": c.metadata.get("data", {}).get("modality")} for n, c in zip(config.tmu.sources, source_ckpts)],
                "variant": config.tmu.variant, "distill_weight": config.tmu.distill_weight, "weights": config.tmu.weights,
            }
        resumed = False
        shared_state = None
        if ctx is None:
            have_state = resume and state_path.is_file()
        else:  # process 0 reads the state (only its machine needs the folder) and sends it to all
            shared_state = ctx.broadcast(_read_state(state_path) if main and resume and state_path.is_file() else None)
            have_state = shared_state is not None
        if have_state:
            start, history, running, extra_saved = _load_state(state_path, config, model, optimizer, shared_state)
            extra["init_from"] = extra_saved.get("init_from")
            resumed = True
            if main:
                log.info("%s: resuming at iteration %d from %s", config.name, start, state_path)
        elif tcfg.init_from:
            src = init_from_source(model, tcfg.init_from)
            extra["init_from"] = {"name": tcfg.init_from, "path": str(src.path), "sha256": src.sha256}
        if bank is not None:
            bank.to(device)
        model.train()

        if start >= total:
            if main:
                log.info("%s: already trained to iteration %d (asked %d)", config.name, start, total)
                if not ckpt_path.is_file():
                    save_checkpoint(ckpt_path, model, config, iterations=start, metrics=_metrics(history), extra=extra)
            if ctx is not None:
                ctx.barrier()
            return _result(ckpt_path, start, history)

        # Distributed: the network in DDP (gradients averaged over the processes
        # in backward); `model` stays the plain module for validation and saving.
        net = model if ctx is None else ctx.wrap(model)
        if batches is not None:
            factory = batches if ctx is None else (lambda s: (ctx.take(item) for item in batches(s)))
        else:
            part = None if ctx is None else ctx.part(tcfg.batch_size)
            factory = lambda s: make_batches(config, "train", start=s, part=part, workers=data_workers)
        if val_batches is None:
            val_batches = list(make_batches(config, "val", n_batches=tcfg.val_batches))
        data = iter(factory(start))
        bar = _Progress(config.name, start, total, progress and main)
        t_begin = time.perf_counter()
        ran = 0
        try:
            for it in range(start, total):
                t0 = time.perf_counter()
                try:
                    batch, weight = split_batch(next(data))
                except StopIteration:
                    raise ConfigError(f"model config {config.name!r}: the data ran out at iteration {it}") from None
                batch, weight = batch.to(device), weight.to(device)
                if batch.ndim != 5 or batch.shape[1] < n_in + n_out:
                    raise ConfigError(f"model config {config.name!r}: batch of shape {tuple(batch.shape)}, expected (B, >= {n_in + n_out}, 1, H, W)")
                prob = sampling_probability(tcfg, it)
                gen = torch.Generator().manual_seed(_mix_seed(tcfg.seed, it))
                if ctx is None:
                    mask = (torch.rand((batch.shape[0], n_out - 1), generator=gen) < prob).float().to(device)
                else:  # drawn for the global batch, sliced as the data are
                    b = batch.shape[0]
                    full = torch.rand((b * ctx.world, n_out - 1), generator=gen) < prob
                    mask = full[ctx.rank * b : (ctx.rank + 1) * b].float().to(device)
                with autocast(precision, str(device)):
                    out = net(batch, n_in, n_out, teacher_mask=mask)
                out = PredictorOutput(out.predictions.float(), [d.float() for d in out.distilled])
                truth, w = batch[:, 1 : steps + 1], scored_weight(weight[:, 1 : steps + 1], n_in, tcfg.loss_on_inputs)
                if ctx is None:
                    pred_loss = masked_mse(out.predictions, truth, w)
                else:  # normalised by the weight of the global batch
                    pred_loss = ctx.global_objective(
                        _weighted_mean, torch.stack([((out.predictions - truth) ** 2 * w).sum(), w.sum()]))
                loss = pred_loss
                record = {"iteration": it + 1, "prediction": float(global_value(pred_loss)), "sampling_prob": prob}
                if tcfg.soft_csi_weight > 0:
                    if ctx is None:
                        csi_loss = soft_csi_loss(out.predictions[:, lead], truth[:, lead], w[:, lead], soft_thresholds)
                    else:  # the CSI of the global batch's sums
                        csi_loss = ctx.global_objective(
                            soft_csi_from_sums, soft_csi_sums(out.predictions[:, lead], truth[:, lead], w[:, lead], soft_thresholds))
                    loss = loss + tcfg.soft_csi_weight * csi_loss
                    record["soft_csi_loss"] = float(global_value(csi_loss))
                if tcfg.area_bias_weight > 0:
                    sums = soft_area_sums(out.predictions[:, lead], truth[:, lead], w[:, lead], soft_thresholds)
                    # distributed: the areas of the global batch
                    bias_loss = (soft_area_bias_from_sums(sums) if ctx is None else ctx.global_objective(
                        lambda s, shape=sums.shape: soft_area_bias_from_sums(s.view(shape)), sums.flatten()))
                    loss = loss + tcfg.area_bias_weight * bias_loss
                    record["area_bias_loss"] = float(global_value(bias_loss))
                if bank is not None and config.tmu is not None:
                    with autocast(precision, str(device)):
                        memories = bank(fold(batch[:, :steps], config.architecture.patch_size))
                    memories = [m.float() for m in memories]
                    errors = distillation_errors(config.tmu, out.distilled, memories, pred_loss, ctx)
                    # Distributed: the running errors (and so the weights) from the global errors, alike on every process.
                    detached = global_value(errors).cpu()
                    running = detached if running is None else config.tmu.adaptive_momentum * running + (1 - config.tmu.adaptive_momentum) * detached
                    weights = distillation_weights(config.tmu, running, len(errors)).to(errors.device)
                    distill = (weights * errors).sum()
                    lam = distill_lambda(config.tmu, it)
                    loss = loss + lam * distill
                    record["distill_lambda"] = lam
                    record["distillation"] = float(global_value(distill))
                    record.update({f"distill_{n}": float(e) for n, e in enumerate(detached)})
                    record.update({f"weight_{n}": float(w) for n, w in enumerate(weights.cpu())})
                loss_value = global_value(loss)
                if not torch.isfinite(loss_value):
                    raise TrainingDivergedError(
                        f"model {config.name!r}: training diverged: loss is {float(loss_value)} at iteration {it + 1} "
                        f"(prediction {record['prediction']:.4g}{', distillation ' + format(record['distillation'], '.4g') if 'distillation' in record else ''}); "
                        f"check the data for NaN or lower training.lr ({tcfg.lr:g}); "
                        f"last good checkpoint: {state_path if state_path.is_file() else 'none'}"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if tcfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(tcfg, it)
                optimizer.step()
                record["loss"] = float(loss_value)
                record["seconds"] = time.perf_counter() - t0
                ran += 1
                done = it + 1
                if done % tcfg.val_every == 0 or done == total:
                    with autocast(precision, str(device)):
                        if ctx is None:
                            record.update(validate(model, [_to(v, device) for v in val_batches], n_in, n_out))
                        else:
                            record.update(_validate_distributed(ctx, model, val_batches, n_in, n_out, device))
                history.append(record)
                bar.update(record, ran / (time.perf_counter() - t_begin))
                if main and (done % tcfg.log_every == 0 or done == total or "val_mse" in record):
                    log.info("%s it %d/%d loss %.5f%s%s, %.2f s/it", config.name, done, total, record["loss"],
                             f" (distill {record['distillation']:.4f})" if "distillation" in record else "",
                             f" val_mse {record['val_mse']:.5f}" if "val_mse" in record else "",
                             (time.perf_counter() - t_begin) / ran)
                if done % tcfg.checkpoint_every == 0 or done == total:
                    if main:
                        metrics = _metrics(history)
                        metrics["resumed"] = resumed
                        save_checkpoint(ckpt_path, model, config, iterations=done, metrics=metrics, extra=extra)
                        _save_state(state_path, config, model, optimizer, done, history, running, extra)
                    if ctx is not None:  # the files are complete before any process goes on (or returns)
                        ctx.barrier()
        finally:
            bar.close()
            close = getattr(data, "close", None)
            if close is not None:  # a generator: ends its batch workers now, not at garbage collection
                close()
        result = _result(ckpt_path, total, history)
        result.seconds_per_iteration = (time.perf_counter() - t_begin) / max(1, ran)
        return result
    finally:
        torch.use_deterministic_algorithms(previous_det)


def _weighted_mean(sums: torch.Tensor) -> torch.Tensor:
    """:func:`masked_mse` from its two sums ``(sum of weighted squared errors, sum of weights)``."""
    return sums[0] / sums[1].clamp_min(1.0)


def _provenance(config: ModelConfig) -> str:
    """Where the training data came from (the store's ``provenance`` attribute), for products to say."""
    if config.data.kind != "zarr_sequences":
        return config.data.kind.replace("_", "-")
    try:
        import xarray as xr

        from nowcast.config import project_root

        path = Path(str(config.data.path)).expanduser()
        path = path if path.is_absolute() else project_root() / path
        with xr.open_zarr(path) as ds:
            return str(ds.attrs.get("provenance", "unknown"))
    except Exception:  # noqa: BLE001 - provenance is informative; a missing store fails later, clearly
        return "unknown"


def _to(item, device):
    return tuple(t.to(device) for t in item) if isinstance(item, (tuple, list)) else item.to(device)


def _metrics(history: list[dict[str, Any]]) -> dict[str, Any]:
    if not history:
        return {}
    last = history[-1]
    out: dict[str, Any] = {"loss": last["loss"], "prediction_mse": last["prediction"]}
    if "distillation" in last:
        out["distillation_mse"] = last["distillation"]
        out["distillation_weights"] = [v for k, v in sorted(last.items()) if k.startswith("weight_")]
    vals = [h for h in history if "val_mse" in h]
    if vals:
        out["val_mse"] = vals[-1]["val_mse"]
        out["val_mse_per_lead"] = vals[-1]["val_mse_per_lead"]
        out["val_iteration"] = vals[-1]["iteration"]
    secs = [h["seconds"] for h in history[-50:] if "seconds" in h]
    if secs:
        out["seconds_per_iteration"] = float(np.median(secs))
    return out


def _result(path: Path, iterations: int, history: list[dict[str, Any]]) -> TrainResult:
    from nowcast.models.zoo import sha256_of

    last = history[-1] if history else {}
    finals = {k: float(v) for k, v in last.items() if isinstance(v, (int, float)) and k != "iteration"}
    return TrainResult(path, iterations, finals, history, sha256_of(path) if path.is_file() else "")


def _save_state(path: Path, config: ModelConfig, model: Predictor, optimizer: torch.optim.Optimizer, iteration: int,
                history: list[dict[str, Any]], running: torch.Tensor | None, extra: dict[str, Any]) -> None:
    """Everything a resumed run needs: weights, optimizer, iteration, RNG, running errors."""
    _atomic_torch_save(
        {
            "iteration": iteration,
            "architecture": architecture_metadata(config, model.source_channels),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "history": history,
            "running_error": running.cpu() if running is not None else None,
            "torch_rng": torch.get_rng_state(),
            "extra": extra,
        },
        path,
    )


def _read_state(path: Path) -> dict[str, Any]:
    """The raw resume state, or ``{"unreadable": reason}`` (distributed: process 0 reads, all apply)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt/foreign state file: every process raises it
        return {"unreadable": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}


def _load_state(path: Path, config: ModelConfig, model: Predictor, optimizer: torch.optim.Optimizer,
                state: dict[str, Any] | None = None):
    try:
        if state is None:
            state = torch.load(path, map_location="cpu", weights_only=True)
        elif "unreadable" in state:
            raise CheckpointError(f"{path}: unreadable resume state ({state['unreadable']}); use --no-resume")
        want = architecture_metadata(config, model.source_channels)
        if state["architecture"] != want:
            diff = next(k for k in want if state["architecture"].get(k) != want[k])
            raise CheckpointError(
                f"{path}: resume state has architecture.{diff} = {state['architecture'].get(diff)!r}, "
                f"model config {config.name!r} has {want[diff]!r}; use --no-resume to start over"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt/foreign state file
        raise CheckpointError(f"{path}: unreadable resume state ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); use --no-resume") from None
    return int(state["iteration"]), list(state["history"]), state["running_error"], dict(state.get("extra") or {})


class _Progress:
    """A rich progress bar with loss and it/s, or nothing."""

    def __init__(self, name: str, start: int, total: int, enabled: bool) -> None:
        self.progress = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} it/s"), TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task(name, total=total, completed=start, loss="-", rate="-")
        self.progress.start()

    def update(self, record: dict[str, Any], rate: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, loss=f"{record['loss']:.5f}", rate=f"{rate:.2f}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


__all__ = [
    "TrainResult",
    "TrainingDivergedError",
    "ZarrSequences",
    "distillation_weights",
    "make_batches",
    "sampling_probability",
    "train",
    "validate",
]
