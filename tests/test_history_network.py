"""benchmarks/history_network.py: two arms that differ only in the window they read, and their table."""

from __future__ import annotations

import numpy as np

from benchmarks.history_network import arm_config, markdown


def test_the_arms_differ_only_in_their_window_and_seed():
    h4, h8 = arm_config("h4", 0), arm_config("h8", 2)
    assert (h4.input_frames, h4.motion_frames) == (4, 4) and (h8.input_frames, h8.motion_frames) == (8, 4)
    assert h8.training.seed == 2 and h8.checkpoint.endswith("swiss-south-scratch-h8-s2.pt")
    assert h4.checkpoint.endswith("swiss-south-scratch-h4-s0.pt")
    assert (h4.data.path, h4.data.val_path) == (h8.data.path, h8.data.val_path)  # one store for both
    # every field that shapes what a run learns is the same but the window, its motion and the seed
    a = h4.model_dump(mode="json")
    b = arm_config("h8", 0).model_dump(mode="json")
    for part in ("architecture", "training", "frame", "role"):
        assert a[part] == b[part], part
    assert {k for k in a["data"] if a["data"][k] != b["data"][k]} == {"input_frames"}
    # part 5's arm: the h4 arm on another archive, nothing else
    strong = arm_config("h4-strong", 0).model_dump(mode="json")
    assert {k for k in a if a[k] != strong[k]} == {"name", "description", "data", "checkpoint"}
    assert {k for k in a["data"] if a["data"][k] != strong["data"][k]} == {"path", "val_path"}
    assert strong["data"]["path"] == "data/sim/strong/swiss-south-train-f20.zarr"


def test_the_table_orders_the_arms_as_the_study_does():
    leads = np.linspace(0.6, 0.4, 12)

    def method(*offsets):
        return {"scores": {k: {"per_seed": [list(leads + o) for o in offsets]} for k in ("csi@1", "csi@5")}}

    results = {"growth": {"extrapolation": method(0.0), "lagrangian-trend": method(0.1),
                          "scratch-h4": method(0.00, 0.01, 0.02), "scratch-h8": method(0.05, 0.06, 0.07)}}
    table = markdown(results, [0, 1, 2])
    row = table.splitlines()[-1]
    assert row.startswith("| growth | 0.500 / 0.500 | 0.600 / 0.600 | 0.510 ± 0.010 / 0.510 ± 0.010 |")
    assert "| > / > |" in row and "+0.010 / +0.010; +0.060 / +0.060 |" in row  # worst lead of each seed mean
    results["growth"]["scratch-h8"] = method(0.015, 0.02, 0.025)  # 0.01 above, inside the spread
    assert "| = / = |" in markdown(results, [0, 1, 2])


def test_untrained_arms_score_as_extrapolation_from_the_newest_four(tmp_path, monkeypatch):
    """Both arms untrained: each is extrapolation from the newest 4 of what it reads, so every score is extrapolation's."""
    import xarray as xr

    import benchmarks.history_network as hn
    from nowcast.models.predictor import Predictor
    from nowcast.models.zoo import save_checkpoint
    from tests.test_lagrangian import lagrangian_config, moving_window

    def tiny(arm: str, seed: int):
        frames = int(arm.lstrip("h"))
        data = {"kind": "zarr_sequences", "path": "unused.zarr", "modality": "rain", "units": "mm h-1",
                "normalisation": {"kind": "db"}, "frame_size": 32, "input_frames": frames, "output_frames": 12,
                "timestep_minutes": 5}
        return lagrangian_config(data=data, motion={"method": "LK", "frames": 4},
                                 checkpoint=str(tmp_path / f"h{frames}-s{seed}.pt"))

    for arm in ("h4", "h8"):
        cfg = tiny(arm, 0)
        save_checkpoint(cfg.checkpoint_path, Predictor.for_model(cfg), cfg, iterations=0)
    monkeypatch.setattr(hn, "arm_config", tiny)
    seqs = np.stack([moving_window(shape=(32, 32), frames=20, u=u, v=0.5) for u in (1.0, -1.5)])
    store = tmp_path / "growth.zarr"
    xr.Dataset({"rain_rate": (("sequence", "time", "y", "x"), seqs, {"units": "mm h-1"})}).to_zarr(store)
    results = hn.score([0], [store], maps=tmp_path / "maps")
    ref = results["growth"]["extrapolation"]["scores"]
    for arm in ("scratch-h4", "scratch-h8"):
        for k in ("csi@1", "csi@5"):
            np.testing.assert_array_equal(results["growth"][arm]["scores"][k]["per_seed"][0], ref[k]["per_seed"][0])
    assert (tmp_path / "maps" / "maps_growth.png").stat().st_size > 0
