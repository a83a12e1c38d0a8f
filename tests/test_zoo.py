"""Checkpoints: bit-exact round trip, safe loading, refusals that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from nowcast.errors import CheckpointError, ConfigError
from nowcast.models.config import ModelConfig, load_model_config, model_config_from_dict
from nowcast.models.predictor import Predictor
from nowcast.models.zoo import (
    Forecaster,
    load_checkpoint,
    load_forecaster,
    random_forecaster,
    resolve_model,
    save_checkpoint,
    sha256_of,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is fastest, and a shared CI machine stays usable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



def tiny_config(tmp_path: Path, name: str = "tiny", **over: Any) -> ModelConfig:
    """A model small enough to train in a second: L=1..2, C=8, 16x16 frames, p=4."""
    data: dict[str, Any] = {
        "name": name,
        "role": "target",
        "architecture": {"layers": 2, "hidden": 8, "kernel": 3, "patch_size": 4},
        "data": {"kind": "moving_mnist", "modality": "video", "units": "unit", "normalisation": {"kind": "identity"},
                 "frame_size": 32, "input_frames": 3, "output_frames": 3, "n_digits": 1},
        "training": {"iterations": 4, "batch_size": 2, "lr": 3e-3, "seed": 0, "sampling_start": 0, "sampling_end": 4,
                     "val_every": 2, "val_batches": 1, "checkpoint_every": 2, "log_every": 1},
        "checkpoint": str(tmp_path / "models" / f"{name}.pt"),
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return model_config_from_dict(data)


def rain_config(tmp_path: Path, name: str = "rain", **over: Any) -> ModelConfig:
    cfg = tiny_config(tmp_path, name, **over)
    d = cfg.model_dump()
    d["data"].update(kind="zarr_sequences", path="unused.zarr", modality="rain", units="mm h-1",
                     normalisation={"kind": "log", "offset": 0.1, "scale": 3.0}, timestep_minutes=5.0)
    return model_config_from_dict(d)


def _saved(tmp_path: Path, cfg: ModelConfig | None = None) -> tuple[ModelConfig, Predictor, Path]:
    cfg = cfg or tiny_config(tmp_path)
    torch.manual_seed(0)
    model = Predictor.from_config(cfg.architecture)
    save_checkpoint(cfg.checkpoint_path, model, cfg, iterations=7, metrics={"val_mse": 0.5})
    return cfg, model, cfg.checkpoint_path


def test_round_trip_is_bit_exact_and_metadata_complete(tmp_path):
    cfg, model, path = _saved(tmp_path)
    ckpt = load_checkpoint(path, expect_config=cfg)
    own = model.state_dict()
    assert set(ckpt.state_dict) == set(own)
    for k, v in own.items():
        assert torch.equal(ckpt.state_dict[k], v), k
    md = ckpt.metadata
    assert md["architecture"]["hidden"] == [8, 8] and md["architecture"]["patch_size"] == 4
    assert md["normalisation"] == {"kind": "identity"} and md["units"] == "unit"
    assert md["iterations"] == 7 and md["metrics"]["val_mse"] == 0.5
    assert md["code_version"] and md["data"]["modality"] == "video"
    assert ckpt.config == cfg
    assert ckpt.sha256 == sha256_of(path) and len(ckpt.sha256) == 64
    rebuilt = ckpt.build_model()
    x = torch.rand(1, 3, 1, 32, 32)
    assert torch.equal(rebuilt.forecast(x, 2), model.eval().forecast(x, 2))


def test_checkpoint_holds_only_tensors_and_plain_data(tmp_path):
    _, _, path = _saved(tmp_path)
    obj = torch.load(path, weights_only=True)  # would raise on any pickled object

    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (str, int, float, bool, torch.Tensor))

    assert plain(obj)
    import json

    json.dumps(obj["metadata"])  # metadata is JSON-able


@pytest.mark.parametrize(
    "change, field",
    [
        ({"architecture": {"hidden": 16}}, "architecture.hidden"),
        ({"architecture": {"patch_size": 2}}, "architecture.patch_size"),
        ({"architecture": {"kernel": 5}}, "architecture.kernel"),
        ({"data": {"normalisation": {"kind": "minmax", "min": 0, "max": 2}}}, "data.normalisation"),
    ],
)
def test_mismatch_names_the_field(tmp_path, change, field):
    cfg, _, path = _saved(tmp_path)
    other = tiny_config(tmp_path, **change)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, expect_config=other)
    msg = str(err.value)
    assert msg.startswith(str(path)) and field in msg and "\n" not in msg


def test_units_mismatch_and_tmu_mismatch(tmp_path):
    cfg, _, path = _saved(tmp_path, rain_config(tmp_path))
    d = cfg.model_dump()
    d["data"]["units"] = "K"
    with pytest.raises(CheckpointError, match="data.units"):
        load_checkpoint(path, expect_config=model_config_from_dict(d))
    d = cfg.model_dump()
    d["tmu"] = {"sources": ["a"]}
    with pytest.raises(CheckpointError, match="architecture.tmu_sources"):
        load_checkpoint(path, expect_config=model_config_from_dict(d))


def test_missing_truncated_tampered_and_foreign_files(tmp_path):
    _, _, path = _saved(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    raw = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_checkpoint(truncated)
    # flip bytes inside a weight tensor: the zip still opens, the digest catches it
    ckpt = load_checkpoint(path)
    name = "head.weight"
    needle = ckpt.state_dict[name].numpy().tobytes()[:16]
    pos = raw.find(needle)
    assert pos > 0
    tampered = tmp_path / "tampered.pt"
    tampered.write_bytes(raw[:pos] + bytes(b ^ 0xFF for b in raw[pos : pos + 8]) + raw[pos + 8 :])
    with pytest.raises(CheckpointError, match="tampered.pt"):
        load_checkpoint(tampered)
    # a pickle with code in it is refused by weights_only loading
    evil = tmp_path / "evil.pt"
    torch.save({"format": "nowcast-checkpoint", "obj": Path("x")}, evil)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(evil)
    plain = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="not a nowcast checkpoint"):
        load_checkpoint(plain)


def test_resolve_model_yaml_name_and_missing(tmp_path, home):
    cfg, _, path = _saved(tmp_path)
    yaml_path = tmp_path / "tiny.yaml"
    yaml_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert resolve_model(path) == path
    assert resolve_model(yaml_path) == yaml_path
    # a bare name found in HOME/configs/models
    user = home / "configs" / "models"
    user.mkdir(parents=True)
    (user / "tiny.yaml").write_text(yaml_path.read_text())
    assert resolve_model("tiny") == user / "tiny.yaml"
    fc = load_forecaster(resolve_model("tiny"))
    assert fc.sha256 == sha256_of(path)
    with pytest.raises(CheckpointError, match="unknown model 'nope'"):
        resolve_model("nope")
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_model(tmp_path / "missing.pt")
    path.unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_model(yaml_path)


def test_relative_checkpoint_is_under_project_root(tmp_path):
    from nowcast.config import project_root

    cfg = tiny_config(tmp_path, checkpoint="models/runs/x.pt")
    assert cfg.checkpoint_path == project_root() / "models" / "runs" / "x.pt"


def test_config_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    d = tiny_config(tmp_path).model_dump(mode="json")
    d["architecture"]["hiden"] = 3
    bad.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match=r"bad\.yaml: key 'architecture.hiden'"):
        load_model_config(bad)
    d = tiny_config(tmp_path).model_dump(mode="json")
    d["data"]["frame_size"] = 30
    bad.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError, match="not a multiple of architecture.patch_size"):
        load_model_config(bad)


def test_shipped_model_configs_are_valid():
    from nowcast.models.config import available_models, find_model_config

    names = available_models()
    for name in ("mnist-source-1digit", "mnist-source-3digit", "mnist-scratch-2digit", "mnist-finetune-2digit", "mnist-tmu-2digit"):
        assert name in names
        cfg = load_model_config(find_model_config(name))
        assert cfg.architecture.layers == 2 and cfg.architecture.hidden == 32 and cfg.patch_size == 4
        assert cfg.data.frame_size == 64 and cfg.input_frames == 10 and cfg.data.output_frames == 10
        assert cfg.timestep_minutes is None


def test_forecaster_predicts_physical_units(tmp_path):
    cfg, _, path = _saved(tmp_path, rain_config(tmp_path))
    fc = load_forecaster(path)
    assert isinstance(fc, Forecaster)
    assert fc.config.name == "rain" and fc.config.patch_size == 4 and fc.config.input_frames == 3
    assert fc.config.timestep_minutes == 5
    window = np.random.default_rng(0).gamma(0.5, 2.0, (3, 16, 24)).astype(np.float32)
    window[0, 0, 0] = np.nan
    out = fc.predict(window, 4)
    assert out.shape == (4, 16, 24) and out.dtype == np.float32
    assert np.isfinite(out).all() and (out >= 0).all()
    with pytest.raises(Exception, match="multiple of the patch size"):
        fc.predict(window[:, :15], 2)


def test_random_forecaster_for_benchmarks():
    fc = random_forecaster()
    assert fc.sha256 == "" and fc.config.patch_size == 4
    out = fc.predict(np.ones((fc.config.input_frames, 32, 32), dtype=np.float32), 2)
    assert out.shape == (2, 32, 32)


class _Payload:
    """A Python object a checkpoint must never carry (unpickling it could run code)."""


def test_a_file_of_code_is_refused_and_a_file_of_another_format_is_named_so(tmp_path: Path) -> None:
    from nowcast.models.zoo import load_checkpoint

    code = tmp_path / "code.pt"
    torch.save({"state_dict": {}, "metadata": {}, "payload": _Payload()}, code)
    with pytest.raises(CheckpointError, match=r"code\.pt: refused: holds Python objects other than tensors"):
        load_checkpoint(code)
    other = tmp_path / "radar.h5"
    other.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(CheckpointError, match=r"radar\.h5: not a readable nowcast checkpoint, truncated or not a torch file"):
        load_checkpoint(other)


def test_config_difference_reads_an_older_checkpoint_through_todays_defaults(tmp_path: Path) -> None:
    """A field added since (absent from an older checkpoint's stored config) differs only if set away from its default."""
    from nowcast.models.skill import update_metadata
    from nowcast.models.zoo import config_difference, load_checkpoint
    from nowcast.training import train
    from tests.test_training import fixed, moving_square, small

    config = small(tmp_path, "tiny", training={"iterations": 2, "val_every": 2, "checkpoint_every": 2})
    path = train(config, progress=False, batches=fixed(moving_square()), val_batches=[moving_square()]).checkpoint
    stored = load_checkpoint(path).metadata["config"]
    del stored["training"]["area_bias_weight"]  # as written before the field existed
    update_metadata(path, config=stored)
    ckpt = load_checkpoint(path)
    assert config_difference(ckpt, config) is None
    with_term = config.model_copy(update={"training": config.training.model_copy(update={"area_bias_weight": 0.03})})
    assert config_difference(ckpt, with_term) == (
        "training.area_bias_weight is 0.0 in the checkpoint but 0.03 in model config 'tiny'")
    assert config_difference(ckpt, config.model_copy(update={"checkpoint": str(tmp_path / "elsewhere.pt")})) is None
    # an ablation config of the same recipe under another name is the same run (it may be promoted)
    assert config_difference(ckpt, config.model_copy(update={"name": "shipped", "description": "other words"})) is None
