from pathlib import Path

import pytest

from nowcast.config import available_regions, load_region
from nowcast.errors import ConfigError


def test_shipped_regions_load_and_nest():
    assert {"swiss", "swiss-south"} <= set(available_regions())
    swiss = load_region("swiss")
    assert swiss.grid.shape == (640, 710)
    south = load_region("swiss-south")
    sx0, sy0, sx1, sy1 = swiss.grid.extent
    x0, y0, x1, y1 = south.grid.extent
    assert sx0 <= x0 < x1 <= sx1 and sy0 <= y0 < y1 <= sy1


def test_known_point_lands_on_expected_cell():
    # Zurich-Kloten (8.55 E, 47.46 N) is near LV03 (685 km, 258 km).
    grid = load_region("swiss").grid
    row, col = grid.index_of_lonlat(8.55, 47.46)
    assert abs(grid.x[col] - 685_000) < 3_000
    assert abs(grid.y[row] - 258_000) < 3_000


def test_unknown_region_lists_known():
    with pytest.raises(ConfigError, match="known regions: .*swiss"):
        load_region("atlantis")


@pytest.mark.parametrize(
    "text, key",
    [
        ("name: x\ncrs: EPSG:21781\nextent: [0, 0, 1000, 1000]\nresolutoin: 10\n", "resolutoin"),
        ("name: x\ncrs: EPSG:99999999\nextent: [0, 0, 1000, 1000]\nresolution: 10\n", "crs"),
        ("name: x\ncrs: EPSG:21781\nextent: [0, 0, 1000, 1005]\nresolution: 10\n", "whole number"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, text: str, key: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key) as info:
        load_region(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def _study_models() -> list[str]:
    """The radar study's neural models (benchmarks/radar_transfer.py), but the shipped target itself."""
    from benchmarks.radar_transfer import NEURAL

    return sorted(set(NEURAL.values()) - {"swiss-south-tmu"})


@pytest.mark.parametrize("name", _study_models())
def test_study_models_train_with_the_shipped_recipe(name: str):
    """Scratch, finetune and the TMU ablations differ from the shipped target only in what they compare.

    The radar study (benchmarks/radar_transfer.py) ranks them against the shipped TMU: a loss
    term or sampling setting that drifted in one config would be measured as transfer.
    """
    from benchmarks.radar_transfer import PROTOCOL_ARCHITECTURE, study_config
    from nowcast.models.config import find_model_config, load_model_config

    shipped = load_model_config(find_model_config("swiss-south-tmu"))
    config = load_model_config(find_model_config(name))
    assert config.training.model_dump(exclude={"init_from"}) == shipped.training.model_dump(exclude={"init_from"})
    assert config.data == shipped.data
    # one architecture for every study model, the sources' own (finetuning copies every weight) ...
    protocol = load_model_config(find_model_config(PROTOCOL_ARCHITECTURE)).architecture
    assert config.architecture == protocol
    # ... and the shipped target's TMU arm of the study runs at it, whatever the shipped kernel and
    # width (both chosen on the validation store for speed) and its trend gate (the sources have none:
    # the study compares transfer at their architecture); nothing else of the architecture differs
    arm = study_config("swiss-south-tmu", 0, None)
    assert arm.architecture == protocol
    sizes = {"kernel", "hidden", "trend_gate"}
    assert arm.architecture.model_dump(exclude=sizes) == shipped.architecture.model_dump(exclude=sizes)
    if shipped.architecture != protocol:  # then the study's seed 0 must not be the shipped checkpoint
        assert arm.checkpoint != shipped.checkpoint


@pytest.mark.parametrize("name", ["swiss-south-scratch", "swiss-south-finetune-nexrad-kbmx", "swiss-south-tmu"])
def test_the_gated_study_adds_only_the_trend_gate(name: str):
    """``radar_transfer.py --trend-gate``: the common architecture plus the gate, own checkpoints, recipe unchanged.

    The thirty-seventh round compares the arms with the gate; an arm that also changed its size or
    recipe, or that wrote over the ungated study's (or the shipped) checkpoint, would be measured as transfer.
    """
    from benchmarks.radar_transfer import PROTOCOL_ARCHITECTURE, study_config
    from nowcast.models.config import find_model_config, load_model_config

    protocol = load_model_config(find_model_config(PROTOCOL_ARCHITECTURE)).architecture
    plain = study_config(name, 1, 1000, "fp32")
    gated = study_config(name, 1, 1000, "fp32", trend_gate=True)
    assert gated.architecture.trend_gate and not protocol.trend_gate
    assert gated.architecture.model_dump(exclude={"trend_gate"}) == protocol.model_dump(exclude={"trend_gate"})
    assert gated.training == plain.training and gated.data == plain.data and gated.tmu == plain.tmu
    assert gated.checkpoint == plain.checkpoint.replace("-it1000-", "-gate-it1000-")
    assert gated.checkpoint.startswith("models/runs/study/")
    # seed 0 at the config's own budget is the config's own checkpoint when ungated, never when gated
    own = load_model_config(find_model_config(name))
    assert study_config(name, own.training.seed, None, trend_gate=True).checkpoint != own.checkpoint
    with pytest.raises(ValueError, match="common architecture"):
        study_config(name, 1, 1000, trend_gate=True, protocol_architecture=False)
