"""benchmarks/tmu_gates.py: the transfer gates it reports are each source's own, read without changing the forecast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.tmu_gates import GateRecorder, table
from nowcast.models.tmu import TMUCell


def _cell() -> tuple[torch.nn.Module, TMUCell]:
    torch.manual_seed(0)
    cell = TMUCell(2, 4, kernel=3, source_channels=[4, 4, 4], variant="convex")
    with torch.no_grad():  # the sources' gates open differently, so a wrong slice reads another source's
        cell.norm.bias[4 * 4 : 5 * 4] = -3.0
        cell.norm.bias[6 * 4 : 7 * 4] = 3.0
    holder = torch.nn.Module()
    holder.cell = cell
    return holder, cell


def test_each_sources_gate_is_its_own_and_the_forecast_is_unchanged():
    holder, cell = _cell()
    x, h, c = torch.randn(2, 2, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    (h_plain, c_plain), _ = cell.step(x, (h, c))
    recorder = GateRecorder(holder)
    (h_hooked, c_hooked), _ = cell.step(x, (h, c))
    torch.testing.assert_close(h_hooked, h_plain, rtol=0, atol=0)
    torch.testing.assert_close(c_hooked, c_plain, rtol=0, atol=0)
    with torch.no_grad():
        t = torch.sigmoid(cell.gates(x, h)[:, 16:28]).reshape(2, 3, -1).mean(2).mean(0).numpy()
    np.testing.assert_allclose(recorder.means(), t, rtol=1e-6)
    closed, _, opened = recorder.means()
    assert closed < 0.2 and opened > 0.8  # the biases above
    with torch.no_grad():
        tau = cell.gates(x, h)[:, 16:28].reshape(2, 3, -1)
        soft = torch.softmax(tau, dim=1)
    choice, decisive = recorder.choice()
    np.testing.assert_allclose(choice, soft.mean(2).mean(0).numpy(), rtol=1e-5)
    assert choice.sum() == pytest.approx(1.0)
    assert decisive == pytest.approx(float((soft.max(dim=1).values > 0.5).float().mean()), abs=1e-6)
    recorder.reset()
    with pytest.raises(ValueError, match="no TMU step"):
        recorder.means()
    recorder.close()
    cell.step(x, (h, c))
    assert recorder.counts == 0  # removed hooks record nothing


def test_a_model_without_transferable_memory_is_refused():
    plain = torch.nn.Module()
    plain.cell = TMUCell(2, 4, kernel=3)  # no sources: a ConvLSTM cell
    with pytest.raises(SystemExit, match="not a TMU target"):
        GateRecorder(plain)


def test_the_table_shows_the_mean_and_half_range_over_checkpoints():
    runs = [{"sources": ["a/src-x.yaml", "src-y"], "sets": {"rigid": {"gates": [0.4, 0.6]}}},
            {"sources": ["a/src-x.yaml", "src-y"], "sets": {"rigid": {"gates": [0.5, 0.6]}}}]
    assert table(runs).splitlines()[-1] == "| rigid | 0.450 ± 0.050 | 0.600 ± 0.000 |"
    assert table(runs).splitlines()[0] == "| test set | src-x | src-y |"
    for run, choice in zip(runs, ([0.3, 0.7], [0.5, 0.5])):
        run["sets"]["rigid"]["choice"] = choice
    assert table(runs, "choice").splitlines()[-1] == "| rigid | 0.400 ± 0.100 | 0.600 ± 0.100 |"
    runs[1]["sources"] = ["src-z", "src-y"]
    with pytest.raises(SystemExit, match="different sources"):
        table(runs)
