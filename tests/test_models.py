"""Networks: shapes, gradients, the TMU's reduction to ConvLSTM, the memory bank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.models.cells import ConvLSTMCell
from nowcast.models.normalization import make_normaliser
from nowcast.models.predictor import Predictor, fold, unfold
from nowcast.models.tmu import MemoryBank, TMUCell


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest, and a shared CI machine stays usable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _frames(b=2, t=6, size=16):
    return torch.rand(b, t, 1, size, size)


def test_fold_unfold_round_trip():
    x = _frames()
    folded = fold(x, 4)
    assert folded.shape == (2, 6, 16, 4, 4)
    assert torch.equal(unfold(folded, 4), x)
    with pytest.raises(ValueError, match="multiple of the patch"):
        fold(torch.rand(1, 2, 1, 10, 16), 4)


@pytest.mark.parametrize("sources", [(), (8,), (8, 6)])
def test_predictor_shapes_dtypes(sources):
    model = Predictor(layers=2, hidden=8, kernel=3, patch_size=4, source_channels=sources)
    x = _frames()
    out = model(x, input_frames=3, output_frames=3, sampling_prob=0.5)
    assert out.predictions.shape == (2, 5, 1, 16, 16) and out.predictions.dtype == torch.float32
    assert len(out.distilled) == len(sources)
    for d, c in zip(out.distilled, sources):
        assert d.shape == (2, 5, c, 4, 4)
    # any number of inputs and leads; closed loop needs only the inputs
    fc = model.forecast(x[:, :2], leads=7)
    assert fc.shape == (2, 7, 1, 16, 16)
    # any frame size that is a multiple of the patch (tiles of a region)
    assert model.forecast(torch.rand(1, 2, 1, 8, 24), leads=1).shape == (1, 1, 1, 8, 24)


def test_hidden_per_layer_and_type_of_bottom_layer():
    model = Predictor(layers=3, hidden=[8, 6, 4], kernel=3, patch_size=2, source_channels=(5,))
    assert isinstance(model.cells[0], TMUCell) and type(model.cells[1]) is ConvLSTMCell
    assert model(_frames(t=4), 2, 2).predictions.shape == (2, 3, 1, 16, 16)
    assert type(Predictor(layers=1, hidden=4, kernel=3, patch_size=2).cells[0]) is ConvLSTMCell


def test_tmu_with_no_source_is_exactly_convlstm():
    lstm = ConvLSTMCell(16, 8, kernel=3)
    tmu = TMUCell(16, 8, kernel=3, source_channels=())
    assert set(lstm.state_dict()) == set(tmu.state_dict())
    tmu.load_state_dict(lstm.state_dict())
    x = torch.rand(2, 16, 4, 4)
    s_l = s_t = lstm.init_state(2, 4, 4, x)
    for _ in range(4):
        s_l = lstm(x, s_l)
        s_t, distilled = tmu.step(x, s_t)
        assert distilled == []
    assert torch.equal(s_l[0], s_t[0]) and torch.equal(s_l[1], s_t[1])
    # and a predictor without sources equals one built "as TMU" with N=0
    a = Predictor(2, 8, 3, 4)
    b = Predictor(2, 8, 3, 4, source_channels=())
    b.load_state_dict(a.state_dict())
    x = _frames()
    assert torch.equal(a(x, 3, 3).predictions, b(x, 3, 3).predictions)


def test_sum_and_normalized_sum_differ_as_specified():
    torch.manual_seed(1)
    s = TMUCell(16, 8, kernel=3, source_channels=(8, 6), variant="sum")
    n = TMUCell(16, 8, kernel=3, source_channels=(8, 6), variant="normalized_sum")
    n.load_state_dict(s.state_dict())
    x = torch.rand(2, 16, 4, 4)
    h0 = torch.rand(2, 8, 4, 4)
    c0 = torch.rand(2, 8, 4, 4)
    (h_s, c_s), d_s = s.step(x, (h0, c0))
    (h_n, c_n), d_n = n.step(x, (h0, c0))
    # H_t and the distilled memories come from C'_t: identical
    assert torch.equal(h_s, h_n)
    for a, b in zip(d_s, d_n):
        assert torch.equal(a, b)
    # C_t = C' + sum  versus  C' + sum / N
    c_prime = c_s - (c_s - c_n) * 2  # c_s = C' + S, c_n = C' + S/2 -> C' = c_s - 2 (c_s - c_n)
    transfer = c_s - c_prime
    torch.testing.assert_close(c_n, c_prime + transfer / 2)
    # recompute C' independently and check the written equation
    gates = s.gates(x, h0)
    _, cp = s.lstm_update(gates, c0)
    torch.testing.assert_close(cp, c_prime, rtol=1e-5, atol=1e-5)
    expected = torch.zeros_like(cp)
    for k, (d, proj) in enumerate(zip(d_s, s.projections)):
        t = torch.sigmoid(gates[:, (4 + k) * 8 : (5 + k) * 8])
        expected = expected + t * proj(d) + (1 - t) * cp
    torch.testing.assert_close(c_s, cp + expected)
    assert not torch.allclose(c_s, c_n)
    with pytest.raises(ValueError, match="variant"):
        TMUCell(16, 8, source_channels=(8,), variant="mean")


def test_gradients_reach_every_trainable_parameter_and_no_frozen_source():
    sources = [Predictor(2, 8, 3, 4), Predictor(1, 6, 3, 4)]
    bank = MemoryBank(sources)
    target = Predictor(2, 8, 3, 4, source_channels=bank.source_channels)
    x = _frames(t=6)
    out = target(x, 3, 3, sampling_prob=0.5)
    mems = bank(fold(x[:, :5], 4))
    assert not any(m.requires_grad for m in mems)
    loss = ((out.predictions - x[:, 1:]) ** 2).mean() + sum(((d - m) ** 2).mean() for d, m in zip(out.distilled, mems))
    loss.backward()
    for name, p in target.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name
    for s in sources:
        for name, p in s.named_parameters():
            assert not p.requires_grad and p.grad is None, name


def test_memory_bank_fused_equals_per_source_and_shapes():
    sources = [Predictor(2, 8, 3, 4) for _ in range(3)]
    fused = MemoryBank(sources)
    assert fused.fused
    x = fold(_frames(t=5), 4)
    mems = fused(x)
    assert [m.shape for m in mems] == [(2, 5, 8, 4, 4)] * 3
    # reference: step each source's own bottom cell
    for src, mem in zip(sources, mems):
        cell = src.cells[0]
        state = cell.init_state(2, 4, 4, x)
        for t in range(5):
            state = cell(x[:, t], state)
            torch.testing.assert_close(mem[:, t], state[1], rtol=1e-5, atol=1e-5)
    mixed = MemoryBank([Predictor(2, 8, 3, 4), Predictor(1, 6, 5, 4)])
    assert not mixed.fused
    assert [m.shape for m in mixed(x)] == [(2, 5, 8, 4, 4), (2, 5, 6, 4, 4)]
    mixed.train()
    assert all(not s.training for s in mixed.sources)


def test_memory_bank_refuses_a_tmu_source():
    with pytest.raises(ValueError, match="plain ConvLSTM"):
        MemoryBank([Predictor(1, 8, 3, 4, source_channels=(8,))])


@pytest.mark.parametrize(
    "spec, values",
    [
        ({"kind": "log", "offset": 0.1, "scale": 3.0}, np.array([0.0, 0.05, 0.1, 1.0, 12.5, 150.0], dtype=np.float32)),
        ({"kind": "linear", "scale": 10.0}, np.array([0.0, 0.3, 4.0, 88.0], dtype=np.float32)),
        ({"kind": "brightness_temperature", "reference": 330.0, "scale": 120.0}, np.array([200.0, 250.5, 301.25], dtype=np.float32)),
        ({"kind": "minmax", "min": 180.0, "max": 330.0}, np.array([180.0, 222.2, 330.0], dtype=np.float32)),
        ({"kind": "identity"}, np.array([0.0, 0.25, 1.0], dtype=np.float32)),
    ],
)
def test_normalisation_round_trips(spec, values):
    norm = make_normaliser(spec)
    x = norm.forward(values)
    assert x.dtype == np.float32
    back = norm.inverse(x)
    np.testing.assert_allclose(back, values, rtol=2e-6, atol=1e-6)
    if spec["kind"] == "log":
        assert x[0] == 0.0 and back[0] == 0.0  # dry stays exactly dry
        assert norm.inverse(np.array([-0.2], dtype=np.float32))[0] == 0.0  # never negative rain
    assert make_normaliser(norm.as_dict()) == norm


def test_normalisation_errors_name_the_key():
    from nowcast.errors import ConfigError

    with pytest.raises(ConfigError, match="data.normalisation.kind"):
        make_normaliser({"kind": "sqrt"})
    with pytest.raises(ConfigError, match="data.normalisation.min"):
        make_normaliser({"kind": "minmax", "max": 3})
    with pytest.raises(ConfigError, match="data.normalisation.offst"):
        make_normaliser({"kind": "log", "offst": 3})


def test_convex_memory_is_the_written_mix():
    cell = TMUCell(16, 8, kernel=3, source_channels=(8, 6), variant="convex")
    x, h0, c0 = torch.rand(2, 16, 4, 4), torch.rand(2, 8, 4, 4), torch.rand(2, 8, 4, 4)
    (_, c), distilled = cell.step(x, (h0, c0))
    gates = cell.gates(x, h0)
    _, cp = cell.lstm_update(gates, c0)
    t = [torch.sigmoid(gates[:, (4 + k) * 8 : (5 + k) * 8]) for k in range(2)]
    mixed = sum(tk * proj(d) for tk, d, proj in zip(t, distilled, cell.projections))
    torch.testing.assert_close(c, (1 - (t[0] + t[1]) / 2) * cp + mixed / 2)


def test_competitive_memory_lets_the_sources_share_the_convex_share_by_a_softmax():
    """The 'competitive' update takes the convex variant's share of distilled memory, split among the sources by a
    softmax of their gate pre-activations: where one gate dominates, that source's memory alone comes in."""
    cell = TMUCell(16, 8, kernel=3, source_channels=(8, 6, 8), variant="competitive")
    x, h0, c0 = torch.rand(2, 16, 4, 4), torch.rand(2, 8, 4, 4), torch.rand(2, 8, 4, 4)
    (_, c), distilled = cell.step(x, (h0, c0))
    gates = cell.gates(x, h0)
    _, cp = cell.lstm_update(gates, c0)
    tau = [gates[:, (4 + k) * 8 : (5 + k) * 8] for k in range(3)]
    share = sum(torch.sigmoid(tk) for tk in tau) / 3
    w = torch.softmax(torch.stack(tau), dim=0)
    mixed = sum(w[k] * proj(d) for k, (d, proj) in enumerate(zip(distilled, cell.projections)))
    torch.testing.assert_close(c, (1 - share) * cp + share * mixed)
    with torch.no_grad():  # source 1's gate far above the others: its memory alone in the distilled part
        cell.norm.bias[5 * 8 : 6 * 8] = 30.0
        cell.norm.bias[4 * 8 : 5 * 8] = -30.0
        cell.norm.bias[6 * 8 : 7 * 8] = -30.0
    (_, c), distilled = cell.step(x, (h0, c0))
    gates = cell.gates(x, h0)
    _, cp = cell.lstm_update(gates, c0)
    share = sum(torch.sigmoid(gates[:, (4 + k) * 8 : (5 + k) * 8]) for k in range(3)) / 3
    torch.testing.assert_close(c, (1 - share) * cp + share * cell.projections[1](distilled[1]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant, bounded", [("convex", True), ("competitive", True), ("normalized_sum", False)])
def test_tmu_memory_stays_bounded_over_24_closed_loop_steps(variant, bounded):
    """The written update multiplies C' by ~1.5 per step and explodes; the convex mix cannot."""
    torch.manual_seed(3)
    model = Predictor(layers=1, hidden=8, kernel=3, patch_size=4, source_channels=(8, 8), variant=variant,
                      forget_bias=1.0)
    with torch.no_grad():  # transfer gates open, forget gate wide open: the worst case for growth
        model.cells[0].conv.bias[8:16].fill_(4.0)
        model.cells[0].conv.bias[32:48].fill_(0.0)
    cell = model.cells[0]
    x = torch.rand(1, 16, 4, 4)
    state = cell.init_state(1, 4, 4, x)
    peak = 0.0
    for _ in range(24):
        state, _ = cell.step(x, state)
        peak = max(peak, float(state[1].abs().max()))
    if bounded:
        assert peak < 10.0
    else:
        assert peak > 100.0


def test_residual_predictor_starts_as_persistence_of_its_last_input():
    for decoder in ("linear", "refine", "smooth"):
        model = Predictor(layers=2, hidden=8, kernel=3, patch_size=4, residual=True, decoder=decoder)
        frames = _frames(b=2, t=4, size=16)
        out = model.forecast(frames, 5)
        assert torch.equal(out, frames[:, -1:].expand(-1, 5, -1, -1, -1))


def test_smooth_decoder_output_is_bilinear_between_patch_centres():
    model = Predictor(layers=1, hidden=8, kernel=3, patch_size=4, residual=False, decoder="smooth")
    with torch.no_grad():
        out = unfold(model.head(torch.randn(1, 8, 4, 4))[:, None], 4)[0, 0, 0]
    # second differences along a row vanish inside each pair of patch centres (piecewise linear)
    row = out[6].numpy()
    np.testing.assert_allclose(np.diff(row[2:6], 2), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.diff(row[6:10], 2), 0.0, atol=1e-5)


@pytest.mark.parametrize("patch, out_channels", [(4, 1), (2, 3), (1, 1)])
def test_refine_head_on_the_patch_grid_equals_the_full_resolution_decoder(patch, out_channels):
    """The folded 3x3 kernel is the unfold -> GELU -> 3x3 conv -> fold of the written decoder, values and gradients."""
    from torch.nn import functional as F

    from nowcast.models.predictor import RefineHead

    head = RefineHead(8, out_channels, patch)
    with torch.no_grad():  # a trained-looking head: the residual model's zero init would hide any error
        head.smooth.weight.normal_()
        head.smooth.bias.normal_()
    h = torch.randn(2, 8, 5, 3)
    folded = head(h)
    written = F.pixel_unshuffle(head.smooth(F.gelu(F.pixel_shuffle(head.expand(h), patch))), patch)
    torch.testing.assert_close(folded, written, rtol=1e-5, atol=1e-5)
    grad_folded = torch.autograd.grad(folded.square().sum(), head.smooth.weight)[0]
    grad_written = torch.autograd.grad(written.square().sum(), head.smooth.weight)[0]
    torch.testing.assert_close(grad_folded, grad_written, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("source_channels", [8, 12])  # the target's width (no projection) and another
def test_tmu_fused_distillers_and_mix_equal_the_per_source_form(monkeypatch, source_channels):
    """Sources of equal channels run as one convolution, one norm, one projection and one mix: the same numbers."""
    cell = TMUCell(16, 8, kernel=3, source_channels=(source_channels,) * 3, variant="convex")
    with torch.no_grad():  # distinct norms per source, so mixing up their groups would show
        for distiller in cell.distillers:
            distiller.norm.weight.normal_()
            distiller.norm.bias.normal_()
    x, h0, c0 = torch.rand(2, 16, 4, 4), torch.rand(2, 8, 4, 4), torch.rand(2, 8, 4, 4)
    assert cell._fused
    (h_fast, c_fast), d_fast = cell.step(x, (h0, c0))
    monkeypatch.setattr(TMUCell, "_fused", property(lambda self: False))
    (h_slow, c_slow), d_slow = cell.step(x, (h0, c0))
    torch.testing.assert_close(h_fast, h_slow)
    torch.testing.assert_close(c_fast, c_slow)
    for fast, slow, distiller in zip(d_fast, d_slow, cell.distillers):
        torch.testing.assert_close(fast, slow)
        torch.testing.assert_close(fast, distiller(cell.lstm_update(cell.gates(x, h0), c0)[1]))
