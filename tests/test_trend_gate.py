"""The trend gate: the network gates the window's own Lagrangian trend instead of learning to read it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from nowcast.baselines import extrapolation
from nowcast.errors import ConfigError
from nowcast.models.predictor import (
    TREND_CLIP_PER_STEP,
    TREND_SIGMA_PX,
    Predictor,
    trend_rate,
)
from tests.test_lagrangian import forecaster, lagrangian_config, moving_window


def growing_disk(size: int = 32, frames: int = 4, slope: float = 0.05, base: float = 0.6, radius: float = 10.0) -> torch.Tensor:
    """(1, frames, 1, size, size) normalised frames: a wet disk whose value rises by ``slope`` per frame."""
    y, x = np.mgrid[:size, :size]
    disk = ((y - size / 2) ** 2 + (x - size / 2) ** 2) < radius**2
    out = np.stack([np.where(disk, base + slope * t, 0.0) for t in range(frames)]).astype(np.float32)
    return torch.from_numpy(out)[None, :, None]


def test_trend_rate_is_the_slope_inside_rain_and_zero_where_dry():
    frames = growing_disk(slope=0.05)
    rate = trend_rate(frames)[0, 0].numpy()
    wet = frames[0, -1, 0].numpy() > 0
    np.testing.assert_allclose(rate[wet], 0.05, rtol=1e-5)  # normalised smoothing: a uniform trend stays uniform to the edge
    assert np.all(rate[~wet] == 0.0)  # dry stays dry
    assert np.allclose(trend_rate(growing_disk(slope=-0.03))[0, 0].numpy()[wet], -0.03, rtol=1e-5)


def test_trend_rate_is_bounded_and_needs_two_wet_frames():
    rate = trend_rate(growing_disk(slope=0.5, base=0.4))[0, 0].numpy()
    assert rate.max() == pytest.approx(TREND_CLIP_PER_STEP)
    frames = growing_disk()
    frames[:, :-1] = 0.0  # rain only in the analysis: no trend to read
    assert torch.count_nonzero(trend_rate(frames)) == 0
    frozen = growing_disk()[:, -1:].expand(-1, 4, -1, -1, -1)  # a frozen window has no trend
    assert torch.count_nonzero(trend_rate(frozen)) == 0


@pytest.mark.parametrize("power", [0.0, 4.0])
def test_trend_rate_equals_the_lagrangian_trend_baselines_rate(power):
    """Same slope, linearity weight, smoothing and bound as nowcast.baselines.lagrangian_trend (scipy) on an uneven, noisy trend.

    At the domain's edge the baseline reflects and the network pads with zeros (normalised either way).
    """
    rng = np.random.default_rng(3)
    size = 48
    base = np.where(rng.random((size, size)) < 0.7, 0.4 + rng.random((size, size)), 0.0)
    slope = 0.08 * np.sin(np.arange(size) / 6.0)[None, :] * np.ones((size, 1))
    noise = 0.03 * rng.standard_normal((4, size, size))  # so that R2 differs from pixel to pixel
    frames = np.stack([np.where(base > 0, np.maximum(base + slope * (t - 3) + noise[t], 0.01), 0.0) for t in range(4)])
    ours = trend_rate(torch.from_numpy(frames.astype(np.float32))[None, :, None], linearity_power=power)[0, 0].numpy()
    t = np.arange(-3, 1, dtype=float)[:, None, None]
    w = (frames > 0).astype(float)
    tw, yw = (w * t).sum(0) / np.maximum(w.sum(0), 1), (w * frames).sum(0) / np.maximum(w.sum(0), 1)
    ls = (w * (t - tw) * (frames - yw)).sum(0) / np.maximum((w * (t - tw) ** 2).sum(0), 1e-6)
    ls = np.where(w.sum(0) >= 2, ls, 0.0)
    if power:
        total = (w * (frames - yw) ** 2).sum(0)
        r2 = 1.0 - (w * (frames - yw - ls * (t - tw)) ** 2).sum(0) / np.maximum(total, 1e-12)
        assert 0.1 < np.median(r2[w.sum(0) == 4]) < 0.99  # the case weighs: neither all noise nor all trend
        ls = ls * np.where(w.sum(0) >= 3, np.clip(r2, 0.0, 1.0), 0.0) ** power
    wet = frames[-1] > 0
    ref = gaussian_filter(ls * wet, TREND_SIGMA_PX, mode="constant", truncate=4.0) / np.maximum(
        gaussian_filter(wet.astype(float), TREND_SIGMA_PX, mode="constant", truncate=4.0), 1e-3)
    ref = np.clip(ref, -TREND_CLIP_PER_STEP, TREND_CLIP_PER_STEP) * wet
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_linearity_weight_keeps_a_steady_trend_and_damps_a_noisy_one():
    steady = growing_disk(slope=0.05)
    np.testing.assert_allclose(trend_rate(steady, linearity_power=4.0).numpy(), trend_rate(steady).numpy(), atol=1e-6)
    zigzag = growing_disk(slope=0.0)  # up, down, up, down: a slope of its own, no steady trend
    zigzag[:, :, 0] += torch.tensor([0.0, 0.08, 0.0, 0.09]).view(1, 4, 1, 1) * (zigzag[:, :, 0] > 0)
    plain, weighted = trend_rate(zigzag).abs().max().item(), trend_rate(zigzag, linearity_power=4.0).abs().max().item()
    assert plain > 0.005 and weighted < 0.05 * plain


def test_linearity_weight_needs_three_wet_frames():
    frames = growing_disk(slope=0.05)
    frames[:, :2] = 0.0  # two wet frames always fit a line exactly: no evidence of a steady trend
    assert trend_rate(frames).abs().max() > 0.04
    assert torch.count_nonzero(trend_rate(frames, linearity_power=4.0)) == 0
    frames = growing_disk(slope=0.05)
    frames[:, :1] = 0.0  # three: a perfect line, kept
    np.testing.assert_allclose(trend_rate(frames, linearity_power=4.0).numpy(), trend_rate(frames).numpy(), atol=1e-6)


def test_lagrangian_trend_baseline_with_linearity_weight_follows_steady_growth_only():
    """The numpy twin: a steadily growing field keeps its trend, a flickering one is forecast as extrapolation."""
    from nowcast.baselines import lagrangian_trend

    window = moving_window()
    rain = window[-1] > 0.1
    steady = window * (10 ** (0.2 * np.arange(-3, 1)))[:, None, None]  # +2 dB per step everywhere
    flicker = window * (10 ** (0.2 * np.array([0.0, 1.0, 0.0, 1.0])))[:, None, None]
    for case, follows in ((steady, True), (flicker, False)):
        plain = lagrangian_trend(case, 3)
        weighted = lagrangian_trend(case, 3, linearity_power=4.0)
        extrap = extrapolation(case, 3)
        wet = rain & np.isfinite(plain[-1]) & np.isfinite(extrap[-1])
        gap = np.nanmean(np.abs(weighted[-1] - extrap[-1])[wet]) / np.nanmean(np.abs(plain[-1] - extrap[-1])[wet])
        assert (gap > 0.8) if follows else (gap < 0.2), (follows, gap)
    late = steady.copy()
    late[:2] = 0.0  # rain in the last two frames only: two points always fit a line, no evidence of a trend
    extrap = extrapolation(late, 3)
    plain_gap = np.nanmean(np.abs(lagrangian_trend(late, 3) - extrap))
    weighted_gap = np.nanmean(np.abs(lagrangian_trend(late, 3, linearity_power=4.0) - extrap))
    assert weighted_gap < 0.1 * plain_gap, (weighted_gap, plain_gap)  # what is left is the baselines' own advection


def test_untrained_gated_model_is_still_exactly_extrapolation():
    config = lagrangian_config(architecture={"layers": 2, "hidden": 8, "kernel": 3, "patch_size": 4, "residual": True,
                                             "decoder": "refine", "trend_gate": True})
    window = moving_window()
    ours = forecaster(config).predict_region(window, 6, tile=None)
    np.testing.assert_array_equal(np.nan_to_num(ours, nan=-1), np.nan_to_num(extrapolation(window, 6), nan=-1))


@pytest.mark.parametrize("decoder", ["linear", "refine", "smooth"])
def test_an_open_gate_continues_the_trend_lead_by_lead(decoder):
    model = Predictor(layers=1, hidden=8, kernel=3, patch_size=4, residual=True, decoder=decoder, trend_gate=True)
    with torch.no_grad():  # change head 0, gate 1 everywhere
        last = model.head if isinstance(model.head, torch.nn.Conv2d) else model.head.last
        n = last.bias.shape[0] // 2
        last.bias[n:] = 1.0
    frames = growing_disk(slope=0.05)
    out = model.forecast(frames, 5)
    rate = trend_rate(frames)
    for k in range(1, 6):
        np.testing.assert_allclose(out[:, k - 1].numpy(), (frames[:, -1] + k * rate).numpy(), atol=1e-6)


def test_an_open_gate_continues_the_linearity_weighted_trend():
    model = Predictor(layers=1, hidden=8, kernel=3, patch_size=4, residual=True, decoder="refine", trend_gate=True,
                      trend_linearity_power=4.0)
    with torch.no_grad():
        model.head.last.bias[model.head.last.bias.shape[0] // 2:] = 1.0
    frames = growing_disk(slope=0.05)
    frames[:, :, 0] += torch.tensor([0.0, 0.03, 0.0, 0.04]).view(1, 4, 1, 1) * (frames[:, :, 0] > 0)  # trend, unsteadily
    rate = trend_rate(frames, linearity_power=4.0)
    assert 0.0 < rate.max() < 0.9 * trend_rate(frames).max()
    out = model.forecast(frames, 3)
    for k in range(1, 4):
        np.testing.assert_allclose(out[:, k - 1].numpy(), (frames[:, -1] + k * rate).numpy(), atol=1e-6)


def test_gate_head_has_two_maps_and_starts_at_zero():
    gated = Predictor(layers=1, hidden=8, kernel=3, patch_size=4, residual=True, decoder="refine", trend_gate=True)
    plain = Predictor(layers=1, hidden=8, kernel=3, patch_size=4, residual=True, decoder="refine")
    assert gated.head.last.weight.shape[0] == 2 * plain.head.last.weight.shape[0]
    assert torch.count_nonzero(gated.head.last.weight) == 0 and torch.count_nonzero(gated.head.last.bias) == 0


def test_trend_gate_config_is_for_lagrangian_rain_residual_models():
    with pytest.raises(ConfigError, match="trend_gate"):
        lagrangian_config(frame="eulerian", architecture={"layers": 1, "hidden": 8, "patch_size": 4, "residual": True,
                                                          "trend_gate": True})
    with pytest.raises(ValueError, match="residual"):
        Predictor(layers=1, hidden=8, patch_size=4, trend_gate=True)


def test_checkpoint_metadata_names_the_gate_only_when_on():
    from nowcast.models.zoo import architecture_metadata

    plain = lagrangian_config()
    gated = lagrangian_config(architecture={"layers": 2, "hidden": 8, "kernel": 3, "patch_size": 4, "residual": True,
                                            "decoder": "refine", "trend_gate": True})
    assert "trend_gate" not in architecture_metadata(plain)  # checkpoints written before the gate still match
    assert architecture_metadata(gated)["trend_gate"] is True
    assert "trend_linearity_power" not in architecture_metadata(gated)
    weighted = lagrangian_config(architecture={"layers": 2, "hidden": 8, "kernel": 3, "patch_size": 4, "residual": True,
                                               "decoder": "refine", "trend_gate": True, "trend_linearity_power": 4})
    assert architecture_metadata(weighted)["trend_linearity_power"] == 4.0


def test_linearity_power_needs_the_gate_and_reaches_the_network():
    with pytest.raises(ConfigError, match="trend_linearity_power"):
        lagrangian_config(architecture={"layers": 1, "hidden": 8, "patch_size": 4, "residual": True,
                                        "trend_linearity_power": 4})
    with pytest.raises(ConfigError, match="trend_linearity_power"):
        lagrangian_config(architecture={"layers": 1, "hidden": 8, "patch_size": 4, "residual": True,
                                        "trend_gate": True, "trend_linearity_power": -1})
    config = lagrangian_config(architecture={"layers": 1, "hidden": 8, "kernel": 3, "patch_size": 4, "residual": True,
                                             "trend_gate": True, "trend_linearity_power": 4})
    assert Predictor.from_config(config.architecture).trend_linearity_power == 4.0


def test_gated_model_learns_to_continue_growth_and_beats_extrapolation(tmp_path):
    """Trained briefly on blobs that brighten every step, the gate opens: the forecast continues the growth."""
    import xarray as xr

    from nowcast.models.zoo import load_forecaster
    from nowcast.training import train
    from tests.test_lagrangian import _moving_store, _train_config

    store = _moving_store(tmp_path / "grow.zarr", n_seq=6, frames=7, growth_db=1.5)
    cfg = _train_config(tmp_path, store)
    cfg = cfg.model_copy(update={"architecture": cfg.architecture.model_copy(update={"trend_gate": True})})
    train(cfg, progress=False)
    fc = load_forecaster(cfg.checkpoint_path)
    assert fc.model.trend_gate
    seqs = xr.open_zarr(store)["rain_rate"].values

    def error(method) -> float:
        return sum(float(np.mean((np.nan_to_num(method(seq[:3, 4:20, 4:20], 4)) - seq[3:, 4:20, 4:20]) ** 2)) for seq in seqs)

    ours, extrap = error(fc.predict), error(extrapolation)
    assert ours < 0.8 * extrap, (ours, extrap)
    with torch.no_grad():  # the same network with its gate shut: the trend it gated was part of the skill
        last = fc.model.head.last
        n = last.bias.shape[0] // 2
        last.weight[n:] = 0.0
        last.bias[n:] = 0.0
    assert ours < 0.95 * error(fc.predict), (ours, error(fc.predict))
