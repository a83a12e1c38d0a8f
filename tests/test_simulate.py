"""The STEPS-style simulator and the Zarr pipeline, on real seed fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pydantic import ValidationError

from nowcast.errors import ConfigError
from nowcast.simulate import SimulationError, SimulationParams, radial_spectrum_slope, simulate_sequence

FROZEN = dict(
    evolve=False,
    veering_deg_per_hour=(0.0, 0.0),
    motion_perturbation=0.0,
    growth_decay=0.0,
    cell_birth_rate=0.0,
    rotation_deg_per_hour=(0.0, 0.0),
    shear_per_hour=(0.0, 0.0),
    wet_fraction_variability=0.0,
    intensity_variability=0.0,
)


def db(rate: np.ndarray) -> np.ndarray:
    from pysteps.utils.transformation import dB_transform

    return dB_transform(np.nan_to_num(rate).astype(np.float64), threshold=0.1)[0]


@pytest.fixture(scope="module")
def swiss_seed():
    """The real MeteoSwiss composite on the swiss-south grid (128x128 at 2 km)."""
    from nowcast.data.seeds import load_seed

    return load_seed("meteoswiss_odim_composite", region="swiss-south")


@pytest.fixture(scope="module")
def swiss_sequence(swiss_seed) -> np.ndarray:
    return simulate_sequence(swiss_seed.values, 13, 5.0, swiss_seed.resolution_m, 7, SimulationParams(), mask=swiss_seed.mask)


def test_output_is_finite_non_negative_float32(swiss_seed, swiss_sequence) -> None:
    assert swiss_sequence.shape == (13, *swiss_seed.shape)
    assert swiss_sequence.dtype == np.float32
    assert np.isfinite(swiss_sequence).all()
    assert swiss_sequence.min() >= 0.0


def test_first_frame_is_the_seed_and_later_frames_evolve(swiss_seed, swiss_sequence) -> None:
    seed_db = db(swiss_seed.values)
    m = swiss_seed.mask
    corr = [np.corrcoef(seed_db[m], db(f)[m])[0, 1] for f in swiss_sequence]
    assert corr[0] > 0.99
    assert corr[-1] < corr[1] < 1.0  # decorrelates with lead time


def test_reproduces_seed_wet_fraction(swiss_seed, swiss_sequence) -> None:
    m = swiss_seed.mask
    wet0 = swiss_seed.wet_fraction()
    wet = np.array([np.mean(f[m] >= 0.1) for f in swiss_sequence])
    assert abs(wet.mean() / wet0 - 1) < 0.25
    # with the wet fraction's slow walk, growth/decay and cells (which add to
    # the matched field) switched off it is reproduced exactly
    params = SimulationParams(wet_fraction_variability=0.0, growth_decay=0.0, cell_birth_rate=0.0)
    seq = simulate_sequence(swiss_seed.values, 5, 5.0, swiss_seed.resolution_m, 3, params, mask=m)
    for f in seq:
        assert abs(np.mean(f[m] >= 0.1) - wet0) < 0.01


def test_reproduces_seed_power_spectrum_slope(swiss_seed, swiss_sequence) -> None:
    seed_slope = radial_spectrum_slope(db(swiss_seed.values))
    assert -4.0 < seed_slope < -1.5  # a real rain field, not noise
    sim = [radial_spectrum_slope(db(f)) for f in swiss_sequence[6:]]
    assert abs(np.mean(sim) - seed_slope) < 0.5


def test_deterministic_per_seed(swiss_seed) -> None:
    args = (swiss_seed.values, 4, 5.0, swiss_seed.resolution_m)
    a = simulate_sequence(*args, 42, SimulationParams(), mask=swiss_seed.mask)
    b = simulate_sequence(*args, 42, SimulationParams(), mask=swiss_seed.mask)
    c = simulate_sequence(*args, 43, SimulationParams(), mask=swiss_seed.mask)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[1:], c[1:])


def _shift(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Integer (rows, cols) displacement of b relative to a, by phase correlation."""
    fa, fb = np.fft.fft2(a - a.mean()), np.fft.fft2(b - b.mean())
    cross = fb * np.conj(fa)
    corr = np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real
    dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
    ny, nx = corr.shape
    return (dy - ny if dy > ny // 2 else dy, dx - nx if dx > nx // 2 else dx)


@pytest.mark.parametrize(("direction", "expected"), [(90.0, (0, 1)), (0.0, (-1, 0)), (225.0, (0.7071, -0.7071))])
def test_advection_moves_features_at_requested_speed(swiss_seed, direction: float, expected: tuple[float, float]) -> None:
    # 36 km/h at 2 km and 5 min = 1.5 px per step; 8 steps = 12 px
    params = SimulationParams(speed_kmh=(36.0, 36.0), direction_deg=(direction, direction), **FROZEN)
    seq = simulate_sequence(swiss_seed.values, 9, 5.0, 2000.0, 0, params, mask=swiss_seed.mask)
    dy, dx = _shift(db(seq[0]), db(seq[8]))
    assert abs(dy - 12 * expected[0]) <= 1.0
    assert abs(dx - 12 * expected[1]) <= 1.0


def test_speed_scales_with_resolution_and_timestep(swiss_seed) -> None:
    params = SimulationParams(speed_kmh=(48.0, 48.0), direction_deg=(90.0, 90.0), **FROZEN)
    # 48 km/h, 10 min, 1 km cells: 8 px per step
    seq = simulate_sequence(swiss_seed.values, 3, 10.0, 1000.0, 0, params, mask=swiss_seed.mask)
    assert _shift(db(seq[0]), db(seq[2])) == (0, 16)


def test_brightness_temperature_seed() -> None:
    from nowcast.data.seeds import load_seed
    from nowcast.simulate import cloud_anomaly

    seed = load_seed("eumetsat_ir_brightness")
    assert seed.kind == "brightness_temperature" and seed.units == "K"
    params = SimulationParams(speed_kmh=(0.0, 80.0), motion_scale_km=2000.0, growth_decay_scale_km=1000.0)
    seq = simulate_sequence(seed.values, 6, 15.0, seed.resolution_m, 1, params, kind="brightness_temperature", mask=seed.mask)
    assert seq.shape == (6, *seed.shape) and np.isfinite(seq).all()
    m = seed.mask
    assert 180.0 < seq.min() and seq.max() < 340.0
    # cloud fraction (anomaly above threshold) is kept close to the seed's
    anom0, _ = cloud_anomaly(seed.values.astype(float), m, params, seed.resolution_m)
    anom5, _ = cloud_anomaly(seq[-1].astype(float), m, params, seed.resolution_m)
    frac0, frac5 = np.mean(anom0[m] > 0), np.mean(anom5[m] > 0)
    assert 0.05 < frac0 < 0.95
    assert abs(frac5 - frac0) < 0.15


def test_bad_input_raises() -> None:
    field = np.zeros((32, 32), np.float32)
    with pytest.raises(SimulationError, match="no rain"):
        simulate_sequence(field, 3, 5.0, 1000.0, 0)
    with pytest.raises(SimulationError, match="2-D"):
        simulate_sequence(np.ones(100), 3, 5.0, 1000.0, 0)
    with pytest.raises(SimulationError, match="negative"):
        simulate_sequence(field - 1.0, 3, 5.0, 1000.0, 0)
    with pytest.raises(SimulationError, match="kind"):
        simulate_sequence(field + 1.0, 3, 5.0, 1000.0, 0, kind="snow")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        SimulationParams(speed_kmh=(50.0, 10.0))
    with pytest.raises(ValidationError):
        SimulationParams(lag1_large=1.0)


# ----------------------------------------------------------------- pipeline --


def test_pipeline_smoke_writes_provenance(tmp_path: Path) -> None:
    from pipelines.simulate import PROVENANCE, simulate_dataset

    out = simulate_dataset("swiss-south", 2, 6, tmp_path / "train.zarr", seed=5, crop_size=64, scheduler="synchronous")
    ds = xr.open_zarr(out)
    assert ds.attrs["provenance"] == PROVENANCE == "simulated from real seeds"
    assert ds.attrs["seed_file"] == "RFO_example_h5_grid.h5"
    assert ds.attrs["split"] == "train" and ds.attrs["timestep_minutes"] == 5
    assert ds.attrs["resolution_m"] == 2000.0
    rr = ds["rain_rate"]
    assert rr.dims == ("sequence", "time", "y", "x") and rr.shape == (2, 6, 64, 64)
    assert rr.attrs["units"] == "mm h-1"
    values = rr.values
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() > 0.1
    assert (ds["time"].values / np.timedelta64(1, "m")).tolist() == [0, 5, 10, 15, 20, 25]
    assert not np.array_equal(values[0], values[1])


def test_pipeline_same_data_under_any_scheduler_and_test_split_held_out(tmp_path: Path) -> None:
    from pipelines.simulate import simulate_dataset

    a = xr.open_zarr(simulate_dataset("swiss-south", 2, 4, tmp_path / "a.zarr", seed=9, scheduler="synchronous"))
    b = xr.open_zarr(simulate_dataset("swiss-south", 2, 4, tmp_path / "b.zarr", seed=9, scheduler="threads"))
    np.testing.assert_array_equal(a["rain_rate"].values, b["rain_rate"].values)
    test = xr.open_zarr(simulate_dataset("swiss-south", 2, 4, tmp_path / "t.zarr", seed=9, scheduler="synchronous", split="test"))
    assert test.attrs["split"] == "test"
    assert test.attrs["seed_file"] != a.attrs["seed_file"]  # another real field, another day


def test_every_configured_domain_loads() -> None:
    from pipelines.simulate import load_domains

    domains = load_domains()
    assert [n for n, d in domains.items() if d.role == "target"] == ["swiss-south"]
    assert {"nexrad-kbmx", "nexrad-klot", "finland-korpo", "eumetsat-ir"} <= set(domains)


def test_bad_config_and_domain_raise_config_error(tmp_path: Path) -> None:
    from pipelines.simulate import load_domains, simulate_dataset

    bad = tmp_path / "sim.yaml"
    bad.write_text("domains:\n  x:\n    sample: meteoswiss_odim_composite\n    crop_sise: 64\n")
    with pytest.raises(ConfigError, match="crop_sise"):
        load_domains(bad)
    with pytest.raises(ConfigError, match="nowhere"):
        simulate_dataset("nowhere", 1, 2, tmp_path / "x.zarr")


@pytest.mark.parametrize("domain", ["nexrad-kbmx", "nexrad-klot", "finland-korpo", "eumetsat-ir"])
def test_pipeline_source_domains(tmp_path: Path, domain: str) -> None:
    from pipelines.simulate import simulate_dataset

    ds = xr.open_zarr(simulate_dataset(domain, 2, 6, tmp_path / f"{domain}.zarr", scheduler="synchronous"))
    var = ds[next(iter(n for n in ds.data_vars if ds[n].ndim == 4))]
    assert var.shape == (2, 6, 64, 64) and np.isfinite(var.values).all()
    assert ds.attrs["provenance"] == "simulated from real seeds"
