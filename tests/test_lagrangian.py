"""The Lagrangian forecaster: untrained it is pysteps extrapolation; trained it only adds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nowcast.baselines import extrapolation
from nowcast.errors import ConfigError
from nowcast.models.config import model_config_from_dict
from nowcast.models.lagrangian import training_sample
from nowcast.models.predictor import Predictor
from nowcast.models.zoo import Forecaster


def lagrangian_config(**over):
    base = {
        "name": "lag-test",
        "role": "target",
        "frame": "lagrangian",
        "architecture": {"layers": 2, "hidden": 8, "kernel": 3, "patch_size": 4, "residual": True, "decoder": "refine"},
        "data": {"kind": "zarr_sequences", "path": "unused.zarr", "modality": "rain", "units": "mm h-1",
                 "normalisation": {"kind": "db"}, "frame_size": 32, "input_frames": 4, "output_frames": 6,
                 "timestep_minutes": 5},
        "checkpoint": "models/runs/lag-test.pt",
    }
    base.update(over)
    return model_config_from_dict(base)


def forecaster(config=None, seed=0) -> Forecaster:
    config = config or lagrangian_config()
    torch.manual_seed(seed)
    model = Predictor.from_config(config.architecture)
    return Forecaster(model, config, "", None, {"normalisation": config.data.normaliser.as_dict()})


def moving_window(shape=(48, 56), frames=4, u=1.5, v=0.75, nan_block=False) -> np.ndarray:
    y, x = np.mgrid[: shape[0], : shape[1]]
    out = []
    for t in range(frames):
        cx, cy = 18 + u * t, 20 + v * t
        field = 15.0 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 60.0) + 2.0 * np.exp(-((x - cx - 12) ** 2 + (y - cy + 6) ** 2) / 20.0)
        field[field < 0.05] = 0.0
        out.append(field)
    window = np.stack(out).astype(np.float32)
    if nan_block:
        window[:, 30:40, 40:50] = np.nan
    return window


@pytest.mark.parametrize("nan_block", [False, True])
def test_untrained_model_is_exactly_pysteps_extrapolation(nan_block):
    window = moving_window(nan_block=nan_block)
    ours = forecaster().predict_region(np.nan_to_num(window), 6, tile=None)
    ref = extrapolation(np.nan_to_num(window), 6)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_array_equal(np.nan_to_num(ours, nan=-1), np.nan_to_num(ref, nan=-1))
    # rain entering through the boundary is unknown, not dry
    assert np.isnan(ours[-1][:, :3]).all()


def test_untrained_model_in_tiles_is_still_extrapolation():
    window = moving_window(shape=(64, 64))
    tiled = forecaster().predict_region(window, 4, tile=32, overlap=8)
    ref = extrapolation(window, 4)
    np.testing.assert_array_equal(np.nan_to_num(tiled, nan=-1), np.nan_to_num(ref, nan=-1))


def test_dry_window_stays_dry_even_for_a_trained_network():
    fc = forecaster()
    with torch.no_grad():  # a head that would add rain everywhere
        fc.model.head.last.bias.fill_(0.5)
    out = fc.predict_region(np.zeros((4, 32, 32), dtype=np.float32), 3)
    assert np.nanmax(out) == 0.0
    wet = fc.predict_region(moving_window(shape=(32, 32)), 3)
    ref = extrapolation(moving_window(shape=(32, 32)), 3)
    assert np.nansum(wet) > np.nansum(ref) * 1.5  # the residual is applied where rain is


def test_lagrangian_frame_needs_db_and_residual():
    with pytest.raises(ConfigError, match="residual"):
        lagrangian_config(architecture={"layers": 1, "hidden": 8, "patch_size": 4})
    with pytest.raises(ConfigError, match="db"):
        lagrangian_config(data={"kind": "zarr_sequences", "path": "x.zarr", "normalisation": {"kind": "log"},
                                "frame_size": 32, "input_frames": 4, "output_frames": 2, "timestep_minutes": 5})


def test_training_sample_of_a_rigidly_moving_field_is_persistent():
    frames = moving_window(shape=(48, 56), frames=10, u=2.0, v=0.0)
    velocity = np.stack([np.full(frames.shape[1:], 2.0), np.zeros(frames.shape[1:])])
    cfg = lagrangian_config()
    x, valid = training_sample(frames, velocity, 4, cfg.data.normaliser)
    assert x.shape == frames.shape and valid.shape == frames.shape
    inside = valid.astype(bool)
    for k in range(frames.shape[0]):
        np.testing.assert_allclose(x[k][inside[k]], x[3][inside[k]], atol=1e-5)
    assert valid[3].all() and not valid[-1].all()  # later frames' sources left the domain
    # persistent: the analysis frame moved rigidly and back, so in the Lagrangian frame it is the
    # analysis frame up to interpolation smoothing, wherever its source stayed inside the domain
    growing = frames * (1.0 + 0.2 * np.arange(frames.shape[0]))[:, None, None]
    xg, _ = training_sample(growing, velocity, 4, cfg.data.normaliser)
    xp, vp = training_sample(growing, velocity, 4, cfg.data.normaliser, persistent=True)
    inside = vp.astype(bool)
    assert np.abs(xp[-1] - xp[3])[inside[-1]].max() < 0.05 < np.abs(xg[-1] - xg[3])[inside[-1]].max()
    assert not np.array_equal(xp[0], xp[3])  # not an exact copy: real rigid motion is not one either


def _moving_store(path, n_seq=4, frames=10, size=24, growth_db=0.0):
    """Blobs moving 1 px/step along x; with ``growth_db`` they brighten every step (Lagrangian growth)."""
    import xarray as xr

    y, x = np.mgrid[:size, :size]
    seqs = []
    rng = np.random.default_rng(1)
    for s in range(n_seq):
        cy, cx0 = rng.uniform(8, 16), rng.uniform(4, 10)
        seq = []
        for t in range(frames):
            peak = 4.0 * 10 ** (growth_db * t / 10.0)
            f = peak * np.exp(-((x - cx0 - t) ** 2 + (y - cy) ** 2) / 18.0)
            f[f < 0.1] = 0.0
            seq.append(f)
        seqs.append(seq)
    ds = xr.Dataset({"rain_rate": (("sequence", "time", "y", "x"), np.asarray(seqs, dtype=np.float32), {"units": "mm h-1"})},
                    attrs={"units": "mm h-1"})
    ds.to_zarr(path, mode="w", consolidated=True)
    return path


def _train_config(tmp_path, store, **training):
    cfg = lagrangian_config(
        data={"kind": "zarr_sequences", "path": str(store), "modality": "rain", "units": "mm h-1",
              "normalisation": {"kind": "db"}, "frame_size": 16, "input_frames": 3, "output_frames": 4,
              "timestep_minutes": 5},
        architecture={"layers": 1, "hidden": 8, "kernel": 3, "patch_size": 4, "residual": True, "decoder": "refine"},
        training={"iterations": 60, "batch_size": 4, "lr": 3e-3, "val_every": 30, "checkpoint_every": 60,
                  "sampling_end": 30, **training},
        checkpoint=str(tmp_path / "lag.pt"),
    )
    return cfg


def test_motion_is_stored_once_and_batches_are_lagrangian(tmp_path):
    import xarray as xr

    from nowcast.training import make_batches, split_batch

    store = _moving_store(tmp_path / "seq.zarr")
    cfg = _train_config(tmp_path, store)
    frames, valid = split_batch(next(make_batches(cfg)))
    assert frames.shape == valid.shape == (4, 7, 1, 16, 16)
    with xr.open_zarr(store) as ds:
        motion = ds["motion"].values
        assert ds["motion"].attrs["motion_window"] == 3
    assert np.isnan(motion[:, :2]).all() and np.isfinite(motion[:, 2:]).all()
    assert abs(np.median(motion[:, 2:, 0]) - 1.0) < 0.35  # the blobs move 1 px/step along x
    # rigid motion: in the Lagrangian frame the later frames repeat the analysis frame
    f, v = frames.numpy(), valid.numpy().astype(bool)
    err = np.abs(f[:, -1] - f[:, 2])[v[:, -1]].mean()
    moved = np.abs(f[:, -1] - f[:, 2]).mean()
    assert err < 0.1 and v[:, -1].mean() > 0.5, (err, moved)


def test_intensity_shift_scales_training_rain_only_and_leaves_other_batches_alone(tmp_path):
    """training.intensity_shift_db: a fixed +3 dB shift doubles every training rate; validation is untouched."""
    from nowcast.models.lagrangian import normalise_db
    from nowcast.motion import to_db
    from nowcast.training import make_batches, split_batch

    store = _moving_store(tmp_path / "seq.zarr")
    plain = _train_config(tmp_path, store)
    shifted = _train_config(tmp_path, store, intensity_shift_db=(3.0, 3.0))
    ranged = _train_config(tmp_path, store, intensity_shift_db=(-10.0, 3.0))
    f0, v0 = split_batch(next(make_batches(plain)))
    f1, v1 = split_batch(next(make_batches(shifted)))
    # The same crops, motion and validity: only the rates change, by 10**0.3 (+3.0103 dB after the
    # dB transform, where both are wet; to_db thresholds at 0.1 mm/h, so light rain can become wet).
    assert np.array_equal(v0.numpy(), v1.numpy())
    norm = plain.data.normaliser
    one = float(normalise_db(to_db(np.array([1.0]), threshold=0.1, zerovalue=-15.0), norm)[0])
    two = float(normalise_db(to_db(np.array([10 ** 0.3]), threshold=0.1, zerovalue=-15.0), norm)[0])
    wet = (f0.numpy() >= one) & v0.numpy().astype(bool)
    assert wet.sum() > 50
    np.testing.assert_allclose((f1.numpy() - f0.numpy())[wet], two - one, atol=1e-3)
    # validation batches never shift; a range draws a different gain per sample
    val = [split_batch(next(make_batches(c, "val")))[0].numpy() for c in (plain, shifted)]
    assert np.array_equal(val[0], val[1])
    f2 = split_batch(next(make_batches(ranged)))[0].numpy()
    means = [(f2[b] - f0.numpy()[b])[wet[b]].mean() for b in range(f2.shape[0]) if wet[b].sum() > 5]
    assert np.ptp(means) > 0.05 and all(-10.5 / 15 < m < 3.5 / 15 for m in means), means


def test_rotation_field_turns_counterclockwise_on_a_north_up_grid():
    from nowcast.models.lagrangian import rotation_field

    v = rotation_field((21, 21), 2.0, 10.0, 10.0)
    assert np.allclose(v[:, 10, 10], 0.0)
    assert v[1, 10, 20] < 0 and abs(v[0, 10, 20]) < 1e-6  # east of the centre: northwards (rows decrease)
    assert v[0, 0, 10] < 0 and abs(v[1, 0, 10]) < 1e-6    # north of the centre: westwards
    assert np.isclose(np.hypot(*v[:, 10, 20]), np.radians(2.0) * 10, rtol=1e-5)


def test_batch_workers_make_the_same_batches_in_the_same_order(tmp_path):
    """Prefetching in worker processes changes when a batch is made, never what it holds."""
    import itertools

    from nowcast.training import make_batches, split_batch

    store = _moving_store(tmp_path / "seq.zarr", size=32)
    cfg = _train_config(tmp_path, store, persistent_fraction=0.5, persistent_motion="estimated",
                        persistent_rotation_deg=2.0, intensity_shift_db=(-6.0, 3.0))
    alone = [split_batch(b) for b in make_batches(cfg, start=3, n_batches=5)]
    ahead = [split_batch(b) for b in make_batches(cfg, start=3, n_batches=5, workers=2)]
    assert len(ahead) == 5
    for (fa, va), (fb, vb) in zip(alone, ahead):
        assert torch.equal(fa, fb) and torch.equal(va, vb)
    assert not torch.equal(alone[0][0], alone[1][0])  # batches differ, so an order swap would show
    # an endless stream ends its workers when closed
    endless = make_batches(cfg, start=3, workers=1)
    assert torch.equal(split_batch(next(endless))[0], alone[0][0])
    list(itertools.islice(endless, 2))
    endless.close()

def test_persistent_samples_with_estimated_motion_and_rotation(tmp_path):
    """Rotation the estimated motion misses leaves a misalignment in the persistent samples; none without it."""
    from nowcast.training import make_batches, split_batch

    store = _moving_store(tmp_path / "seq.zarr", size=32)
    common = {"persistent_fraction": 1.0, "persistent_motion": "estimated"}
    cfgs = {"stored": _train_config(tmp_path, store, persistent_fraction=1.0),
            "estimated": _train_config(tmp_path, store, **common),
            "rotated": _train_config(tmp_path, store, persistent_rotation_deg=8.0, **common)}

    def misalignment(cfg):
        f, v = (t.numpy() for t in split_batch(next(make_batches(cfg))))
        wet, ok = f[:, 2] > 0.4, v[:, 0].astype(bool)
        return float(np.abs(f[:, 0] - f[:, 2])[wet & ok].mean())

    m = {k: misalignment(c) for k, c in cfgs.items()}
    # their truth is "no change": every future frame is the Lagrangian analysis frame (input 3 of 3)
    f = split_batch(next(make_batches(cfgs["rotated"])))[0].numpy()
    assert np.array_equal(f[:, 3:], np.broadcast_to(f[:, 2:3], f[:, 3:].shape))
    assert not np.array_equal(f[:, 0], f[:, 2])
    assert m["stored"] < 0.08 and m["estimated"] < 0.08, m  # moved and moved back: interpolation only
    assert m["rotated"] > 1.5 * m["estimated"], m
    with pytest.raises(ConfigError, match="persistent_rotation_deg needs"):
        _train_config(tmp_path, store, persistent_rotation_deg=1.0)
    with pytest.raises(ConfigError, match="intensity_shift_db"):
        _train_config(tmp_path, store, intensity_shift_db=(3.0, -3.0))


def test_trended_frames_grow_and_decay_the_rain_in_place():
    from nowcast.models.lagrangian import TREND_CEILING_DB, trended

    analysis = torch.tensor([[[-15.0, 0.0], [10.0, 25.0]]])  # dry, 1 mm/h, 10 mm/h, above the ceiling
    offsets = [-2, -1, 0, 1, 2]
    up = trended(analysis, torch.full((1, 2, 2), 2.0), offsets, -15.0, -10.0)[0]
    assert up.shape == (5, 2, 2)
    assert torch.equal(up[:, 0, 0], torch.full((5,), -15.0))  # dry stays dry
    assert torch.allclose(up[:, 0, 1], torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0]))
    assert torch.allclose(up[:, 1, 0], torch.tensor([6.0, 8.0, 10.0, 12.0, 14.0]))
    assert torch.allclose(up[:, 1, 1], torch.tensor([21.0, 23.0, 25.0, 25.0, 25.0]))  # analysis kept, no growth past it
    from nowcast.data.testcases import MAX_RAIN_RATE

    assert TREND_CEILING_DB == pytest.approx(10 * np.log10(MAX_RAIN_RATE))  # the test cases' ceiling
    capped = trended(torch.tensor([[[20.0]]]), torch.full((1, 1, 1), 2.0), [0, 1, 2], -15.0, -10.0)[0, :, 0, 0]
    assert torch.allclose(capped, torch.tensor([20.0, TREND_CEILING_DB, TREND_CEILING_DB]))
    down = trended(analysis, torch.full((1, 2, 2), -6.0), offsets, -15.0, -10.0)[0]
    assert torch.allclose(down[:, 0, 1], torch.tensor([12.0, 6.0, 0.0, -6.0, -15.0]))  # -12 dB is below 0.1 mm/h: dry
    flat = trended(analysis, torch.zeros(1, 2, 2), offsets, -15.0, -10.0)[0]
    assert torch.equal(flat, analysis.expand(5, -1, -1))


def test_trend_samples_show_their_trend_in_the_inputs_and_continue_it_in_the_truth(tmp_path):
    """training.persistent_trend_fraction: persistent samples that grow or decay in place, in training batches only."""
    from nowcast.training import make_batches, split_batch

    store = _moving_store(tmp_path / "seq.zarr", size=32)
    common = {"persistent_motion": "estimated", "batch_size": 8}
    trend = _train_config(tmp_path, store, persistent_fraction=1.0, persistent_trend_fraction=1.0,
                          persistent_trend_db=2.0, **common)
    plain = _train_config(tmp_path, store, persistent_fraction=1.0, **common)
    f, v = (t.numpy()[:, :, 0] for t in split_batch(next(make_batches(trend))))
    scale = trend.data.normaliser.params["scale"]
    step = (f[:, 3] - f[:, 2]) * scale  # dB per step in the truth
    wet = (f[:, 2] > 0.4) & (f[:, 4] > 0.4) & (f[:, 3] > 0.4) & (f[:, 6] > 0.4)
    assert wet.sum() > 100
    # the truth continues one rate per cell: exactly linear in the lead, up to 2 dB per step, not all zero
    np.testing.assert_allclose((f[:, 6] - f[:, 2])[wet] * scale, 4 * step[wet], atol=1e-3)
    assert np.abs(step[wet]).max() <= 2.0 + 1e-4 and np.abs(step[wet]).max() > 0.3
    # the inputs show it: the oldest input lies about two steps of the same trend below the analysis
    history = (f[:, 2] - f[:, 0]) * scale
    ok = wet & v[:, 0].astype(bool)
    assert np.corrcoef(history[ok], 2 * step[ok])[0, 1] > 0.8
    # without the trend the same samples' truth is the analysis; validation batches never get one
    g = split_batch(next(make_batches(plain)))[0].numpy()[:, :, 0]
    assert np.array_equal(g[:, 3:], np.broadcast_to(g[:, 2:3], g[:, 3:].shape))
    val = [split_batch(next(make_batches(c, "val")))[0].numpy() for c in (plain, trend)]
    assert np.array_equal(val[0], val[1])
    # drawn last: samples that are not persistent are the same batch for batch
    half = [_train_config(tmp_path, store, persistent_fraction=0.5, persistent_trend_fraction=t, **common)
            for t in (0.0, 1.0)]
    a, b = (split_batch(next(make_batches(c, start=2)))[0].numpy() for c in half)
    same = [np.array_equal(a[i], b[i]) for i in range(8)]
    assert any(same) and not all(same)
    with pytest.raises(ConfigError, match="persistent_trend_fraction"):
        _train_config(tmp_path, store, persistent_trend_fraction=0.5)


def test_loss_on_inputs_false_scores_the_leads_only(tmp_path):
    from nowcast.training import scored_weight, train

    w = torch.ones(2, 6, 1, 4, 4)  # 3 inputs -> 2 input-step predictions, then 4 leads
    assert torch.equal(scored_weight(w, 3, True), w)
    leads_only = scored_weight(w, 3, False)
    assert float(leads_only[:, :2].abs().sum()) == 0.0 and torch.equal(leads_only[:, 2:], w[:, 2:])
    store = _moving_store(tmp_path / "seq.zarr")
    result = train(_train_config(tmp_path, store, iterations=4, val_every=4, checkpoint_every=4, loss_on_inputs=False),
                   progress=False)
    assert result.iterations == 4 and all(np.isfinite(v) for v in result.final_losses.values())


def test_lagrangian_training_learns_growth_and_beats_extrapolation(tmp_path):
    from nowcast.models.zoo import load_forecaster
    from nowcast.training import train

    store = _moving_store(tmp_path / "grow.zarr", n_seq=6, frames=7, growth_db=1.5)
    cfg = _train_config(tmp_path, store)
    train(cfg, progress=False)
    fc = load_forecaster(cfg.checkpoint_path)
    import xarray as xr

    seqs = xr.open_zarr(store)["rain_rate"].values
    ours_err, extrap_err = 0.0, 0.0
    for seq in seqs:
        window, truth = seq[:3, 4:20, 4:20], seq[3:, 4:20, 4:20]
        ours = np.nan_to_num(fc.predict(window, 4))
        ref = np.nan_to_num(extrapolation(window, 4))
        ours_err += np.mean((ours - truth) ** 2)
        extrap_err += np.mean((ref - truth) ** 2)
    assert ours_err < 0.8 * extrap_err, (ours_err, extrap_err)


def test_heldout_skill_is_recorded_in_the_checkpoint_and_summarised_for_products(tmp_path):
    from nowcast.forecast import model_product_attrs
    from nowcast.models.skill import heldout_skill, record_skill
    from nowcast.models.zoo import load_checkpoint, load_forecaster, save_checkpoint

    cfg = lagrangian_config(checkpoint=str(tmp_path / "m.pt"))
    fc = forecaster(cfg)
    save_checkpoint(cfg.checkpoint_path, fc.model, cfg, iterations=1)
    before = load_checkpoint(cfg.checkpoint_path)
    seqs = np.stack([moving_window(shape=(32, 32), frames=7, u=1.0, v=0.5)] * 2)
    skill = heldout_skill(load_forecaster(cfg.checkpoint_path), seqs, "toy", "synthetic blobs", leads=3)
    # untrained = extrapolation: equal scores, hence "no worse at every lead"
    assert skill["csi@1"]["model"] == skill["csi@1"]["extrapolation"] and skill["no_worse_at_every_lead"]
    record_skill(cfg.checkpoint_path, skill)
    after = load_checkpoint(cfg.checkpoint_path)
    assert after.metadata["weights_sha256"] == before.metadata["weights_sha256"] and after.sha256 != before.sha256
    attrs = model_product_attrs(after.metadata)
    assert "no worse than extrapolation at every lead" in attrs["model_heldout_skill"]
    assert "toy" in attrs["model_heldout_skill"] and "synthetic blobs" in attrs["model_heldout_skill"]
    skill["no_worse_at_every_lead"] = False
    assert "worse than extrapolation at some leads" in model_product_attrs({"heldout_skill": skill})["model_heldout_skill"]
    assert model_product_attrs({})["model_heldout_skill"].startswith("not measured")


def infrared_source_config():
    return lagrangian_config(
        role="source", name="ir-lag-test",
        data={"kind": "zarr_sequences", "path": "unused.zarr", "modality": "brightness_temperature", "units": "K",
              "normalisation": {"kind": "brightness_temperature"}, "frame_size": 32, "input_frames": 4,
              "output_frames": 6, "timestep_minutes": 15})


def test_infrared_source_may_be_lagrangian_but_an_infrared_target_may_not():
    assert infrared_source_config().frame == "lagrangian"
    with pytest.raises(ConfigError, match="brightness_temperature"):
        lagrangian_config(data={"kind": "zarr_sequences", "path": "x.zarr", "modality": "brightness_temperature",
                                "units": "K", "normalisation": {"kind": "brightness_temperature"}, "frame_size": 32,
                                "input_frames": 4, "output_frames": 2, "timestep_minutes": 15})


def test_infrared_training_sample_moves_brightness_temperature_along_the_motion():
    """A cold cloud moving rigidly is persistent in the Lagrangian frame, in the normalised coldness."""
    rain = moving_window(shape=(48, 56), frames=10, u=2.0, v=0.0)
    temperature = 290.0 - 8.0 * rain  # cold tops where the rain is: a rigidly moving cloud field
    velocity = np.stack([np.full(rain.shape[1:], 2.0), np.zeros(rain.shape[1:])])
    cfg = infrared_source_config()
    x, valid = training_sample(temperature, velocity, 4, cfg.data.normaliser)
    inside = valid.astype(bool)
    np.testing.assert_allclose(x[3], cfg.data.normaliser.forward(temperature[3]), atol=1e-6)  # analysis frame as is
    for k in range(rain.shape[0]):
        np.testing.assert_allclose(x[k][inside[k]], x[3][inside[k]], atol=1e-4)
    assert not valid[-1].all()


def test_motion_of_an_infrared_store_tracks_the_clouds(tmp_path):
    """Stored motion of brightness-temperature sequences: the cloud's displacement, in px per step."""
    import xarray as xr

    from pipelines.sequences import add_motion

    rain = np.stack([k * moving_window(shape=(48, 56), frames=6, u=2.0, v=-1.0) for k in (1.0, 0.5)])
    ds = xr.Dataset({"brightness_temperature": (("sequence", "time", "y", "x"), (290.0 - 8.0 * rain).astype(np.float32),
                                                {"units": "K"})})
    ds.to_zarr(tmp_path / "ir.zarr", mode="w", consolidated=True)
    add_motion(tmp_path / "ir.zarr", 4, "LK", scheduler="synchronous")
    with xr.open_zarr(tmp_path / "ir.zarr") as out:
        motion = out["motion"].values
        assert "coldness" in out["motion"].attrs["motion_tracked"]
    assert np.isnan(motion[:, :3]).all()
    u, v = np.median(motion[:, 3:, 0]), np.median(motion[:, 3:, 1])
    assert abs(u - 2.0) < 0.3 and abs(v + 1.0) < 0.3


def test_sequences_names_the_stored_sequence_each_sample_is_cut_from(tmp_path):
    """``ZarrSequences.sequences`` repeats the batch's own draw (history_predictability --by-regime relies on it)."""
    import xarray as xr

    from nowcast.training import ZarrSequences, split_batch

    rates = np.arange(1, 7, dtype=np.float32)  # sequence s rains (s + 1) mm/h everywhere, at every time
    data = np.broadcast_to(rates[:, None, None, None], (6, 8, 24, 24)).copy()
    xr.Dataset({"rain_rate": (("sequence", "time", "y", "x"), data, {"units": "mm h-1"})},
               attrs={"units": "mm h-1"}).to_zarr(tmp_path / "flat.zarr", mode="w", consolidated=True)
    cfg = _train_config(tmp_path, tmp_path / "flat.zarr")
    store = ZarrSequences(tmp_path / "flat.zarr", cfg)
    norm = cfg.data.normaliser
    for index in range(3):
        x, _ = split_batch(store.batch(7, 0, index, 5))
        seen = x[:, cfg.data.input_frames - 1, 0, 8, 8].numpy()
        expected = norm.forward(rates[store.sequences(7, 0, index, 5)])
        np.testing.assert_allclose(seen, expected, rtol=1e-5)


def test_prepare_then_finish_is_forecast_and_motion_can_come_from_the_newest_frames(monkeypatch):
    """The calibration's split forecast is the forecast; ``motion_frames`` moves a longer history by the newest motion."""
    from nowcast.models import lagrangian

    fc = forecaster()
    window = moving_window(shape=(32, 32), frames=8)
    changes = lambda x, leads: np.full((leads, *x.shape[1:]), 0.1, np.float32) * (x[-1] > 0)
    direct = lagrangian.forecast(window[-4:], 3, changes, fc.normaliser)
    prepared = lagrangian.prepare(window[-4:], 3, fc.normaliser)
    np.testing.assert_array_equal(np.nan_to_num(lagrangian.finish(prepared, changes(prepared.inputs, 3)), nan=-1),
                                  np.nan_to_num(direct, nan=-1))
    seen = []
    motion = lagrangian.motion_field
    monkeypatch.setattr(lagrangian, "motion_field", lambda w, *a, **k: (seen.append(w.shape[0]), motion(w, *a, **k))[1])
    long = lagrangian.prepare(window, 3, fc.normaliser, motion_frames=4)
    assert seen == [4] and long.inputs.shape[0] == 8
    np.testing.assert_allclose(long.velocity, prepared.velocity)
    np.testing.assert_allclose(long.inputs[-4:], prepared.inputs, atol=1e-6)  # the newest frames moved alike


def test_sequence_batch_gives_each_asked_sequence_once_as_simulated(tmp_path):
    """``ZarrSequences.sequence_batch``: the stored sequences in the order asked, from ``start``, never made persistent."""
    import xarray as xr

    from nowcast.training import ZarrSequences, split_batch

    # sequence s rains (s + 1) * (t + 1) mm/h everywhere at time t: the order, the start and a persistent
    # sample (every input frame the analysis frame) all show in one pixel
    rates = (np.arange(4, dtype=np.float32)[:, None] + 1.0) * (np.arange(9, dtype=np.float32)[None, :] + 1.0)
    data = np.broadcast_to(rates[:, :, None, None], (4, 9, 24, 24)).copy()
    xr.Dataset({"rain_rate": (("sequence", "time", "y", "x"), data, {"units": "mm h-1"})},
               attrs={"units": "mm h-1"}).to_zarr(tmp_path / "ramp.zarr", mode="w", consolidated=True)
    cfg = _train_config(tmp_path, tmp_path / "ramp.zarr", persistent_fraction=1.0)
    store = ZarrSequences(tmp_path / "ramp.zarr", cfg)
    x, valid = split_batch(store.sequence_batch(np.array([2, 0]), start=1))
    assert x.shape == valid.shape == (2, 7, 1, 16, 16)
    expected = cfg.data.normaliser.forward(rates[[2, 0], 1:8])
    np.testing.assert_allclose(x[:, :, 0, 8, 8].numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="indices"):
        store.sequence_batch(np.array([4]))
    with pytest.raises(ValueError, match="indices"):
        store.sequence_batch(np.array([], dtype=int))
    with pytest.raises(ValueError, match="start 3"):
        store.sequence_batch(np.array([0]), start=3)
    assert store.sequence_batch(np.array([0]), start=2)[0].shape[1] == 7  # the last start that fits
    eulerian = ZarrSequences(tmp_path / "ramp.zarr", cfg.model_copy(update={"frame": "eulerian"}))
    x = eulerian.sequence_batch(np.array([3, 1]), start=2)  # frames only, as stored
    assert x.shape == (2, 7, 1, 16, 16)
    np.testing.assert_allclose(x[:, :, 0, 5, 5].numpy(), cfg.data.normaliser.forward(rates[[3, 1], 2:9]), rtol=1e-6)


# ------------------------------------------------ a network that reads more frames than its motion (motion.frames)
def _longer_window_config(tmp_path=None, store=None, motion_frames=4, **training):
    data = {"kind": "zarr_sequences", "path": str(store or "unused.zarr"), "modality": "rain", "units": "mm h-1",
            "normalisation": {"kind": "db"}, "frame_size": 16 if store else 32, "input_frames": 6, "output_frames": 3,
            "timestep_minutes": 5}
    over = {"data": data, "motion": {"method": "LK", "frames": motion_frames}}
    if store is not None:
        over.update(architecture={"layers": 1, "hidden": 8, "kernel": 3, "patch_size": 4, "residual": True,
                                  "decoder": "refine"},
                    training={"iterations": 2, "batch_size": 4, "val_every": 2, "checkpoint_every": 2, "sampling_end": 1,
                              **training},
                    checkpoint=str(tmp_path / "long.pt"))
    return lagrangian_config(**over)


def test_motion_frames_default_to_the_input_window_and_cannot_exceed_it():
    assert lagrangian_config().motion_frames == 4 and lagrangian_config().motion.frames is None
    assert _longer_window_config(motion_frames=4).motion_frames == 4
    assert _longer_window_config(motion_frames=6).motion_frames == 6  # exactly the window: allowed
    with pytest.raises(ConfigError, match="motion.frames 7 exceeds data.input_frames 6"):
        _longer_window_config(motion_frames=7)
    with pytest.raises(ConfigError, match="greater than or equal to 2"):
        _longer_window_config(motion_frames=1)
    with pytest.raises(ConfigError, match="motion.frames is for frame .lagrangian."):
        lagrangian_config(frame="eulerian", architecture={"layers": 1, "hidden": 8, "kernel": 3, "patch_size": 4},
                          motion={"frames": 2})


def test_an_untrained_network_reading_more_frames_is_extrapolation_from_its_motion_frames():
    """The network reads 6 moved frames; the motion, and so the forecast, is extrapolation's from the newest 4."""
    window = moving_window(frames=6, u=1.5, v=0.75)
    window[:2] = np.roll(window[:2], 5, axis=2)  # the two oldest frames move otherwise: a 6-frame motion differs
    ours = forecaster(_longer_window_config(motion_frames=4)).predict_region(window, 3, tile=None)
    ref = extrapolation(window[-4:], 3)
    np.testing.assert_array_equal(np.nan_to_num(ours, nan=-1), np.nan_to_num(ref, nan=-1))
    all_six = forecaster(_longer_window_config(motion_frames=None)).predict_region(window, 3, tile=None)
    assert not np.array_equal(np.nan_to_num(all_six, nan=-1), np.nan_to_num(ref, nan=-1))  # the test can tell


def test_training_reads_the_motion_of_its_motion_frames(tmp_path, monkeypatch):
    """Stored motion over the newest 4 of 6 input frames; persistent samples re-estimated over the same 4."""
    import xarray as xr

    from nowcast.models import lagrangian
    from nowcast.training import make_batches, split_batch

    store = _moving_store(tmp_path / "seq.zarr", frames=12)
    cfg = _longer_window_config(tmp_path, store, persistent_fraction=1.0, persistent_motion="estimated")
    seen = []
    real = lagrangian._estimated_motion
    monkeypatch.setattr(lagrangian, "_estimated_motion", lambda w, *a: seen.append(w.shape[0]) or real(w, *a))
    frames, _valid = split_batch(next(make_batches(cfg)))
    assert frames.shape == (4, 9, 1, 16, 16)
    with xr.open_zarr(store) as ds:
        assert ds["motion"].attrs["motion_window"] == 4
        assert np.isnan(ds["motion"].values[:, :3]).all() and np.isfinite(ds["motion"].values[:, 3:]).all()
    assert seen == [4, 4, 4, 4]
