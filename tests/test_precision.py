"""Mixed precision: the automatic choice, its limits, and what bf16 changes (nothing that matters)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nowcast import precision as prec
from nowcast.errors import ConfigError
from nowcast.models.zoo import load_checkpoint
from nowcast.training import train
from tests.test_training import fixed, moving_square, small

needs_bf16 = pytest.mark.skipif(not prec.bf16_supported("cpu"), reason="this CPU has no bf16 units")


@pytest.fixture()
def fake_cpu(monkeypatch):
    """Pretend the CPU has bf16 units that are ``speedup`` times faster than fp32."""

    def set_speedup(speedup: float, units: bool = True) -> None:
        monkeypatch.setattr(prec, "_cpu_has_bf16", lambda: units)
        monkeypatch.setattr(prec, "bf16_speedup", lambda device="cpu": speedup if units else 0.0)

    return set_speedup


@pytest.mark.parametrize(("speedup", "expected"), [(2.5, "bf16"), (prec.MIN_SPEEDUP, "bf16"),
                                                    (prec.MIN_SPEEDUP - 0.01, "fp32"), (0.65, "fp32")])
def test_auto_takes_bf16_only_where_it_is_faster(fake_cpu, speedup, expected):
    fake_cpu(speedup)
    assert prec.resolve_precision("auto", "cpu") == expected
    assert prec.resolve_precision("fp32", "cpu") == "fp32"
    assert prec.resolve_precision("bf16", "cpu") == "bf16"  # asked explicitly: honoured even where slower


def test_bf16_without_units_is_refused_and_auto_falls_back(fake_cpu):
    fake_cpu(0.0, units=False)
    assert prec.resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ConfigError, match="no bf16 units"):
        prec.resolve_precision("bf16", "cpu")
    with pytest.raises(ConfigError, match="expected one of auto, bf16, fp32"):
        prec.resolve_precision("fp16", "cpu")


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert prec.resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device"):
        prec.resolve_device("cuda")
    with pytest.raises(ConfigError, match="expected one of"):
        prec.resolve_device("tpu")


def test_speed_probe_measures_a_ratio():
    speedup = prec.bf16_speedup("cpu")
    assert speedup == 0.0 if not prec.bf16_supported("cpu") else 0.05 < speedup < 20.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_measures_on_a_gpu():
    """On a GPU ``auto`` follows the measured speed-up too, not the mere presence of bf16 units."""
    speedup = prec.bf16_speedup("cuda")
    assert 0.05 < speedup < 50.0
    assert prec.resolve_precision("auto", "cuda") == ("bf16" if speedup >= prec.MIN_SPEEDUP else "fp32")


def test_autocast_fp32_changes_nothing():
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.rand(1, 3, 8, 8)
    with prec.autocast("fp32") as used:
        assert used == "fp32" and conv(x).dtype == torch.float32


@needs_bf16
def test_bf16_training_keeps_fp32_weights_and_learns(tmp_path: Path):
    """Master weights and optimizer state stay fp32; the loss falls as in fp32; the checkpoint says bf16."""
    results = {}
    for p in ("fp32", "bf16"):
        cfg = small(tmp_path / p, f"tiny-{p}", training={"iterations": 40, "lr": 1e-2, "precision": p,
                                                         "val_every": 40, "checkpoint_every": 40})
        results[p] = train(cfg, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()])
        ckpt = load_checkpoint(results[p].checkpoint)
        assert ckpt.metadata["training_precision"] == p
        assert all(v.dtype == torch.float32 for v in ckpt.state_dict.values() if v.is_floating_point())
    first = {p: np.mean([h["prediction"] for h in r.history[:5]]) for p, r in results.items()}
    last = {p: np.mean([h["prediction"] for h in r.history[-5:]]) for p, r in results.items()}
    assert last["bf16"] < first["bf16"] / 2
    assert last["bf16"] == pytest.approx(last["fp32"], rel=0.25, abs=2e-3)
    assert results["bf16"].history[-1]["loss"] != results["fp32"].history[-1]["loss"]  # bf16 really ran


@needs_bf16
def test_bf16_forecast_of_the_shipped_model_agrees_with_fp32():
    """bf16 vs fp32 on a real moving field: differences far below what a forecaster could see."""
    from nowcast.data.seeds import load_seed
    from nowcast.data.testcases import rigid_motion_case
    from nowcast.models.zoo import load_forecaster

    seed = load_seed("meteoswiss_odim_composite", region="swiss-south")
    field = np.nan_to_num(np.asarray(seed.values, dtype=np.float32), nan=0.0)
    window = rigid_motion_case(field, 4, (1.5, -0.5))
    out = {}
    for p in ("fp32", "bf16"):
        f = load_forecaster("swiss-south-tmu").to("cpu", p)
        assert f.resolved_precision == p
        out[p] = f.predict(window, 6)
    wet = out["fp32"] >= 0.1
    assert wet.any()
    db = {p: 10 * np.log10(np.maximum(v, 0.1)) for p, v in out.items()}
    assert np.nanmax(np.abs(db["bf16"] - db["fp32"])[wet]) < 1.0  # under 1 dB (~26 %) anywhere it rains
    assert np.nanmean(np.abs(db["bf16"] - db["fp32"])[wet]) < 0.1
    assert np.array_equal(np.isnan(out["bf16"]), np.isnan(out["fp32"]))
    assert not np.array_equal(out["bf16"], out["fp32"])  # bf16 really ran
