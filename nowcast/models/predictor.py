"""Stacked recurrent predictor over patch-folded frames.

Frames are folded space-to-depth (``pixel_unshuffle`` with patch ``p``: a
``1 x H x W`` frame becomes ``p*p x H/p x W/p``) so the recurrent cells work
on a ``p``-times coarser grid: ``p*p`` times less work per step and a
receptive field ``p`` times larger for the same kernel. A stack of ``L``
ConvLSTM layers (the bottom one a TMU cell when the model has sources) and a
1x1 convolution head predict frame ``t+1`` from frame ``t``.

During the input phase the true frames are fed (teacher forcing). After it,
training mixes true frames and the model's own predictions (scheduled
sampling, Bengio et al. 2015) so the network learns to roll out; at test time
it feeds back its own predictions (closed loop). Any number of input frames
and lead times works, and any frame size that is a multiple of ``p``.

Residual mode (the Lagrangian forecaster, :mod:`nowcast.models.lagrangian`):
the head predicts the *change* of the next frame relative to an anchor, the
frame fed at that step during the input phase and the last observed frame
for every lead. The head starts at exactly zero, so an untrained residual
predictor returns its last input for every lead (in the Lagrangian frame:
pysteps extrapolation) and training can only add to it.

Decoders: ``"linear"`` is the 1x1 convolution of the reference code, which
reads the ``p*p`` sub-pixels of each patch independently and, measured on
the shipped model, draws a lattice at the patch period; ``"refine"`` unfolds
a few feature maps to full resolution and ends in a 3x3 convolution that
sees the neighbouring patches, which removes the cause; ``"smooth"``
predicts one value per patch and interpolates it bilinearly to full
resolution: a residual that can grow or decay rain over areas of a few
patches but cannot blur the structure below the patch size (what a model
trained with MSE otherwise learns to do: the conditional mean of
decorrelating small scales is a smear).

Trend gate (``trend_gate``, Lagrangian rain models): the head returns a
second map per step, a gate ``g`` on the window's own Lagrangian trend. The
trend is the Lagrangian-trend baseline's rate (:func:`trend_rate`: the
least-squares slope of every wet pixel over the input frames, smoothed over
a few km, bounded), fixed once the inputs are read; lead ``k`` gets
``g_k * k * rate`` on top of its change. Continuing a trend the window shows
is then one multiplication the network gates where and for how long it
trusts it, instead of a comparison of frames it has to learn in its memory
(measured: a network that had to learn it continued 0-3 % of a trend unless
it saw nothing but trends). The gate starts at zero, so an untrained model is
still extrapolation; a frozen window has no trend, so what the gate adds
depends on the history only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from nowcast.models.cells import ConvLSTMCell, State
from nowcast.models.tmu import TMUCell, Variant, layer_index


@dataclass
class PredictorOutput:
    """What :meth:`Predictor.forward` returns.

    Attributes
    ----------
    predictions
        ``(B, S, 1, H, W)``: at step ``t`` the prediction of frame ``t + 1``,
        for ``S = input_frames + output_frames - 1`` steps; the forecast proper
        is ``predictions[:, input_frames - 1:]``.
    distilled
        One ``(B, S, C_n, H/p, W/p)`` tensor per source: the TMU distillers'
        memories ``Ĉ^n_t`` (empty without sources).
    """

    predictions: torch.Tensor
    distilled: list[torch.Tensor] = field(default_factory=list)


def fold(frames: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, T, c, H, W)`` -> ``(B, T, c*p*p, H/p, W/p)`` (space-to-depth)."""
    B, T, c, H, W = frames.shape
    if H % patch or W % patch:
        raise ValueError(f"frame size {H}x{W} is not a multiple of the patch size {patch}")
    out = F.pixel_unshuffle(frames.reshape(B * T, c, H, W), patch)
    return out.view(B, T, *out.shape[1:])


def unfold(folded: torch.Tensor, patch: int) -> torch.Tensor:
    """Inverse of :func:`fold`."""
    B, T = folded.shape[:2]
    out = F.pixel_shuffle(folded.reshape(B * T, *folded.shape[2:]), patch)
    return out.view(B, T, *out.shape[1:])


#: Decoders a predictor knows (see the module docstring).
DECODERS = ("linear", "refine", "smooth")
#: Gaussian smoothing (pixels) of the gated trend: the Lagrangian-trend baseline's
#: (``nowcast.baselines.TREND_SMOOTHING_PX``); trends of single pixels are noise.
TREND_SIGMA_PX = 4.0
#: Bound of the gated trend, network units per step: 2.25 dB per step under the rain
#: models' ``db`` normalisation (scale 15 dB), about the baseline's 2 dB.
TREND_CLIP_PER_STEP = 0.15


def _gaussian_smooth(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of ``(B, 1, H, W)`` with zero padding (callers normalise by a smoothed mask)."""
    radius = max(1, round(4.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=field.dtype, device=field.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    field = F.conv2d(field, k.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(field, k.view(1, 1, -1, 1), padding=(radius, 0))


def trend_rate(inputs: torch.Tensor, sigma: float = TREND_SIGMA_PX, clip: float = TREND_CLIP_PER_STEP,
               linearity_power: float = 0.0) -> torch.Tensor:
    """The window's Lagrangian growth rate per step, as the Lagrangian-trend baseline estimates it.

    ``inputs``: ``(B, n, 1, H, W)`` normalised Lagrangian frames (rain is
    positive, dry exactly 0). Per pixel, the least-squares slope of its wet
    values over the frames (0 where fewer than two are wet); smoothed with
    a Gaussian of ``sigma`` pixels over the pixels wet at the analysis
    (normalised convolution, so a rain edge is not pulled to zero), bounded
    by ``clip`` and 0 where the analysis is dry (dry stays dry, as in
    ``nowcast.baselines.lagrangian_trend``). Returns ``(B, 1, H, W)``.

    ``linearity_power`` > 0 weights each pixel's slope by ``R² ** power``,
    R² the coefficient of determination of its linear fit (0 with fewer than
    three wet frames: two always fit). Why: a growth rate the window shows
    steadily tends to go on, one that is the noise of small-scale evolution
    or of optical-flow misalignment does not; on the validation sets the
    baseline weighted so (power 4) kept 0.55 of the growth set's CSI@5 (0.60
    unweighted, 0.21 extrapolation) and lost at most 0.010 to extrapolation
    where the unweighted trend lost 0.064 (docs/benchmarks.md, tenth round).
    """
    n = inputs.shape[1]
    frames = inputs[:, :, 0]
    t = (torch.arange(n, dtype=frames.dtype, device=frames.device) - (n - 1)).view(1, n, 1, 1)
    w = (frames > 0).to(frames.dtype)
    count = w.sum(1, keepdim=True)
    t_mean = (w * t).sum(1, keepdim=True) / count.clamp(min=1.0)
    y_mean = (w * frames).sum(1, keepdim=True) / count.clamp(min=1.0)
    dt = t - t_mean
    slope = (w * dt * (frames - y_mean)).sum(1, keepdim=True) / (w * dt * dt).sum(1, keepdim=True).clamp(min=1e-6)
    slope = torch.where(count >= 2, slope, torch.zeros_like(slope))
    if linearity_power > 0:
        total = (w * (frames - y_mean) ** 2).sum(1, keepdim=True)
        residual = (w * (frames - y_mean - slope * dt) ** 2).sum(1, keepdim=True)
        r2 = (1.0 - residual / total.clamp(min=1e-12)).clamp(0.0, 1.0)
        r2 = torch.where((count >= 3) & (total > 1e-12), r2, torch.zeros_like(r2))
        slope = slope * r2**linearity_power
    wet = (frames[:, -1:] > 0).to(frames.dtype)
    rate = _gaussian_smooth(slope * wet, sigma) / _gaussian_smooth(wet, sigma).clamp(min=1e-3)
    return rate.clamp(-clip, clip) * wet


class RefineHead(nn.Module):
    """Decoder that sees across patch borders: 1x1 conv -> unfold -> 3x3 conv.

    ``hidden -> p*p*mid`` channels on the patch grid, ``pixel_shuffle`` to
    ``mid`` maps at full resolution, a GELU, and a 3x3 convolution to the
    output channels; the result is folded back so the recurrent loop keeps
    working on the patch grid.

    How it runs: never at full resolution. The GELU is pointwise, so it
    commutes with the unfold, and a 3x3 convolution at full resolution
    followed by the fold is one 3x3 convolution on the patch grid (a
    full-resolution neighbour is at most one patch away) whose kernel
    :meth:`folded_kernel` scatters from the 3x3 one. Same parameters, same
    outputs to float rounding (tested), 3x faster on the CPU: the
    ``mid -> 1`` convolution on 512x512 and the ``pixel_shuffle`` copy were
    a fifth of the network's time.
    """

    def __init__(self, hidden: int, out_channels: int, patch: int, mid: int = 8) -> None:
        super().__init__()
        self.patch = patch
        self.expand = nn.Conv2d(hidden, patch * patch * mid, 1)
        self.smooth = nn.Conv2d(mid, out_channels, 3, padding=1)
        self.register_buffer("_scatter", self._scatter_index(out_channels, mid, patch), persistent=False)

    @staticmethod
    def _scatter_index(out_channels: int, mid: int, p: int) -> torch.Tensor:
        """For every entry of the folded kernel, the flat index of the 3x3 weight it holds (the last: none, 0)."""
        none = out_channels * mid * 9
        index = torch.full((out_channels * p * p, mid * p * p, 3, 3), none, dtype=torch.long)
        for o in range(out_channels):
            for c in range(mid):
                for ey in range(p):
                    for ex in range(p):
                        for ky in (-1, 0, 1):
                            for kx in (-1, 0, 1):
                                # full-resolution neighbour (ey + ky, ex + kx) of sub-pixel (ey, ex):
                                # patch offset (DY, DX) and sub-pixel (dy, dx) there
                                DY, dy = divmod(ey + ky, p)
                                DX, dx = divmod(ex + kx, p)
                                index[o * p * p + ey * p + ex, c * p * p + dy * p + dx, DY + 1, DX + 1] = (
                                    ((o * mid + c) * 3 + ky + 1) * 3 + kx + 1)
        return index

    @property
    def last(self) -> nn.Conv2d:
        return self.smooth

    def folded_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the patch-grid convolution equal to unfold -> 3x3 conv -> fold (differentiable)."""
        w = torch.cat([self.smooth.weight.reshape(-1), self.smooth.weight.new_zeros(1)])
        return w[self._scatter], self.smooth.bias.repeat_interleave(self.patch * self.patch)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        weight, bias = self.folded_kernel()
        return F.conv2d(F.gelu(self.expand(h)), weight, bias, padding=1)


class SmoothHead(nn.Module):
    """Decoder of one value per patch, bilinearly interpolated to full resolution, folded back."""

    def __init__(self, hidden: int, out_channels: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.conv = nn.Conv2d(hidden, out_channels, 1)

    @property
    def last(self) -> nn.Conv2d:
        return self.conv

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        coarse = self.conv(h)
        full = F.interpolate(coarse, scale_factor=self.patch, mode="bilinear", align_corners=False)
        return F.pixel_unshuffle(full, self.patch)


class Predictor(nn.Module):
    """``L`` stacked ConvLSTM layers (bottom: TMU when there are sources).

    Parameters
    ----------
    layers, hidden, kernel, patch_size
        Depth, hidden channels (one value or one per layer), gate kernel and
        patch size.
    layer_norm, forget_bias
        Passed to every cell.
    source_channels
        Memory channels of each source; non-empty makes one layer (``tmu_layer``)
        a :class:`~nowcast.models.tmu.TMUCell`.
    variant
        TMU memory update (:data:`nowcast.models.tmu.VARIANTS`).
    tmu_layer
        ``"bottom"`` (the paper's) or ``"top"``: which layer is the TMU.
    channels
        Physical channels per frame (1: rain rate, brightness temperature or
        grey levels).
    residual
        Predict changes relative to an anchor frame (see the module
        docstring); the head starts at zero.
    decoder
        ``"linear"`` (1x1 convolution on the patch grid), ``"refine"``
        (:class:`RefineHead`) or ``"smooth"`` (:class:`SmoothHead`).
    trend_gate
        Residual only: the head also returns a gate on the window's trend
        (see the module docstring); it starts at zero.
    trend_linearity_power
        With ``trend_gate``: the power of the linear fit's R² that weights
        each pixel's slope in :func:`trend_rate` (0: unweighted).
    """

    def __init__(
        self,
        layers: int = 2,
        hidden: int | Sequence[int] = 32,
        kernel: int = 5,
        patch_size: int = 4,
        layer_norm: bool = True,
        forget_bias: float = 1.0,
        source_channels: Sequence[int] = (),
        variant: Variant = "sum",
        channels: int = 1,
        residual: bool = False,
        decoder: str = "linear",
        trend_gate: bool = False,
        trend_linearity_power: float = 0.0,
        tmu_layer: str = "bottom",
    ) -> None:
        super().__init__()
        tmu_index = layer_index(tmu_layer)  # refuses any other name first
        if decoder not in DECODERS:
            raise ValueError(f"decoder {decoder!r}: expected one of {', '.join(DECODERS)}")
        if trend_gate and not residual:
            raise ValueError("trend_gate needs residual: the gated trend is a change added to the last observed frame")
        self.residual = bool(residual)
        self.trend_gate = bool(trend_gate)
        self.trend_linearity_power = float(trend_linearity_power)
        sizes = [int(hidden)] * layers if isinstance(hidden, int) else [int(h) for h in hidden]
        if len(sizes) != layers:
            raise ValueError(f"{len(sizes)} hidden sizes for {layers} layers")
        self.patch_size = patch_size
        self.channels = channels
        self.hidden_sizes = sizes
        self.source_channels = [int(c) for c in source_channels]
        folded = channels * patch_size * patch_size
        self.tmu_layer = tmu_layer
        tmu_index = tmu_index % len(sizes) if sizes else 0  # the top: the last layer
        cells: list[ConvLSTMCell] = []
        for k, size in enumerate(sizes):
            in_ch = folded if k == 0 else sizes[k - 1]
            if k == tmu_index and self.source_channels:
                cells.append(TMUCell(in_ch, size, kernel, self.source_channels, variant, layer_norm, forget_bias))
            else:
                cells.append(ConvLSTMCell(in_ch, size, kernel, layer_norm, forget_bias))
        self.cells = nn.ModuleList(cells)
        maps = 2 if self.trend_gate else 1  # the change, and the trend gate
        if decoder == "linear":
            self.head: nn.Module = nn.Conv2d(sizes[-1], folded * maps, 1)
        elif decoder == "refine":
            self.head = RefineHead(sizes[-1], channels * maps, patch_size)
        else:
            self.head = SmoothHead(sizes[-1], channels * maps, patch_size)
        if self.residual:  # an untrained residual model changes nothing
            last = self.head if isinstance(self.head, nn.Conv2d) else self.head.last
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    @classmethod
    def for_model(cls, config, source_channels: Sequence[int] = ()) -> "Predictor":
        """Build for a :class:`~nowcast.models.config.ModelConfig`: its architecture, and its TMU's update and layer."""
        tmu = config.tmu
        return cls.from_config(config.architecture, source_channels, tmu.variant if tmu else "sum",
                               tmu.layer if tmu else "bottom")

    @classmethod
    def from_config(cls, arch, source_channels: Sequence[int] = (), variant: Variant = "sum",
                    tmu_layer: str = "bottom") -> "Predictor":
        """Build from an :class:`~nowcast.models.config.ArchitectureConfig`."""
        return cls(
            layers=arch.layers,
            hidden=arch.hidden_sizes,
            kernel=arch.kernel,
            patch_size=arch.patch_size,
            layer_norm=arch.layer_norm,
            forget_bias=arch.forget_bias,
            source_channels=source_channels,
            variant=variant,
            residual=arch.residual,
            decoder=arch.decoder,
            trend_gate=arch.trend_gate,
            trend_linearity_power=arch.trend_linearity_power,
            tmu_layer=tmu_layer,
        )

    @property
    def has_tmu(self) -> bool:
        return bool(self.source_channels)

    def step(self, x: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State], list[torch.Tensor]]:
        """One time step on folded input ``x``; returns (next folded frame, states, distilled)."""
        new_states: list[State] = []
        distilled: list[torch.Tensor] = []
        inp = x
        for k, cell in enumerate(self.cells):
            if isinstance(cell, TMUCell):
                state, distilled = cell.step(inp, states[k])
            else:
                state = cell(inp, states[k])
            new_states.append(state)
            inp = state[0]
        return self.head(inp), new_states, distilled

    def forward(
        self,
        frames: torch.Tensor,
        input_frames: int,
        output_frames: int,
        sampling_prob: float = 0.0,
        teacher_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PredictorOutput:
        """Run the sequence: teacher forcing on inputs, then scheduled sampling or closed loop.

        Parameters
        ----------
        frames
            ``(B, T, 1, H, W)`` normalised. Only the first ``input_frames`` are
            needed for a closed-loop forecast; scheduled sampling also needs
            the true future frames (``T >= input_frames + output_frames - 1``).
        input_frames, output_frames
            Observed frames and frames to predict.
        sampling_prob
            Probability, per sample and future step, of feeding the *true*
            frame instead of the prediction (1 = teacher forcing, 0 = closed
            loop). Ignored when ``teacher_mask`` is given.
        teacher_mask
            ``(B, output_frames - 1)``: 1 feeds the true frame, 0 the
            prediction; lets a training loop draw the mask reproducibly.
        generator
            Random generator for drawing the mask from ``sampling_prob``.
        """
        B, T, _, H, W = frames.shape
        p = self.patch_size
        steps = input_frames + output_frames - 1
        if input_frames < 1 or output_frames < 1:
            raise ValueError(f"input_frames={input_frames}, output_frames={output_frames}: both must be positive")
        if T < input_frames:
            raise ValueError(f"{T} frames given, {input_frames} input frames needed")
        future = output_frames - 1
        if teacher_mask is None and sampling_prob > 0.0 and future > 0:
            teacher_mask = (torch.rand((B, future), generator=generator) < sampling_prob).to(frames.dtype)
        if teacher_mask is not None and future > 0:
            if T < steps:
                raise ValueError(f"scheduled sampling needs {steps} true frames, got {T}")
            teacher_mask = teacher_mask.to(frames.dtype).view(B, future, 1, 1, 1)
        folded = fold(frames[:, : min(T, steps)], p)
        hh, ww = H // p, W // p
        states = [cell.init_state(B, hh, ww, folded) for cell in self.cells]
        preds: list[torch.Tensor] = []
        distilled: list[list[torch.Tensor]] = []
        x = folded[:, 0]
        last_input = folded[:, input_frames - 1]
        rate = (fold(trend_rate(frames[:, :input_frames], linearity_power=self.trend_linearity_power)[:, None], p)[:, 0]
                if self.trend_gate else None)
        for t in range(steps):
            if t < input_frames:
                x = folded[:, t]
            elif teacher_mask is not None:
                m = teacher_mask[:, t - input_frames]
                x = m * folded[:, t] + (1.0 - m) * preds[-1]
            else:
                x = preds[-1]
            out, states, dist = self.step(x, states)
            if rate is not None:  # change, and the gate on the trend continued to this lead
                out, gate = self.split_trend_gate(out)
                lead = t - input_frames + 2
                if lead >= 1:
                    out = out + gate * (lead * rate)
            if self.residual:  # change relative to the frame fed now (inputs) or the last observed one (leads)
                out = (x if t < input_frames - 1 else last_input) + out
            preds.append(out)
            if dist:
                distilled.append(dist)
        predictions = unfold(torch.stack(preds, dim=1), p)
        per_source = [torch.stack([d[n] for d in distilled], dim=1) for n in range(len(self.source_channels))]
        return PredictorOutput(predictions, per_source)

    @staticmethod
    def split_trend_gate(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A trend-gated head's output ``(B, 2 maps, h, w)`` as (change, gate): the change rows first.

        The one place that layout is read: the forward pass, the warm start of
        a gated target from an ungated source (``nowcast.training``, which
        fills the change rows) and ``benchmarks/trend_gate_opening.py``.
        """
        half = out.shape[1] // 2
        return out[:, :half], out[:, half:]

    @torch.no_grad()
    def forecast(self, inputs: torch.Tensor, leads: int) -> torch.Tensor:
        """Closed-loop forecast: ``(B, T_in, 1, H, W)`` -> ``(B, leads, 1, H, W)``."""
        t_in = inputs.shape[1]
        out = self(inputs, t_in, leads)
        return out.predictions[:, t_in - 1 :]
