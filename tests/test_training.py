"""The training loop: learning, distillation, determinism, resume, errors, CLI."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nowcast.errors import ConfigError, NowcastError
from nowcast.models.config import model_config_from_dict
from nowcast.models.zoo import load_checkpoint, load_forecaster
from nowcast.training import (
    TrainingDivergedError,
    distillation_weights,
    init_from_source,
    make_batches,
    sampling_probability,
    state_path_for,
    train,
)
from tests.test_zoo import tiny_config


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest, and a shared CI machine stays usable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



def moving_square(b: int = 2, t: int = 6, size: int = 16) -> torch.Tensor:
    """A bright 4x4 square moving one pixel right per frame: easy to overfit."""
    x = torch.zeros(b, t, 1, size, size)
    for i in range(b):
        for k in range(t):
            x[i, k, 0, 4 + 2 * i : 8 + 2 * i, 2 + k + i : 6 + k + i] = 1.0
    return x


def fixed(batch: torch.Tensor):
    def factory(start: int):
        while True:
            yield batch

    return factory


def small(tmp_path: Path, name: str = "tiny", **over):
    """16x16 frames, one or two thin layers: a few ms per iteration."""
    base = {
        "architecture": {"layers": 1, "hidden": 8, "kernel": 3, "patch_size": 4},
        "data": {"frame_size": 16},
    }
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return tiny_config(tmp_path, name, **base)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def test_sampling_schedule_and_weights():
    t = small(Path("/tmp"), training={"sampling_start": 10, "sampling_end": 20}).training
    assert [sampling_probability(t, i) for i in (0, 10, 15, 20, 99)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    tmu = model_config_from_dict({**small(Path("/tmp")).model_dump(), "tmu": {"sources": ["a", "b"], "weights": "adaptive"}}).tmu
    w = distillation_weights(tmu, torch.tensor([0.1, 0.3]), 2)
    assert torch.isclose(w.sum(), torch.tensor(1.0)) and w[0] > w[1]  # better-explained source weighs more
    assert torch.equal(distillation_weights(tmu.model_copy(update={"weights": "uniform"}), torch.tensor([0.1, 0.3]), 2), torch.tensor([0.5, 0.5]))


def test_tiny_overfit_loss_falls(tmp_path):
    cfg = small(tmp_path, training={"iterations": 150, "lr": 1e-2, "sampling_start": 1000, "sampling_end": 1000,
                                    "val_every": 1000, "checkpoint_every": 1000, "log_every": 1000})
    batch = moving_square()
    result = train(cfg, progress=False, batches=fixed(batch), val_batches=[batch])
    first = np.mean([h["prediction"] for h in result.history[:5]])
    last = np.mean([h["prediction"] for h in result.history[-5:]])
    assert last < first / 10, (first, last)
    assert result.iterations == 150 and result.checkpoint.is_file()
    assert "val_mse" in result.history[-1] and result.final_losses["loss"] == result.history[-1]["loss"]


def _sources(tmp_path: Path, n: int = 2) -> list[Path]:
    """Train n tiny sources for 2 iterations each; return their checkpoint paths."""
    paths = []
    for k in range(n):
        cfg = small(tmp_path, f"src{k}", role="source", training={"iterations": 2, "seed": k})
        paths.append(train(cfg, progress=False, batches=fixed(moving_square(t=6)), val_batches=[moving_square()]).checkpoint)
    return paths


def _tmu(tmp_path: Path, sources: list[Path], **training):
    return small(
        tmp_path, "tmu", tmu={"sources": [str(p) for p in sources], "variant": "normalized_sum"},
        training={"lr": 1e-2, "sampling_start": 1000, "sampling_end": 1000, "val_every": 1000,
                  "checkpoint_every": 1000, "log_every": 1000, **training},
    )


def test_distillation_loss_falls_with_tmu(tmp_path):
    sources = _sources(tmp_path)
    cfg = _tmu(tmp_path, sources, iterations=60)
    result = train(cfg, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()])
    dist = [h["distillation"] for h in result.history]
    assert np.mean(dist[-5:]) < np.mean(dist[:5]) / 3, (dist[:5], dist[-5:])
    md = load_checkpoint(result.checkpoint).metadata
    assert md["architecture"]["tmu_source_channels"] == [8, 8]
    assert [s["sha256"] for s in md["tmu"]["sources"]] == [load_checkpoint(p).sha256 for p in sources]
    assert md["metrics"]["distillation_weights"] == [0.5, 0.5]


def test_adaptive_weights_are_recorded(tmp_path):
    sources = _sources(tmp_path)
    d = _tmu(tmp_path, sources, iterations=3).model_dump()
    d["tmu"]["weights"] = "adaptive"
    result = train(model_config_from_dict(d), progress=False, batches=fixed(moving_square()), val_batches=[moving_square()])
    w = [result.history[-1][f"weight_{n}"] for n in range(2)]
    assert abs(sum(w) - 1) < 1e-6 and w != [0.5, 0.5]


def test_same_seed_same_weights_and_resume_equals_uninterrupted(tmp_path):
    # real Moving-MNIST batches (1 digit, 32x32), scheduled sampling active
    a = tiny_config(tmp_path / "a")
    b = tiny_config(tmp_path / "b")
    ra = train(a, progress=False)
    rb = train(b, progress=False)
    wa, wb = weights(ra.checkpoint), weights(rb.checkpoint)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert ra.sha256 and [h["loss"] for h in ra.history] == [h["loss"] for h in rb.history]
    # interrupted after 2 of 4 iterations, then resumed
    c = tiny_config(tmp_path / "c")
    part = train(c, progress=False, max_iterations=2)
    assert part.iterations == 2 and state_path_for(c.checkpoint_path).is_file()
    rc = train(c, progress=False)
    wc = weights(rc.checkpoint)
    assert all(torch.equal(wa[k], wc[k]) for k in wa)
    assert [h["loss"] for h in rc.history] == [h["loss"] for h in ra.history]
    assert load_checkpoint(rc.checkpoint).metadata["iterations"] == 4
    # resuming a finished run does nothing; --no-resume starts over
    again = train(c, progress=False)
    assert again.iterations == 4 and torch.equal(weights(again.checkpoint)["head.weight"], wc["head.weight"])
    d = tiny_config(tmp_path / "c", architecture={"hidden": 4})
    with pytest.raises(NowcastError, match="architecture.hidden"):
        train(d, progress=False)
    fresh = train(d, progress=False, resume=False, max_iterations=1)
    assert fresh.iterations == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")
def test_a_cpu_run_resumes_on_a_gpu(tmp_path):
    # Adam puts a loaded state on its parameters' device, and the adaptive
    # weights keep a running error: both must be on the GPU when the run goes on there.
    sources = _sources(tmp_path)
    d = _tmu(tmp_path, sources, iterations=4).model_dump()
    d["tmu"]["weights"] = "adaptive"
    cfg = model_config_from_dict(d)
    part = train(cfg, progress=False, max_iterations=2, batches=fixed(moving_square()), val_batches=[moving_square()])
    assert part.iterations == 2
    done = train(cfg, progress=False, device="cuda", batches=fixed(moving_square()), val_batches=[moving_square()])
    assert done.iterations == 4 and all(np.isfinite(h["loss"]) for h in done.history)
    state = torch.load(state_path_for(cfg.checkpoint_path), map_location="cpu", weights_only=True)
    assert state["running_error"].device.type == "cpu"  # a state file resumes anywhere
    assert load_checkpoint(done.checkpoint).metadata["iterations"] == 4

def test_nan_loss_stops_with_a_clear_error(tmp_path):
    cfg = small(tmp_path, training={"iterations": 5})
    bad = moving_square()
    bad[0, 2, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match=r"'tiny': training diverged: loss is nan at iteration 1"):
        train(cfg, progress=False, batches=fixed(bad), val_batches=[moving_square()])
    assert issubclass(TrainingDivergedError, NowcastError)


def test_tmu_target_forecasts_without_its_sources(tmp_path):
    sources = _sources(tmp_path)
    d = _tmu(tmp_path, sources, iterations=2).model_dump()
    d["data"].update(kind="zarr_sequences", path="unused.zarr", modality="rain", units="mm h-1",
                     normalisation={"kind": "log", "offset": 0.1, "scale": 3.0}, timestep_minutes=5.0)
    cfg = model_config_from_dict(d)
    result = train(cfg, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()])
    for p in sources:
        p.unlink()
        state_path_for(p).unlink()
    fc = load_forecaster(result.checkpoint)
    window = np.random.default_rng(1).gamma(0.5, 2.0, (3, 32, 48)).astype(np.float32)
    out = fc.predict(window, 5)
    assert out.shape == (5, 32, 48) and out.dtype == np.float32 and (out >= 0).all()
    assert fc.model.has_tmu and fc.sha256 == result.sha256
    # the operational path (tiles, patch multiple) accepts it as is
    from nowcast.forecast import run_model

    assert run_model(fc, window, 2, tile=16, overlap=4).shape == (2, 32, 48)
    # but training the target again needs them, and says which is missing
    with pytest.raises(NowcastError, match="does not exist"):
        train(cfg, progress=False, resume=False, batches=fixed(moving_square()), val_batches=[moving_square()])


def test_finetune_copies_matching_source_weights(tmp_path):
    (source,) = _sources(tmp_path, 1)
    cfg = small(tmp_path, "ft", training={"init_from": str(source), "iterations": 1, "lr": 1e-12, "grad_clip": None})
    from nowcast.models.predictor import Predictor

    model = Predictor.from_config(cfg.architecture)
    init_from_source(model, str(source))
    src = weights(source)
    assert all(torch.equal(v, src[k]) for k, v in model.state_dict().items())
    result = train(cfg, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()])
    md = load_checkpoint(result.checkpoint).metadata
    assert md["init_from"]["sha256"] == load_checkpoint(source).sha256
    # a TMU target finetuned from a plain source keeps only the fitting tensors
    tmu = Predictor.from_config(cfg.architecture, [8])
    init_from_source(tmu, str(source))
    assert torch.equal(tmu.state_dict()["head.weight"], src["head.weight"])


@pytest.mark.parametrize("n_sources, layer_norm, bound, layer", [(4, True, 0.025, "bottom"), (2, True, 0.08, "bottom"),
                                                                 (4, False, 0.025, "bottom"), (4, True, 0.025, "top"),
                                                                 (4, False, 0.03, "top")])
def test_tmu_started_from_a_source_forecasts_as_the_source(tmp_path, n_sources, layer_norm, bound, layer):
    """TMU + init_from: the gate rows come from the source's same layer, the transfer gates start nearly closed."""
    from nowcast.models.predictor import Predictor
    from nowcast.training import WARM_TRANSFER_BIAS

    arch = {"layers": 2, "hidden": 8, "kernel": 3, "patch_size": 4, "layer_norm": layer_norm}
    cfg = small(tmp_path, "src", role="source", architecture=arch, training={"iterations": 2})
    source_path = train(cfg, progress=False, batches=fixed(moving_square(t=6)), val_batches=[moving_square()]).checkpoint
    source = load_checkpoint(source_path).build_model().eval()
    torch.manual_seed(1)
    for p in source.parameters():  # weights far from their init, so that a wrong copy shows
        p.data.add_(0.3 * torch.randn_like(p))
    from nowcast.models.zoo import save_checkpoint

    save_checkpoint(source_path, source, cfg, iterations=2)
    source = load_checkpoint(source_path).build_model().eval()
    target = Predictor.from_config(cfg.architecture, [8] * n_sources, "convex", layer).eval()
    init_from_source(target, str(source_path))
    cell = "cells.0" if layer == "bottom" else "cells.1"
    frames = torch.rand(2, 4, 1, 16, 16)
    want, got = source.forecast(frames, 6), target.forecast(frames, 6)
    scale = float(want.abs().mean())
    # the transfer gates' share is sigmoid(-4) ~ 0.018 of the memory: a small, bounded difference
    # (with 2 sources the layer norm's statistics differ a little from the source's: a wider bound)
    assert float((got - want).abs().mean()) < bound * scale, (float((got - want).abs().mean()), scale)
    state = target.state_dict()
    assert torch.equal(state[f"{cell}.conv.weight"][:32], source.state_dict()[f"{cell}.conv.weight"])
    if layer_norm:
        assert torch.all(state[f"{cell}.norm.bias"][32:] == WARM_TRANSFER_BIAS)
    else:
        assert torch.all(state[f"{cell}.conv.bias"][32:] == WARM_TRANSFER_BIAS)
    # a fresh TMU (no init) is far from the source: the test can tell the difference
    fresh = Predictor.from_config(cfg.architecture, [8] * n_sources, "convex", layer).eval()
    assert float((fresh.forecast(frames, 6) - want).abs().mean()) > 0.2 * scale


@pytest.mark.parametrize("decoder", ["linear", "refine", "smooth"])
def test_a_gated_target_started_from_an_ungated_source_forecasts_as_the_source(tmp_path, decoder):
    """init_from into ``trend_gate``: the source's output rows become the change rows, the gate starts shut."""
    from nowcast.models.predictor import Predictor
    from nowcast.models.zoo import save_checkpoint

    arch = {"layers": 1, "hidden": 8, "kernel": 3, "patch_size": 4, "residual": True, "decoder": decoder}
    cfg = small(tmp_path, "src", role="source", architecture=arch, training={"iterations": 1})
    source_path = train(cfg, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()]).checkpoint
    source = load_checkpoint(source_path).build_model().eval()
    torch.manual_seed(2)
    for p in source.parameters():  # a head far from zero, so that a change row left fresh shows
        p.data.add_(0.3 * torch.randn_like(p))
    save_checkpoint(source_path, source, cfg, iterations=1)
    source = load_checkpoint(source_path).build_model().eval()
    gated = Predictor.from_config(cfg.architecture.model_copy(update={"trend_gate": True})).eval()
    init_from_source(gated, str(source_path))
    last = gated.head if isinstance(gated.head, torch.nn.Conv2d) else gated.head.last
    rows = last.weight.shape[0] // 2
    assert torch.count_nonzero(last.weight[rows:]) == 0 and torch.count_nonzero(last.bias[rows:]) == 0
    frames = torch.rand(2, 4, 1, 16, 16) * torch.linspace(0.2, 1.0, 4).view(1, 4, 1, 1, 1)  # growing: a trend to gate
    want, got = source.forecast(frames, 6), gated.forecast(frames, 6)
    assert torch.allclose(got, want, atol=1e-6), float((got - want).abs().max())
    assert float((want - frames[:, -1:]).abs().mean()) > 1e-3  # the source does change the frame: the test can fail


def test_zarr_sequences_batches(tmp_path):
    import xarray as xr

    rng = np.random.default_rng(0)
    rain = rng.gamma(0.5, 2.0, (3, 8, 20, 20)).astype(np.float32)
    ds = xr.Dataset({"rain_rate": (("sequence", "time", "y", "x"), rain, {"units": "mm h-1"})}, attrs={"units": "mm h-1"})
    store = tmp_path / "sim.zarr"
    ds.to_zarr(store, mode="w", consolidated=True)
    d = small(tmp_path).model_dump()
    d["data"].update(kind="zarr_sequences", path=str(store), modality="rain", units="mm h-1",
                     normalisation={"kind": "log", "offset": 0.1, "scale": 3.0}, timestep_minutes=5.0)
    cfg = model_config_from_dict(d)
    batches = list(make_batches(cfg, start=3, n_batches=2))
    assert batches[0].shape == (2, 6, 1, 16, 16) and batches[0].dtype == torch.float32
    assert torch.equal(batches[1], next(make_batches(cfg, start=4)))  # batch k is a function of k
    assert float(batches[0].min()) >= 0.0
    back = cfg.data.normaliser.inverse(batches[0].numpy())
    assert np.isin(np.round(back[0, 0, 0], 3), np.round(rain, 3)).mean() > 0.99
    d["data"]["units"] = "K"
    d["data"]["normalisation"] = {"kind": "brightness_temperature"}
    with pytest.raises(ConfigError, match="expects data.units 'K'"):
        next(make_batches(model_config_from_dict(d)))


def test_cli_train(tmp_path):
    from typer.testing import CliRunner

    from nowcast.cli import _register_commands, app, main

    _register_commands()
    cfg = tiny_config(tmp_path, "cli", training={"iterations": 2, "val_every": 2, "checkpoint_every": 2})
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["train", "--config", str(path), "--no-progress", "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    assert cfg.checkpoint_path.is_file() and "cli: 2 iterations" in result.output
    assert load_checkpoint(cfg.checkpoint_path, expect_config=cfg).metadata["iterations"] == 2
    # a config error is one line and exit code 2
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_distillation_scales_and_warmup():
    from nowcast.models.config import TMUConfig
    from nowcast.training import distill_lambda, distillation_errors

    torch.manual_seed(0)
    memories = [torch.randn(2, 3, 4, 5, 5) * 7.0, torch.randn(2, 3, 6, 5, 5) * 0.1]
    distilled = [torch.zeros_like(m) for m in memories]  # explains nothing
    pred = torch.tensor(0.02)
    plain = distillation_errors(TMUConfig(sources=["a", "b"], distill_scale="plain"), distilled, memories, pred)
    var = distillation_errors(TMUConfig(sources=["a", "b"], distill_scale="variance"), distilled, memories, pred)
    bal = distillation_errors(TMUConfig(sources=["a", "b"], distill_scale="balanced"), distilled, memories, pred)
    assert plain[0] > 1000 * plain[1]  # the plain form follows each memory's scale
    torch.testing.assert_close(var, torch.ones(2), atol=0.15, rtol=0)  # scale-free: ~1 = explains nothing
    assert float(bal.max()) <= 1.2 * float(pred)  # cannot swamp the prediction loss
    # memories scaled 100x: the variance form does not move
    var100 = distillation_errors(TMUConfig(sources=["a", "b"], distill_scale="variance"), distilled,
                                 [m * 100 for m in memories], pred)
    torch.testing.assert_close(var100, var)
    warm = TMUConfig(sources=["a"], distill_weight=0.5, distill_warmup=100)
    assert distill_lambda(warm, 0) == pytest.approx(0.005) and distill_lambda(warm, 49) == pytest.approx(0.25)
    assert distill_lambda(warm, 99) == 0.5 and distill_lambda(warm, 5000) == 0.5
    assert distill_lambda(TMUConfig(sources=["a"]), 0) == 1.0


def test_soft_area_bias_is_zero_for_the_observed_area_and_symmetric_in_the_ratio():
    from nowcast.training import soft_area_bias_from_sums, soft_area_sums

    truth = torch.zeros(2, 3, 1, 16, 16)
    truth[:, :, :, 4:8, 4:8] = 1.0  # 16 pixels above the threshold 0.5 per sample and lead
    w = torch.ones_like(truth)
    wider, narrower = torch.zeros_like(truth), torch.zeros_like(truth)
    wider[:, :, :, 2:10, 4:8] = 1.0    # twice the area
    narrower[:, :, :, 4:6, 4:8] = 1.0  # half of it
    loss = {name: float(soft_area_bias_from_sums(soft_area_sums(x, truth, w, [0.5]), floor=0.0))
            for name, x in {"same": truth, "wider": wider, "narrower": narrower}.items()}
    assert loss["same"] < 1e-9
    assert loss["wider"] == pytest.approx(np.log(2.0) ** 2, rel=1e-2) == pytest.approx(loss["narrower"], rel=1e-2)
    # per lead: a bias at one lead is not hidden by the opposite bias at another
    mixed = truth.clone()
    mixed[:, 0] = wider[:, 0]
    mixed[:, 1] = narrower[:, 1]
    sums = soft_area_sums(mixed, truth, w, [0.5])
    assert sums.shape == (1, 2, 3) and float(soft_area_bias_from_sums(sums, floor=0.0)) > 0.3
    # the gradient shrinks an inflated forecast
    pred = wider.clone().requires_grad_(True)
    soft_area_bias_from_sums(soft_area_sums(pred, truth, w, [0.5])).backward()
    assert pred.grad[:, :, :, 2:4, 4:8].sum() > 0  # descending the gradient lowers the extra area


def test_area_bias_term_is_trained_and_logged(tmp_path):
    cfg = small(tmp_path, training={"iterations": 2, "area_bias_weight": 0.5, "soft_csi_thresholds": [0.3]})
    result = train(cfg, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()])
    assert all(np.isfinite(h["area_bias_loss"]) for h in result.history)


def test_cosine_rate_falls_from_lr_to_its_final_fraction():
    from nowcast.models.config import TrainingConfig
    from nowcast.training import learning_rate

    t = TrainingConfig(iterations=101, lr=1e-3, lr_schedule="cosine", lr_final=0.01)
    rates = [learning_rate(t, i) for i in range(101)]
    assert rates[0] == pytest.approx(1e-3)
    assert rates[50] == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))  # half way: half way between the ends
    assert rates[100] == pytest.approx(1e-5)  # the last step is taken at the final rate
    assert all(a >= b for a, b in itertools.pairwise(rates))
    assert learning_rate(t, 500) == pytest.approx(1e-5)  # past the end: stays there
    constant = TrainingConfig(iterations=101, lr=1e-3)
    assert {learning_rate(constant, i) for i in range(101)} == {1e-3}


def test_every_step_is_taken_at_the_scheduled_rate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The loop sets the rate before each step (a schedule computed but not applied would train at lr)."""
    from nowcast.training import learning_rate

    taken: list[float] = []
    step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        taken.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    config = small(tmp_path, "cosine", training={"iterations": 5, "val_every": 5, "checkpoint_every": 5, "lr": 1e-2,
                                                 "lr_schedule": "cosine", "lr_final": 0.1})
    train(config, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()])
    assert taken == pytest.approx([learning_rate(config.training, i) for i in range(5)])
    assert taken[0] == pytest.approx(1e-2) and taken[-1] == pytest.approx(1e-3)


def test_a_top_layer_tmu_distils_each_sources_top_memory(tmp_path):
    """``tmu.layer: top``: the target's top layer is the TMU, and it learns the sources' top-layer memory."""
    from nowcast.models.predictor import Predictor, fold
    from nowcast.models.tmu import MemoryBank, TMUCell
    from nowcast.models.zoo import architecture_metadata

    two = {"layers": 2, "hidden": [8, 6], "kernel": 3, "patch_size": 4}  # top memory 6 wide, bottom 8: told apart
    sources = []
    for k in range(2):
        cfg = small(tmp_path, f"src{k}", role="source", architecture=two, training={"iterations": 2, "seed": k})
        sources.append(train(cfg, progress=False, batches=fixed(moving_square(t=6)), val_batches=[moving_square()]).checkpoint)
    models = [load_checkpoint(p).build_model() for p in sources]

    # the bank's top memory is the source's own top cell's, as its own forward computes it
    frames = moving_square(t=5)
    seen = []
    handle = models[0].cells[-1].register_forward_hook(lambda m, i, o: seen.append(o[1]))
    with torch.no_grad():
        models[0](frames, 5, 1)
    handle.remove()
    bank = MemoryBank(models, layer="top")
    assert bank.source_channels == [6, 6] and not bank.fused
    torch.testing.assert_close(bank(fold(frames, 4))[0], torch.stack(seen, dim=1), rtol=0, atol=0)
    assert MemoryBank(models).source_channels == [8, 8]  # the paper's: bottom
    with pytest.raises(ValueError, match="'middle'"):
        MemoryBank(models, layer="middle")

    d = _tmu(tmp_path, sources, iterations=40).model_dump()
    d["architecture"].update(two)
    d["tmu"].update(layer="top", variant="convex")
    cfg = model_config_from_dict(d)
    result = train(cfg, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()])
    dist = [h["distillation"] for h in result.history]
    assert np.mean(dist[-5:]) < np.mean(dist[:5]) / 2, (dist[:5], dist[-5:])
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.metadata["architecture"]["tmu_layer"] == "top"
    model = ckpt.build_model()
    assert isinstance(model.cells[-1], TMUCell) and model.cells[-1].source_channels == [6, 6]
    assert not isinstance(model.cells[0], TMUCell)
    # a bottom-layer config does not take these weights, and says why
    bottom = model_config_from_dict({**d, "tmu": {**d["tmu"], "layer": "bottom"}})
    assert "tmu_layer" not in architecture_metadata(bottom, [6, 6])  # older checkpoints still match their configs
    with pytest.raises(NowcastError, match="tmu_layer"):
        load_checkpoint(result.checkpoint, expect_config=bottom)
    assert Predictor.for_model(bottom, [8, 8]).cells[0].source_channels == [8, 8]
    fc = load_forecaster(result.checkpoint)
    assert fc.model.has_tmu and fc.predict(np.random.default_rng(0).random((3, 16, 16), np.float32), 2).shape == (2, 16, 16)
