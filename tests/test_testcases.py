"""Held-out test cases: the real composite moved by a known motion (nowcast.data.testcases)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nowcast.data.testcases import (
    PROVENANCE,
    CaseMotion,
    draw_motions,
    growth_rate_field,
    make_test_sets,
    move_field,
    rigid_motion_case,
)
from nowcast.errors import NowcastError


@pytest.fixture(scope="module")
def swiss_rain() -> np.ndarray:
    """The real MeteoSwiss composite on the swiss-south grid, mm/h, NaN as 0."""
    from nowcast.data.seeds import load_seed

    seed = load_seed("meteoswiss_odim_composite", region="swiss-south")
    assert seed.shape == (128, 128) and seed.resolution_m == 2000.0
    return np.nan_to_num(seed.values.astype(np.float64))


def _db(rate: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(rate)


def test_zero_growth_is_exactly_the_field_moved(swiss_rain) -> None:
    # an integer shift samples pixel centres: frame t equals np.roll in the interior
    u, v = 3, -2  # 3 px east, 2 px north per step
    seq = rigid_motion_case(swiss_rain, 5, (u, v))
    assert seq.dtype == np.float32 and seq.shape == (5, 128, 128)
    np.testing.assert_array_equal(seq[0], swiss_rain.astype(np.float32))
    for t in range(1, 5):
        rolled = np.roll(swiss_rain, (t * v, t * u), axis=(0, 1)).astype(np.float32)
        interior = (slice(2 * 4, 128 - 2 * 4), slice(3 * 4, 128 - 3 * 4))
        np.testing.assert_array_equal(seq[t][interior], rolled[interior])
        # rain enters only where the seed had rain: from outside the seed it is dry
        assert (seq[t][:, : t * u] == 0).all() and (seq[t][128 + t * v :, :] == 0).all()


def test_rotation_is_counterclockwise_on_the_map() -> None:
    rng = np.random.default_rng(0)
    field = rng.gamma(0.5, 2.0, (33, 33))  # odd side: the centre is a pixel centre
    seq = rigid_motion_case(field, 3, rotation_deg_per_step=90.0)
    # np.rot90 turns an array counterclockwise as displayed with row 0 (north) on top
    np.testing.assert_allclose(seq[1], np.rot90(field, 1), atol=1e-5)
    np.testing.assert_allclose(seq[2], np.rot90(field, 2), atol=1e-5)
    # a point east of the centre goes north
    dot = np.zeros((33, 33))
    dot[16, 26] = 1.0
    moved = move_field(dot, rotation_deg=90.0)
    assert np.unravel_index(np.argmax(moved), moved.shape) == (6, 16)


@pytest.mark.parametrize("pattern", ["uniform", "cells"])
def test_growth_changes_intensity_by_the_stated_rate_in_the_lagrangian_frame(swiss_rain, pattern: str) -> None:
    u, v = -2, 1
    rate = growth_rate_field(swiss_rain.shape, pattern, 1.5, rng_seed=7)
    seq = rigid_motion_case(swiss_rain, 5, (u, v), growth_db_per_step=1.5, growth_pattern=pattern, rng_seed=7, max_rain_rate=None)
    wet = swiss_rain >= 0.1
    for t in range(1, 5):
        # the rain now at p came from p - t (u, v); it has grown by t * rate there
        back = np.roll(seq[t], (-t * v, -t * u), axis=(0, 1)).astype(np.float64)
        inner = np.zeros_like(wet)
        inner[8:-8, 8:-8] = True
        sel = wet & inner & (back > 0)
        np.testing.assert_allclose(_db(back[sel]) - _db(swiss_rain[sel]), t * rate[sel], atol=1e-3)
    if pattern == "uniform":
        assert np.all(rate == 1.5)


def test_growth_cells_grow_in_some_areas_and_decay_in_others() -> None:
    rate = growth_rate_field((128, 128), "cells", 2.0, rng_seed=3)
    assert rate.max() > 1.2 and rate.min() < -1.2  # 60-100 % of 2 dB/step, both signs
    assert np.abs(rate).max() <= 2.0
    strong = np.mean(np.abs(rate) > 1.0)
    assert 0.03 < strong < 0.7  # areas, not the whole domain
    np.testing.assert_array_equal(rate, growth_rate_field((128, 128), "cells", 2.0, rng_seed=3))
    assert not np.array_equal(rate, growth_rate_field((128, 128), "cells", 2.0, rng_seed=4))
    with pytest.raises(NowcastError, match="growth_pattern"):
        growth_rate_field((8, 8), "spiral", 1.0)  # type: ignore[arg-type]


def test_growing_rain_stays_physical(swiss_rain) -> None:
    seq = rigid_motion_case(swiss_rain, 16, (1.3, 0.7), 0.5, 2.0, "uniform", max_rain_rate=150.0)
    assert np.isfinite(seq).all() and seq.min() >= 0.0
    assert 100.0 < seq.max() <= 150.0  # +30 dB on 8 mm/h would be 8000 mm/h without the ceiling


def test_bad_input_raises() -> None:
    with pytest.raises(NowcastError, match="2-D"):
        rigid_motion_case(np.ones(10), 3)
    with pytest.raises(NowcastError, match="negative"):
        rigid_motion_case(-np.ones((8, 8)), 3)
    with pytest.raises(NowcastError, match="n_frames"):
        rigid_motion_case(np.ones((8, 8)), 0)


def test_motions_are_in_the_stated_ranges_and_reproducible() -> None:
    motions = draw_motions(200, seed=1)
    speeds = np.array([np.hypot(m.shift_u, m.shift_v) for m in motions])
    assert speeds.min() >= 0.5 and speeds.max() <= 3.0
    assert max(abs(m.rotation_deg_per_step) for m in motions) <= 1.0
    assert all(1.0 <= m.growth_db_per_step <= 2.0 for m in motions)
    dirs = np.array([m.direction_deg for m in motions])
    assert np.histogram(dirs, bins=4, range=(0, 360))[0].min() > 30  # every direction
    assert draw_motions(200, seed=1) == motions and draw_motions(200, seed=2) != motions
    # 1 px/step at 2 km and 5 min is 24 km/h; a northward shift has negative v
    north = CaseMotion(shift_u=0.0, shift_v=-1.0, rotation_deg_per_step=0.0, growth_db_per_step=0.0, growth_seed=0)
    assert north.speed_kmh == pytest.approx(24.0) and north.direction_deg == pytest.approx(0.0)


def test_make_test_sets_writes_the_pipeline_layout(tmp_path: Path, swiss_rain) -> None:
    from nowcast.data.testcases import main

    assert main(["--out", str(tmp_path), "--cases", "3", "--frames", "5", "--size", "64", "--crop", "48"]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"swiss-south-{k}.zarr" for k in ("growth", "growth-48", "rigid", "rigid-48"))
    rigid = xr.open_zarr(tmp_path / "swiss-south-rigid.zarr")
    growth = xr.open_zarr(tmp_path / "swiss-south-growth.zarr")
    for ds in (rigid, growth):
        assert ds.attrs["provenance"] == PROVENANCE == "real field moved by a known motion"
        assert "known" in ds.attrs["title"] and ds.attrs["split"] == "test"
        assert ds.attrs["timestep_minutes"] == 5 and ds.attrs["resolution_m"] == 2000
        rr = ds["rain_rate"]
        assert rr.dims == ("sequence", "time", "y", "x") and rr.shape == (3, 5, 64, 64)
        assert rr.attrs["units"] == "mm h-1"
        values = rr.values
        assert np.isfinite(values).all() and values.min() >= 0.0
        assert (values >= 0.1).mean(axis=(2, 3)).min() > 0.05  # rain in every frame
        assert (ds["time"].values / np.timedelta64(1, "m")).tolist() == [0, 5, 10, 15, 20]
        for name in ("shift_u", "shift_v", "rotation_deg_per_step", "rotation_centre_y", "speed_kmh", "window_y0"):
            assert ds[name].dims == ("sequence",)
    # the same motions and windows; the sets differ by the growth only
    for name in ("shift_u", "shift_v", "rotation_deg_per_step", "window_y0", "window_x0"):
        np.testing.assert_array_equal(rigid[name].values, growth[name].values)
    np.testing.assert_array_equal(rigid["rain_rate"].values[:, 0], growth["rain_rate"].values[:, 0])
    assert not np.allclose(rigid["rain_rate"].values[:, -1], growth["rain_rate"].values[:, -1])
    assert (rigid["growth_db_per_step"].values == 0).all() and (growth["growth_db_per_step"].values >= 1).all()
    # frame 0 is the real composite in its window; the rigid truth is the seed moved
    for i in range(3):
        y0, x0 = int(rigid["window_y0"][i]), int(rigid["window_x0"][i])
        np.testing.assert_array_equal(rigid["rain_rate"].values[i, 0], swiss_rain[y0 : y0 + 64, x0 : x0 + 64].astype(np.float32))
        m = (float(rigid["shift_u"][i]), float(rigid["shift_v"][i]))
        full = rigid_motion_case(swiss_rain, 5, m, float(rigid["rotation_deg_per_step"][i]))
        np.testing.assert_array_equal(rigid["rain_rate"].values[i], full[:, y0 : y0 + 64, x0 : x0 + 64])
    # crops for a smaller forecast window
    crop = xr.open_zarr(tmp_path / "swiss-south-rigid-48.zarr")
    assert crop["rain_rate"].shape == (3, 5, 48, 48) and crop.attrs["crop_size"] == 48
    assert (crop["rain_rate"].values >= 0.1).mean(axis=(2, 3)).min() > 0.05
    for i in range(3):
        y0, x0 = int(crop["window_y0"][i]), int(crop["window_x0"][i])
        np.testing.assert_array_equal(crop["rain_rate"].values[i, 0], swiss_rain[y0 : y0 + 48, x0 : x0 + 48].astype(np.float32))
        dy = int(crop["window_y0"][i]) - int(rigid["window_y0"][i])
        assert float(crop["rotation_centre_y"][i]) == pytest.approx(float(rigid["rotation_centre_y"][i]) - dy)
