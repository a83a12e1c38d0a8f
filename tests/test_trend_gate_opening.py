"""benchmarks/trend_gate_opening.py: the share of the window's trend a gated network continues, read without changing it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.trend_gate_opening import TrendGateRecorder
from nowcast.models.config import ArchitectureConfig
from nowcast.models.predictor import Predictor


def _gated(decoder: str, gate: float) -> Predictor:
    """A gated network whose change is zero and whose gate is ``gate`` everywhere."""
    arch = ArchitectureConfig(layers=1, hidden=8, kernel=3, patch_size=4, residual=True, decoder=decoder, trend_gate=True)
    model = Predictor.from_config(arch).eval()
    last = model.head if isinstance(model.head, torch.nn.Conv2d) else model.head.last
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[last.bias.shape[0] // 2:] = gate
    return model


def _growing(b: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    base = 0.3 + 0.5 * torch.rand(b, 1, 1, 16, 16)
    return base * torch.linspace(0.6, 1.0, 4).view(1, 4, 1, 1, 1)  # wet everywhere, growing: a trend to gate


@pytest.mark.parametrize("decoder", ["linear", "refine"])
@pytest.mark.parametrize("gate", [0.0, 0.4])
def test_the_share_is_the_gate_where_the_gate_is_one_value(decoder, gate):
    model, frames, leads = _gated(decoder, gate), _growing(), 6
    recorder = TrendGateRecorder(model, leads)
    with recorder.sequence():
        model.forecast(frames, leads)
    with recorder.sequence():  # a second forecast adds to the same sums
        model.forecast(frames, leads)
    result = recorder.result()
    assert np.allclose(result["share"], gate, atol=1e-6) and np.allclose(result["gate_wet"], gate, atol=1e-6)
    assert recorder.energy[0] > 0  # the window did show a trend: the test can fail
    recorder.close()


def test_recording_changes_no_forecast_and_leaves_nothing_behind():
    from nowcast.models import predictor

    model, frames = _gated("refine", 0.7), _growing()
    want = model.forecast(frames, 6)
    assert float((want[:, -1] - frames[:, -1]).abs().mean()) > 1e-3  # the open gate changes the forecast
    original = predictor.trend_rate
    recorder = TrendGateRecorder(model, 6)
    with recorder.sequence():
        got = model.forecast(frames, 6)
    recorder.close()
    assert torch.equal(got, want)
    assert predictor.trend_rate is original and not model.head._forward_hooks


def test_a_model_without_the_gate_is_refused():
    arch = ArchitectureConfig(layers=1, hidden=8, kernel=3, patch_size=4, residual=True)
    with pytest.raises(SystemExit, match="no trend gate"):
        TrendGateRecorder(Predictor.from_config(arch), 6)
