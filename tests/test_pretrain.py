"""Smoke run of pipelines/pretrain.py on tiny sizes: simulate -> sources -> TMU target."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from nowcast.config import shipped_configs_dir  # noqa: E402


def _model(name: str, role: str, path: Path, ckpt: Path, tmu: list[str] | None = None) -> dict:
    config = {
        "name": name,
        "role": role,
        "architecture": {"layers": 1, "hidden": 4, "kernel": 3, "patch_size": 4},
        "data": {"kind": "zarr_sequences", "domain": "swiss-south", "modality": "rain", "units": "mm h-1",
                 "frame_size": 16, "input_frames": 2, "output_frames": 2, "timestep_minutes": 5, "path": str(path)},
        "training": {"iterations": 2, "batch_size": 2, "val_every": 2, "val_batches": 1, "checkpoint_every": 2,
                     "sampling_end": 2},
        "checkpoint": str(ckpt),
    }
    if tmu:
        config["tmu"] = {"sources": tmu, "variant": "normalized_sum"}
    return config


@pytest.fixture()
def tiny_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    torch.set_num_threads(1)
    home = tmp_path / "home"
    # Source names in a target's tmu section resolve through NOWCAST_HOME too.
    monkeypatch.setenv("NOWCAST_HOME", str(home))
    (home / "configs" / "models").mkdir(parents=True)
    (home / "configs" / "regions").mkdir(parents=True)
    region = yaml.safe_load((shipped_configs_dir() / "regions" / "swiss-south.yaml").read_text())
    region.update(name="tiny", sources=["tiny-src"])
    region["forecast"]["model"] = "tiny-tgt"
    (home / "configs" / "regions" / "tiny.yaml").write_text(yaml.safe_dump(region))
    zoo = tmp_path / "zoo"
    for cfg in (_model("tiny-src", "source", tmp_path / "src.zarr", zoo / "tiny-src.pt"),
                _model("tiny-tgt", "target", tmp_path / "tgt.zarr", zoo / "tiny-tgt.pt", tmu=["tiny-src"])):
        (home / "configs" / "models" / f"{cfg['name']}.yaml").write_text(yaml.safe_dump(cfg))
    return home


def test_pretrain_pipeline_smoke(tiny_home: Path, tmp_path: Path) -> None:
    """Missing data are simulated, the source then the target train, checksums are recorded."""
    from nowcast.models.zoo import load_forecaster, sha256_of
    from pipelines.pretrain import pretrain_region

    models = pretrain_region("tiny", home=tiny_home, sequences=2, scheduler="synchronous", progress=False)
    assert [m.name for m in models] == ["tiny-src", "tiny-tgt"]
    assert (tmp_path / "src.zarr").exists() and (tmp_path / "tgt.zarr").exists()
    sums = (tmp_path / "zoo" / "SHA256SUMS").read_text().split()
    for m in models:
        assert sums[sums.index(m.checkpoint.name) - 1] == sha256_of(m.checkpoint)
    # the forecaster carries its held-out skill beside extrapolation's (measured after training)
    from nowcast.models.zoo import load_checkpoint

    skill = load_checkpoint(models[1].checkpoint).metadata["heldout_skill"]
    assert skill["test_set"] == "swiss-south-sameday" and (tmp_path / "swiss-south-sameday.zarr").exists()
    assert len(skill["csi@1"]["model"]) == len(skill["csi@1"]["extrapolation"]) == 12
    assert "heldout_skill" not in load_checkpoint(models[0].checkpoint).metadata  # sources are not forecasters
    # The target forecasts from its own checkpoint, with the source gone.
    shutil.rmtree(tmp_path / "src.zarr")
    (tmp_path / "zoo" / "tiny-src.pt").unlink()
    forecaster = load_forecaster(models[1].checkpoint)
    window = np.random.default_rng(0).gamma(0.5, 2.0, (2, 32, 32)).astype(np.float32)
    out = forecaster.predict(window, 3)
    assert out.shape == (3, 32, 32) and np.isfinite(out).all() and (out >= 0).all()


def test_unknown_model_is_refused(tiny_home: Path) -> None:
    from nowcast.errors import ConfigError
    from pipelines.pretrain import pretrain_region

    with pytest.raises(ConfigError, match="does not use model"):
        pretrain_region("tiny", home=tiny_home, only=["nope"])


def test_promote_copies_a_measured_run_only_when_its_config_is_the_models(tmp_path: Path) -> None:
    """A candidate differing only in where it was written and its precision becomes the model, weights untouched;
    one that learned with another setting, or for fewer iterations, is refused; a stale resume state goes."""
    from nowcast.errors import CheckpointError
    from nowcast.models.zoo import load_checkpoint
    from nowcast.training import state_path_for, train
    from pipelines.pretrain import promote_checkpoint
    from tests.test_training import fixed, moving_square, small

    shipped = small(tmp_path / "zoo", "tiny", training={"iterations": 4, "val_every": 4, "checkpoint_every": 4})
    shipped.checkpoint_path.parent.mkdir(parents=True)
    state_path_for(shipped.checkpoint_path).write_bytes(b"stale resume state of another run")

    def run(name: str, **training) -> Path:
        cfg = shipped.model_copy(update={"checkpoint": str(tmp_path / "runs" / f"{name}.pt"),
                                         "training": shipped.training.model_copy(update=training)})
        return train(cfg, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()]).checkpoint

    candidate = run("candidate", precision="fp32")
    target = promote_checkpoint(candidate, shipped)
    promoted, measured = load_checkpoint(target), load_checkpoint(candidate)
    assert target == shipped.checkpoint_path
    assert promoted.metadata["weights_sha256"] == measured.metadata["weights_sha256"]
    assert promoted.config.checkpoint == shipped.checkpoint and promoted.config.training.precision == "fp32"
    assert promoted.metadata["promoted_from"] == "candidate.pt"
    assert state_path_for(target).read_bytes() == state_path_for(candidate).read_bytes()

    with pytest.raises(CheckpointError, match=r"other\.pt: not a run of model config 'tiny': training\.lr is 0\.002"):
        promote_checkpoint(run("other", lr=2e-3), shipped)
    with pytest.raises(CheckpointError, match="trained 4 iterations, model config 'tiny' asks for 8"):
        promote_checkpoint(candidate, shipped.model_copy(
            update={"training": shipped.training.model_copy(update={"iterations": 8})}))
    assert load_checkpoint(target).metadata["weights_sha256"] == measured.metadata["weights_sha256"]  # untouched

    state_path_for(candidate).unlink()
    promote_checkpoint(candidate, shipped)
    assert not state_path_for(target).exists()  # it would resume a run that is not the promoted one

    # an ablation config of the same recipe under another name: promoted, the file names the model it became
    ablation = shipped.model_copy(update={"name": "ablation", "description": "same recipe, another label",
                                          "checkpoint": str(tmp_path / "runs" / "ablation.pt")})
    run_path = train(ablation, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()]).checkpoint
    assert load_checkpoint(promote_checkpoint(run_path, shipped)).metadata["name"] == "tiny"

    # the manifest then describes the promoted run, not the one it replaced
    import json

    from pipelines.pretrain import rebuild_checksums, record_promotion

    manifest = target.parent / "MANIFEST.json"
    manifest.write_text(json.dumps({target.name: {"command": "the replaced run's command", "train_seconds": 999.0}}))
    record_promotion(target, "the promoted run's command")
    rebuild_checksums(target.parent)
    entry = json.loads(manifest.read_text())[target.name]
    per_it = load_checkpoint(target).metadata["metrics"]["seconds_per_iteration"]
    assert entry["command"] == "the promoted run's command"
    assert entry["train_seconds"] == round(per_it * 4, 1) != 999.0
    assert entry["sha256"] == load_checkpoint(target).sha256


def test_a_study_neither_reuses_nor_resumes_another_recipes_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/radar_transfer.py's ensure_trained: a complete run of this recipe is reused, a shorter one
    resumed, and a run of another recipe at the same path (an older study) is trained again from scratch."""
    import nowcast.training
    from benchmarks.radar_transfer import ensure_trained
    from nowcast.training import train
    from tests.test_training import fixed, moving_square, small

    config = small(tmp_path, "tiny", training={"iterations": 4, "val_every": 4, "checkpoint_every": 4})
    train(config, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()])
    calls: list[bool] = []
    monkeypatch.setattr(nowcast.training, "train", lambda cfg, resume, **kw: calls.append(resume))

    def with_training(**update):
        return config.model_copy(update={"training": config.training.model_copy(update=update)})

    assert ensure_trained(config) == config.checkpoint_path and calls == []  # complete: reused
    ensure_trained(with_training(iterations=8))
    ensure_trained(with_training(sampling_end=2))
    assert calls == [True, False]  # longer: resumed; another recipe: from scratch


def test_a_study_never_stretches_a_cosine_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cosine schedule is a function of the run's length: a 4-iteration run ended at the smallest rate, so it
    is no start for an 8-iteration one (whose rate at iteration 4 is still high); that run trains from scratch."""
    import nowcast.training
    from benchmarks.radar_transfer import ensure_trained
    from nowcast.training import train
    from tests.test_training import fixed, moving_square, small

    config = small(tmp_path, "tiny", training={"iterations": 4, "val_every": 4, "checkpoint_every": 4,
                                               "lr_schedule": "cosine"})
    train(config, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()])
    calls: list[bool] = []
    monkeypatch.setattr(nowcast.training, "train", lambda cfg, resume, **kw: calls.append(resume))
    assert ensure_trained(config) == config.checkpoint_path and calls == []  # complete: reused
    ensure_trained(config.model_copy(update={"training": config.training.model_copy(update={"iterations": 8})}))
    assert calls == [False]


def test_a_short_archive_is_the_first_sequences_of_the_long_one(tmp_path: Path) -> None:
    """benchmarks/radar_transfer.py --train-sequences N trains on a part of the training store, not on other data."""
    import xarray as xr

    from benchmarks.radar_transfer import short_training_store, study_config
    from pipelines.simulate import simulate_dataset

    full = simulate_dataset("swiss-south", 3, 4, tmp_path / "train.zarr", seed=7, crop_size=32, scheduler="synchronous")
    config = study_config("swiss-south-scratch", 1, 10)
    config = config.model_copy(update={"data": config.data.model_copy(update={"path": str(full)})})
    short = short_training_store(config, 2)
    with xr.open_zarr(full) as a, xr.open_zarr(short) as b:
        assert b.sizes["sequence"] == 2
        np.testing.assert_array_equal(a["rain_rate"].values[:2], b["rain_rate"].values)
    assert short_training_store(config, 2) == short  # made once, then reused
    with pytest.raises(SystemExit, match="fewer than the 4"):
        short_training_store(config, 4)


def test_a_regime_archive_holds_exactly_the_training_sequences_of_its_regimes(tmp_path: Path) -> None:
    """benchmarks/radar_transfer.py --train-regimes trains on the full store's sequences of those regimes only,
    unchanged, and refuses a regime the store does not know."""
    import xarray as xr

    from benchmarks.radar_transfer import regime_training_store, study_config
    from pipelines.simulate import simulate_dataset

    full = simulate_dataset("swiss-south", 6, 4, tmp_path / "train.zarr", seed=3, crop_size=32, scheduler="synchronous")
    config = study_config("swiss-south-scratch", 1, 10)
    config = config.model_copy(update={"data": config.data.model_copy(update={"path": str(full)})})
    with xr.open_zarr(full) as a:
        meanings = a["regime"].attrs["flag_meanings"].split()
        values = dict(zip(meanings, a["regime"].attrs["flag_values"]))
        flags = a["regime"].values
        present = [m for m in meanings if (flags == values[m]).any()]
        regime = present[0]
        keep = np.flatnonzero(flags == values[regime])
        assert 0 < keep.size < flags.size or len(present) == 1
        store = regime_training_store(config, (regime,))
        with xr.open_zarr(store) as b:
            assert b.sizes["sequence"] == keep.size
            assert set(b["regime"].values) == {values[regime]}
            assert set(b.data_vars) == set(a.data_vars)
            for var in a.data_vars:  # every variable (motion too, where the store has it), unchanged
                np.testing.assert_array_equal(a[var].values[keep], b[var].values)
            assert b.attrs["regimes_kept"] == regime
    assert regime_training_store(config, (regime,)) == store  # made once, then reused
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(SystemExit, match="unknown regime"):
        regime_training_store(config, ("monsoon",))
    # an archive with no sequence of the regime asked for: a clear error, no empty store
    with xr.open_zarr(full) as a:
        one = a.load().assign(regime=a["regime"].copy(data=np.full(flags.shape, values[meanings[0]], "int8")))
    one.to_zarr(tmp_path / "one.zarr", mode="w")
    lone = config.model_copy(update={"data": config.data.model_copy(update={"path": str(tmp_path / "one.zarr")})})
    with pytest.raises(SystemExit, match="no sequence in regime"):
        regime_training_store(lone, (meanings[1],))
    assert not (tmp_path / f"one-{meanings[1]}.zarr").exists()


def test_a_regime_archive_run_has_its_own_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run on a regime's sequences never takes (or overwrites) the full run's checkpoint, and cannot also be short."""
    import benchmarks.radar_transfer as study

    store = study.ROOT / "data/sim/swiss-south-train-stratiform.zarr"
    monkeypatch.setattr(study, "regime_training_store", lambda config, regimes: store)
    full = study.study_config("swiss-south-scratch", 0, None)
    calm = study.study_config("swiss-south-scratch", 0, None, train_regimes=("stratiform",))
    assert calm.checkpoint == f"models/runs/study/swiss-south-scratch-stratiform-it{full.training.iterations}-s0.pt"
    assert calm.data.path == "data/sim/swiss-south-train-stratiform.zarr" != full.data.path
    assert calm.model_dump(exclude={"checkpoint", "data"}) == full.model_dump(exclude={"checkpoint", "data"})
    with pytest.raises(SystemExit, match="cannot be combined"):
        study.study_config("swiss-south-scratch", 0, None, train_sequences=24, train_regimes=("stratiform",))
    # without the recipe's synthetic trend samples: its own checkpoint, only that share changed, even at the
    # config's own seed and budget (never the full run's path)
    bare = study.study_config("swiss-south-scratch", 0, None, train_regimes=("stratiform",), trend_samples=0.0)
    assert bare.checkpoint == f"models/runs/study/swiss-south-scratch-stratiform-ptf0-it{full.training.iterations}-s0.pt"
    assert full.training.persistent_trend_fraction > 0 == bare.training.persistent_trend_fraction
    assert bare.training.model_dump(exclude={"persistent_trend_fraction"}) == \
        calm.training.model_dump(exclude={"persistent_trend_fraction"})
    assert study.study_config("swiss-south-scratch", 0, None, trend_samples=0.0).checkpoint != full.checkpoint


def test_a_short_archive_run_never_takes_the_full_runs_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """At the config's own seed and budget a study arm may use the config's checkpoint, but not when it
    trains on a short archive: that run would overwrite (or be mistaken for) the full one."""
    import benchmarks.radar_transfer as study

    store = study.ROOT / "data/sim/swiss-south-train-n24.zarr"
    monkeypatch.setattr(study, "short_training_store", lambda config, n: store)
    full = study.study_config("swiss-south-scratch", 0, None)
    short = study.study_config("swiss-south-scratch", 0, None, train_sequences=24)
    assert short.checkpoint != full.checkpoint
    assert short.checkpoint == f"models/runs/study/swiss-south-scratch-n24-it{full.training.iterations}-s0.pt"
    assert short.data.path == "data/sim/swiss-south-train-n24.zarr" != full.data.path
    assert short.model_dump(exclude={"checkpoint", "data"}) == full.model_dump(exclude={"checkpoint", "data"})
