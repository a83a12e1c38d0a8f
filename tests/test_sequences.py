"""Training sequences from a region's real archive, with stored motion, through the same batch path."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from nowcast.errors import ConfigError


def test_archive_sequences_feed_lagrangian_training_batches(home, odim_moving, tmp_path):
    from pipelines.ingest import ingest_files
    from pipelines.sequences import add_motion, archive_sequences, has_motion
    from nowcast.training import make_batches, split_batch
    from tests.test_lagrangian import lagrangian_config

    files = odim_moving(9) + odim_moving(3, start="2024-02-27T11:00", folder="later")  # a gap: 9 + 3 frames
    report = ingest_files(files, "swiss-south", home=home, scheduler="synchronous", progress=False)
    assert not report.skipped
    store = archive_sequences("swiss-south", tmp_path / "arch.zarr", frames=6, home=home, stride=3)
    with xr.open_zarr(store) as ds:
        assert ds["rain_rate"].shape == (2, 6, 128, 128)  # windows at 0 and 3 of the 9-frame run; none across the gap
        assert ds.attrs["provenance"].startswith("radar archive")
    assert not has_motion(store, 3)
    add_motion(store, 3)
    assert has_motion(store, 3) and not has_motion(store, 4)
    with xr.open_zarr(store) as ds:
        u = ds["motion"].values[:, 2:, 0]
        assert ds.attrs["provenance"].startswith("radar archive")  # adding motion keeps the store's attributes
    assert abs(np.nanmedian(u) - 1.0) < 0.3  # 2 km east per 5 min = 1 cell per step
    cfg = lagrangian_config(data={"kind": "zarr_sequences", "path": str(store), "normalisation": {"kind": "db"},
                                  "frame_size": 64, "input_frames": 3, "output_frames": 3, "timestep_minutes": 5},
                            training={"batch_size": 2})
    frames, valid = split_batch(next(make_batches(cfg)))
    assert frames.shape == (2, 6, 1, 64, 64) and float(valid.mean()) > 0.8


def test_archive_without_a_long_enough_run_is_refused(home, odim_moving, tmp_path):
    from pipelines.ingest import ingest_files
    from pipelines.sequences import archive_sequences

    ingest_files(odim_moving(3), "swiss-south", home=home, scheduler="synchronous", progress=False)
    with pytest.raises(ConfigError, match="no 6 consecutive frames"):
        archive_sequences("swiss-south", tmp_path / "x.zarr", frames=6, home=home)
