"""Model lookup (HOME/models first, then the shipped zoo), ``nowcast models list``, ``nowcast pretrain``,
shell completion, reader names in ``ingest --help`` and leads beyond training (docs/models.md)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from nowcast.cli import main  # noqa: E402
from nowcast.config import project_root, shipped_configs_dir  # noqa: E402

ROOT = project_root()
#: A shipped source that no concurrent training rewrites (the target may be mid-training).
SOURCE = "src-nexrad-kbmx"


# ------------------------------------------------------------------ the lookup rule
def test_checkout_is_recognised_here() -> None:
    from nowcast.paths import shipped_zoo_dirs, source_checkout

    assert source_checkout() == ROOT
    assert shipped_zoo_dirs()[0] == ("checkout", ROOT / "models" / "zoo")


def test_lookup_order_in_a_checkout(home: Path) -> None:
    from nowcast.paths import checkpoint_candidates, checkpoint_output_path

    where = checkpoint_candidates("models/zoo/x.pt")
    assert [w for w, _ in where][:2] == ["home", "checkout"]
    assert where[0][1] == home / "models" / "x.pt" and where[1][1] == ROOT / "models" / "zoo" / "x.pt"
    # training in a checkout writes where the config says: the project's zoo workflow is unchanged
    assert checkpoint_output_path("models/zoo/x.pt") == ROOT / "models" / "zoo" / "x.pt"
    assert checkpoint_output_path("models/runs/x.pt") == ROOT / "models" / "runs" / "x.pt"
    assert checkpoint_candidates("models/runs/x.pt") == [("checkout", ROOT / "models" / "runs" / "x.pt")]
    absolute = home / "elsewhere" / "x.pt"
    assert checkpoint_candidates(absolute) == [("path", absolute)] and checkpoint_output_path(absolute) == absolute


def test_lookup_and_training_output_when_installed(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed from a wheel (no checkout): HOME/models then the packaged zoo; training writes HOME."""
    from nowcast import paths
    from nowcast.models.config import find_model_config, load_model_config
    from nowcast.models.zoo import training_config

    monkeypatch.setattr(paths, "source_checkout", lambda: None)
    where = paths.checkpoint_candidates("models/zoo/x.pt")
    assert where == [("home", home / "models" / "x.pt"), ("package", paths.package_dir() / "_zoo" / "x.pt")]
    assert paths.checkpoint_output_path("models/zoo/x.pt") == home / "models" / "x.pt"
    assert paths.checkpoint_output_path("models/runs/x.pt") == home / "models" / "runs" / "x.pt"
    assert paths.checkpoint_output_path("models/zoo/x.pt", tmp_path / "h2") == tmp_path / "h2" / "models" / "x.pt"
    cfg = training_config(load_model_config(find_model_config("swiss-south-tmu")))
    assert cfg.checkpoint_path == home / "models" / "swiss-south-tmu.pt"
    assert Path(cfg.data.path) == home / "data" / "sim" / "swiss-south-train.zarr"
    assert Path(cfg.data.val_path) == home / "data" / "sim" / "swiss-south-val.zarr"


def test_training_config_is_unchanged_in_a_checkout(home: Path) -> None:
    from nowcast.models.config import find_model_config, load_model_config
    from nowcast.models.zoo import training_config

    cfg = load_model_config(find_model_config(SOURCE))
    assert training_config(cfg) is cfg


def test_home_model_shadows_the_shipped_one(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nowcast.models.config import find_model_config, load_model_config
    from nowcast.models.zoo import load_forecaster, locate_checkpoint

    cfg = load_model_config(find_model_config(SOURCE))
    assert locate_checkpoint(cfg) == ("checkout", ROOT / "models" / "zoo" / f"{SOURCE}.pt")
    (home / "models").mkdir()
    mine = home / "models" / f"{SOURCE}.pt"
    shutil.copy(ROOT / "models" / "zoo" / f"{SOURCE}.pt", mine)
    assert locate_checkpoint(cfg) == ("home", mine)
    assert load_forecaster(SOURCE).path == mine
    assert main(["models", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [d["where"] for d in listing["lookup_order"]][:2] == ["home", "checkout"]
    entry = next(m for m in listing["models"] if m["name"] == SOURCE)
    assert entry["found"] == "home" and entry["path"] == str(mine)
    assert entry["shadows"] == [{"where": "checkout", "path": str(ROOT / "models" / "zoo" / f"{SOURCE}.pt")}]
    assert entry["sha256_listed"] is None  # no SHA256SUMS in HOME/models


def test_missing_checkpoint_names_every_place_looked(home: Path) -> None:
    from nowcast.errors import CheckpointError
    from nowcast.models.config import model_config_from_dict
    from nowcast.models.zoo import locate_checkpoint

    data = yaml.safe_load((shipped_configs_dir() / "models" / f"{SOURCE}.yaml").read_text())
    data.update(name="never-trained", checkpoint="models/zoo/never-trained.pt")
    with pytest.raises(CheckpointError, match="does not exist") as exc:
        locate_checkpoint(model_config_from_dict(data))
    assert str(home / "models" / "never-trained.pt") in str(exc.value) and "nowcast train" in str(exc.value)


def test_models_list_table_and_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "lookup order" in out and f"home {home / 'models'}" in out
    for word in ("name", "sources", "frame", "trained on", "held-out skill", "sha256", "found", SOURCE, "checkout"):
        assert word in out, word
    assert main(["models", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    shipped = {p.name for p in (ROOT / "models" / "zoo").glob("*.pt") if not p.name.endswith(".state.pt")}
    assert {m["file"] for m in listing["models"]} == shipped
    source = next(m for m in listing["models"] if m["name"] == SOURCE)
    assert source["role"] == "source" and source["frame"] == "lagrangian" and source["sources"] == []
    assert "simulated from real seeds" in source["trained_on"] and source["iterations"] >= 1
    assert source["found"] == "checkout" and source["sha256_listed"] is True and len(source["sha256"]) == 64
    target = next(m for m in listing["models"] if m["name"] == "swiss-south-tmu")
    assert target["role"] == "target" and SOURCE in target["sources"]
    assert target["heldout_skill_brief"]  # measured skill, or "not measured" while it is being retrained


# ------------------------------------------------------------------ nowcast pretrain
@pytest.fixture()
def tiny_region(home: Path, tmp_path: Path) -> str:
    """A region whose zoo is one tiny source (trains in a second), configs in HOME."""
    (home / "configs" / "models").mkdir(parents=True)
    (home / "configs" / "regions").mkdir(parents=True)
    region = yaml.safe_load((shipped_configs_dir() / "regions" / "swiss-south.yaml").read_text())
    region.update(name="tiny", sources=["tiny-src"])
    region["forecast"]["model"] = "tiny-tgt"
    (home / "configs" / "regions" / "tiny.yaml").write_text(yaml.safe_dump(region))
    for name, role in (("tiny-src", "source"), ("tiny-tgt", "target")):
        config = {
            "name": name, "role": role,
            "architecture": {"layers": 1, "hidden": 4, "kernel": 3, "patch_size": 4},
            "data": {"kind": "zarr_sequences", "domain": "swiss-south", "modality": "rain", "units": "mm h-1",
                     "frame_size": 16, "input_frames": 2, "output_frames": 2, "timestep_minutes": 5,
                     "path": str(tmp_path / f"{name}.zarr")},
            "training": {"iterations": 2, "batch_size": 2, "val_every": 2, "val_batches": 1, "checkpoint_every": 2,
                         "sampling_end": 2},
            "checkpoint": str(tmp_path / "zoo" / f"{name}.pt"),
        }
        if role == "target":
            config["tmu"] = {"sources": ["tiny-src"], "variant": "normalized_sum"}
        (home / "configs" / "models" / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return "tiny"


def test_pretrain_command_trains_and_records_the_command(tiny_region: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines import pretrain

    torch.set_num_threads(1)
    monkeypatch.setattr(pretrain, "SOURCE_SEQUENCES", 2)
    code = main(["pretrain", "--region", tiny_region, "--only", "tiny-src", "--iterations", "1", "--threads", "1",
                 "--scheduler", "synchronous", "--no-progress", "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "tiny-src: 1 iterations" in out and str(tmp_path / "zoo" / "tiny-src.pt") in out
    manifest = json.loads((tmp_path / "zoo" / "MANIFEST.json").read_text())
    assert manifest["tiny-src.pt"]["command"].startswith("nowcast pretrain --region tiny --only tiny-src")
    assert "tiny-src.pt" in (tmp_path / "zoo" / "SHA256SUMS").read_text()


def test_pretrain_command_refuses_a_model_the_region_does_not_use(tiny_region: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "--region", tiny_region, "--only", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nowcast: error: ") and "does not use model" in err and err.count("\n") == 1


def test_pretrain_checksums_only_rewrites_the_zoo_it_is_given(home: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import pretrain

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    shutil.copy(ROOT / "models" / "zoo" / f"{SOURCE}.pt", zoo)
    monkeypatch.setattr(pretrain, "default_zoo", lambda home=None: zoo)  # never the project's own zoo
    assert main(["pretrain", "--checksums-only", "-q"]) == 0
    assert f"{SOURCE}.pt" in (zoo / "SHA256SUMS").read_text()


def test_pipeline_module_keeps_its_command_line() -> None:
    from pipelines import pretrain

    with pytest.raises(SystemExit) as exc:
        pretrain.main(["--help"])
    assert exc.value.code == 0


# ------------------------------------------------------------------ completion, ingest --help
def test_shell_completion_is_offered(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--install-completion" in out and "--show-completion" in out
    # Name the shell instead of letting shellingham find it among the test's parent processes
    # (a test started with no shell above it, e.g. from a detached job, found none).
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    assert main(["--show-completion", "bash"]) == 0
    assert "_nowcast_completion" in capsys.readouterr().out


def test_ingest_help_lists_every_reader(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from nowcast.commands.ingest import READER_NAMES
    from nowcast.io.readers import READERS

    assert set(READER_NAMES) == set(READERS)
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["ingest", "--help"]) == 0
    out = capsys.readouterr().out
    for name in READERS:
        assert name in out, name


# ------------------------------------------------------------------ leads beyond training
def test_leads_beyond_training_are_named() -> None:
    from nowcast.forecast import leads_beyond_training
    from nowcast.models.zoo import random_forecaster

    fc = random_forecaster()  # trained (configured) for 12 output frames
    assert leads_beyond_training(fc, 12, 5) is None
    note = leads_beyond_training(fc, 36, 5)
    assert note and "36 leads (180 min)" in note and "trained for 12 (60 min)" in note and "13-36" in note
    fc.metadata["data"] = {"output_frames": 6}  # the checkpoint's own record wins
    assert "trained for 6" in leads_beyond_training(fc, 7, 5)


def test_forecast_beyond_training_warns_and_says_so_in_the_product(home: Path, odim_moving, monkeypatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    import xarray as xr

    import nowcast.forecast as fcmod
    from nowcast.models.zoo import random_forecaster
    from pipelines.ingest import ingest_files

    torch.set_num_threads(1)
    assert not ingest_files(odim_moving(4), "swiss-south", home=home, scheduler="synchronous", progress=False).skipped
    model = random_forecaster()
    monkeypatch.setattr(fcmod, "load_model", lambda region, home=None: model)
    with caplog.at_level(logging.WARNING, logger="nowcast.forecast"):
        result = fcmod.run_forecast("swiss-south", home=home, method="tmu", leads=14)
    assert result.method == "tmu" and result.leads == 14 and result.fallback_reason is None
    assert "beyond training" in caplog.text
    with xr.open_zarr(result.path) as ds:
        assert "trained for 12 (60 min)" in ds.attrs["model_leads_beyond_training"]
        assert ds["rain_rate"].shape[0] == 14 and np.isfinite(ds["rain_rate"].values).any()
    within = fcmod.run_forecast("swiss-south", home=home, method="tmu", leads=3, out=home / "within.zarr")
    with xr.open_zarr(within.path) as ds:
        assert "model_leads_beyond_training" not in ds.attrs
