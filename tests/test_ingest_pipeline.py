"""The dask ingest pipeline on real-format ODIM composites."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

from nowcast.io.archive import Archive
from pipelines.ingest import ingest_files

T0 = np.datetime64("2024-02-27T09:50", "ns")
STEP = np.timedelta64(5, "m")


def raw_field(path: Path) -> np.ndarray:
    """The composite's values straight from HDF5 (independent of the reader)."""
    with h5py.File(path, "r") as f:
        return f["dataset1/data1/data"][...].astype(np.float32)


def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


@pytest.fixture()
def bad_files(tmp_path: Path, odim_composite: Path) -> list[Path]:
    """A truncated composite, a text file and an HDF5 file that is not radar."""
    folder = tmp_path / "bad"
    folder.mkdir()
    truncated = folder / "RFO_truncated.h5"
    truncated.write_bytes(odim_composite.read_bytes()[:5000])
    text = folder / "notes.h5"
    text.write_text("not a radar file\n")
    other = folder / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    return [truncated, text, other]


def test_stream_is_archived_in_time_order_with_real_values(home: Path, odim_stream) -> None:
    files = odim_stream(5)
    report = ingest_files(files[::-1], "swiss", scheduler="synchronous", progress=False, batch_size=2)
    assert len(report.result.added) == 5 and not report.skipped
    archive = Archive.open("swiss", create=False)
    np.testing.assert_array_equal(archive.times, T0 + STEP * np.arange(5))
    expected = raw_field(files[0])
    stored = archive.read().values
    for frame in stored:
        np.testing.assert_array_equal(frame, expected)
    assert np.isnan(stored).any() and (stored > 0).any()  # real coverage and real rain


def test_bad_files_are_skipped_and_the_rest_ingested(home: Path, odim_stream, bad_files, caplog) -> None:
    good = odim_stream(3)
    with caplog.at_level(logging.WARNING):
        report = ingest_files([good[0], *bad_files, *good[1:]], "swiss", scheduler="synchronous", progress=False)
    assert len(report.result.added) == 3
    assert sorted(s.path.name for s in report.skipped) == sorted(p.name for p in bad_files)
    assert all(s.reason for s in report.skipped)
    for bad in bad_files:
        lines = [r.getMessage() for r in caplog.records if bad.name in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith(f"skipped {bad}")
    assert "3 file(s) skipped" in report.summary()
    assert len(Archive.open("swiss").times) == 3


def test_reingest_changes_nothing(home: Path, odim_stream) -> None:
    files = odim_stream(3)
    ingest_files(files, "swiss", scheduler="synchronous", progress=False)
    store = Archive.open("swiss").path
    before = snapshot(store)
    report = ingest_files(files, "swiss", scheduler="synchronous", progress=False)
    assert len(report.result.unchanged) == 3 and not report.result.added and not report.skipped
    assert snapshot(store) == before


def test_different_field_at_same_time_needs_overwrite(home: Path, odim_stream) -> None:
    files = odim_stream(2)
    ingest_files(files, "swiss", scheduler="synchronous", progress=False)
    doubled = odim_stream(1, start="2024-02-27T09:55", scale=2.0, folder="doubled")
    report = ingest_files(doubled, "swiss", scheduler="synchronous", progress=False)
    assert [s.path for s in report.skipped] == doubled
    assert "2024-02-27T09:55:00Z" in report.skipped[0].reason and "--overwrite" in report.skipped[0].reason
    report = ingest_files(doubled, "swiss", scheduler="synchronous", progress=False, overwrite=True)
    assert len(report.result.replaced) == 1 and not report.skipped
    stored = Archive.open("swiss").read().values
    np.testing.assert_allclose(stored[1], raw_field(files[0]) * 2)
    np.testing.assert_array_equal(stored[0], raw_field(files[0]))


def test_same_time_twice_in_one_batch_keeps_the_first_given(home: Path, odim_stream) -> None:
    plain = odim_stream(2)
    doubled = odim_stream(1, scale=2.0, folder="doubled")  # same time as plain[0]
    again = odim_stream(1, folder="again")  # identical to plain[0]
    report = ingest_files([plain[0], doubled[0], again[0], plain[1]], "swiss", scheduler="synchronous", progress=False)
    assert len(report.result.added) == 2 and len(report.result.unchanged) == 1
    assert [s.path for s in report.skipped] == doubled
    np.testing.assert_array_equal(Archive.open("swiss").read().values[0], raw_field(plain[0]))


def test_existing_cluster_by_address(home: Path, odim_stream) -> None:
    """``--scheduler ADDRESS``: connect to a running dask cluster."""
    from distributed import LocalCluster

    files = odim_stream(4)
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", dashboard_address=None
    ) as cluster:
        report = ingest_files(files, "swiss", scheduler=cluster.scheduler_address, progress=False, batch_size=2)
    assert report.scheduler.startswith("dask scheduler tcp://")
    assert len(report.result.added) == 4
    np.testing.assert_array_equal(Archive.open("swiss").times, T0 + STEP * np.arange(4))


def test_unreachable_scheduler_is_a_clean_error(home: Path, odim_stream, monkeypatch) -> None:
    from nowcast.errors import NowcastError
    from pipelines import ingest

    monkeypatch.setattr(ingest, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(NowcastError, match="--scheduler tcp://127.0.0.1:9"):
        ingest_files(odim_stream(2), "swiss", scheduler="tcp://127.0.0.1:9", progress=False)


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_local_cluster(home: Path, odim_stream, bad_files, scheduler: str) -> None:
    """LocalCluster of threads (the default above 16 files) or of processes (about 4 s)."""
    files = odim_stream(6)
    report = ingest_files([*files, bad_files[0]], "swiss", scheduler=scheduler, progress=False, batch_size=4)
    assert report.scheduler.startswith(f"LocalCluster ({scheduler}")
    np.testing.assert_array_equal(Archive.open("swiss").read().values[-1], raw_field(files[0]))
    assert len(report.result.added) == 6 and [s.path for s in report.skipped] == bad_files[:1]
