"""benchmarks/tmu_memory.py: the distillation error per source and regime, each part over its own steps."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmarks.tmu_memory import (
    layer_memories,
    linear_reference,
    measure,
    regimes_of,
    relative_errors,
    table,
)
from nowcast.models.predictor import Predictor, fold
from nowcast.models.tmu import MemoryBank
from tests.test_lagrangian import lagrangian_config


def _regime_store(path, flags, meanings="convective growth_decay stratiform", values=(0, 1, 2), times=8, size=16):
    import xarray as xr

    n = len(flags)
    rates = (np.arange(n, dtype=np.float32)[:, None, None, None] + 1.0) * np.linspace(1, 2, times, dtype=np.float32)[None, :, None, None]
    data = np.broadcast_to(rates, (n, times, size, size)).copy()
    data[:, :, : size // 2] *= 0.3  # some structure, so the memories vary over space
    ds = xr.Dataset({"rain_rate": (("sequence", "time", "y", "x"), data, {"units": "mm h-1"}),
                     "regime": (("sequence",), np.asarray(flags, dtype=np.int8),
                                {"flag_values": list(values), "flag_meanings": meanings})},
                    attrs={"units": "mm h-1"})
    ds.to_zarr(path, mode="w", consolidated=True)
    return path


def test_each_part_reads_its_own_steps():
    B, S, C, w = 2, 6, 3, 3
    torch.manual_seed(0)
    truth = torch.randn(B, S, C, 4, 4)
    distilled = truth.clone()
    distilled[:, w:] += 1.0  # exact over the window, off by 1 over the leads
    live = distilled.clone()
    live[:, w:] += 2.0  # the source's memory of what the target read: 2 from the distilled one
    out = relative_errors([distilled], [truth], [live], w)
    np.testing.assert_allclose(out["window"], 0.0, atol=1e-12)
    np.testing.assert_allclose(out["leads"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["live"], 4.0, rtol=1e-6)
    moments = out["moments"][0]  # per step: count, sum, sum of squares of the truth
    assert moments.shape == (S, 3)
    np.testing.assert_allclose(moments[:, 1], truth.double().sum(dim=(0, 2, 3, 4)).numpy(), rtol=1e-10)
    assert (moments[:, 0] == B * C * 16).all()


def test_regimes_are_named_by_their_flags(tmp_path):
    regimes, names = regimes_of(_regime_store(tmp_path / "r.zarr", [2, 0, 1, 2]))
    assert regimes.tolist() == ["stratiform", "convective", "growth_decay", "stratiform"]
    assert names == ["convective", "growth_decay", "stratiform"]
    regimes, names = regimes_of(_regime_store(tmp_path / "r1.zarr", [3, 1], meanings="x y z", values=(1, 2, 3)))
    assert regimes.tolist() == ["z", "x"] and names == ["x", "y", "z"]  # flag values need not start at 0
    with pytest.raises(SystemExit, match="without a name"):
        regimes_of(_regime_store(tmp_path / "bad.zarr", [0, 3], meanings="a b", values=(0, 1)))
    with pytest.raises(SystemExit, match="one to one"):  # pipelines.simulate.regime_flags, shared with the study
        regimes_of(_regime_store(tmp_path / "short.zarr", [0, 1], meanings="a b c", values=(0, 1)))
    import xarray as xr

    xr.Dataset({"rain_rate": (("sequence", "time", "y", "x"), np.ones((1, 2, 2, 2), np.float32))}).to_zarr(
        tmp_path / "none.zarr", mode="w")
    with pytest.raises(SystemExit, match="no 'regime'"):
        regimes_of(tmp_path / "none.zarr")


def test_measure_compares_the_distillers_with_the_sources_on_what_each_reads(tmp_path, monkeypatch):
    """End to end on a tiny TMU: the live part is the source's memory of the window and the target's own forecast."""
    store = _regime_store(tmp_path / "val.zarr", [2, 1, 2, 0, 1])
    cfg = lagrangian_config(
        architecture={"layers": 1, "hidden": 8, "kernel": 3, "patch_size": 4, "residual": True, "decoder": "refine"},
        data={"kind": "zarr_sequences", "path": str(store), "modality": "rain", "units": "mm h-1",
              "normalisation": {"kind": "db"}, "frame_size": 16, "input_frames": 3, "output_frames": 4,
              "timestep_minutes": 5},
        tmu={"sources": ["src-a", "src-b"], "variant": "convex"})
    torch.manual_seed(0)
    target = Predictor.from_config(cfg.architecture, [8, 8], "convex").eval()
    with torch.no_grad():  # an untrained head forecasts no change: every lead alike would hide a shifted lead
        for p in target.parameters():
            p.add_(0.3 * torch.randn_like(p))
    sources = [Predictor.from_config(cfg.architecture).eval() for _ in range(2)]
    ckpt = SimpleNamespace(config=cfg, source_channels=[8, 8], build_model=lambda: target)
    control = SimpleNamespace(build_model=lambda: sources[0])  # the reference: source 0 itself
    monkeypatch.setattr("nowcast.models.zoo.load_checkpoint", lambda path: control if path.stem == "ref" else ckpt)
    monkeypatch.setattr("nowcast.training.load_sources", lambda config: (MemoryBank(sources), []))
    out = measure(tmp_path / "tmu.pt", store, batch_size=2, reference=tmp_path / "ref.pt")
    for regime in out["regimes"].values():  # source 0's own memory maps onto itself, source 1's does not
        assert regime["reference_window"][0] < 1e-8 and regime["reference_window"][1] > 1e-3
    top = measure(tmp_path / "tmu.pt", store, batch_size=2, reference=tmp_path / "ref.pt", source_layer="top",
                  reference_layer="top")  # another layer than the bank's: its own key and scale
    assert "reference_window" not in top["regimes"]["stratiform"]
    assert top["regimes"]["stratiform"]["reference_top_window"][0] < 1e-8  # one layer: its top is its bottom
    with pytest.raises(SystemExit, match="no regime 'dry'"):
        measure(tmp_path / "tmu.pt", store, reference=tmp_path / "ref.pt", fit_regime="dry")
    with pytest.raises(SystemExit, match="without transferable memory"):
        layer_memories(target, torch.zeros(1, 6, 1, 16, 16), 3, 4)
    assert set(out["regimes"]) == {"convective", "growth_decay", "stratiform"}
    assert out["regimes"]["stratiform"]["sequences"] == 2 and out["regimes"]["convective"]["sequences"] == 1

    # by hand, for the convective sequence (index 3): the closed-loop forecast, read back by the sources
    from nowcast.training import ZarrSequences, split_batch

    frames, _ = split_batch(ZarrSequences(store, cfg).sequence_batch(np.array([3])))
    n_in, n_out = 3, 4
    with torch.no_grad():
        forecast = target.forecast(frames[:, :n_in], n_out)  # leads 1..4
        read = torch.cat([frames[:, :n_in], forecast[:, :-1]], dim=1)
        live = MemoryBank(sources)(fold(read, 4))
        truth = MemoryBank(sources)(fold(frames[:, : n_in + n_out - 1], 4))
        distilled = target(frames, n_in, n_out).distilled
    variance = np.array(out["variance"])
    for n in range(2):
        expect_live = float(((distilled[n][:, n_in:] - live[n][:, n_in:]) ** 2).double().mean()) / variance[n]
        expect_window = float(((distilled[n][:, :n_in] - truth[n][:, :n_in]) ** 2).double().mean()) / variance[n]
        assert out["regimes"]["convective"]["live"][n] == pytest.approx(expect_live, rel=1e-4)
        assert out["regimes"]["convective"]["window"][n] == pytest.approx(expect_window, rel=1e-4)
    assert 0.0 < min(out["step_mean_reference"]) <= max(out["step_mean_reference"]) <= 1.0 + 1e-9


def test_the_table_shows_the_mean_and_half_range_per_regime():
    runs = [{"sources": ["x/src-a.yaml", "src-b"], "regimes": {"stratiform": {"sequences": 16, "window": [0.02, 0.04]}}},
            {"sources": ["x/src-a.yaml", "src-b"], "regimes": {"stratiform": {"sequences": 16, "window": [0.04, 0.04]}}}]
    lines = table(runs, "window").splitlines()
    assert lines[0] == "| regime (window) | src-a | src-b |"
    assert lines[-1] == "| stratiform (16) | 0.030 ± 0.010 | 0.040 ± 0.000 |"
    runs[1]["sources"] = ["src-c", "src-b"]
    with pytest.raises(SystemExit, match="different sources"):
        table(runs, "window")


def test_the_linear_reference_is_fitted_on_one_regime_and_scored_on_all():
    torch.manual_seed(1)
    own = [torch.randn(3, 2, 4, 5, 5), torch.randn(2, 2, 4, 5, 5)]
    a, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)

    def mapped(t, coef):
        return (t.double().permute(0, 1, 3, 4, 2) @ coef + b).permute(0, 1, 4, 2, 3)

    exact = [[mapped(o, a)] for o in own]
    fit = np.array([True, True, True, False, False])
    np.testing.assert_allclose(linear_reference(own, exact, fit), 0.0, atol=1e-20)
    other = [exact[0], [mapped(own[1], 2.0 * a)]]  # the unfitted samples follow another map
    err = linear_reference(own, other, fit)[:, 0]
    assert err[:3].max() < 1e-20 and err[3:].min() > 0.1
