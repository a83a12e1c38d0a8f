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
    """LocalCluster of threads, or the fork-started process pool whose workers stage their frames."""
    files = odim_stream(6)
    report = ingest_files([*files, bad_files[0]], "swiss", scheduler=scheduler, progress=False, batch_size=4)
    assert report.scheduler.startswith("LocalCluster (threads" if scheduler == "threads" else "process pool (")
    assert not list((home / "archives").glob(".*staging*")), "the staging folder is removed"
    np.testing.assert_array_equal(Archive.open("swiss").read().values[-1], raw_field(files[0]))
    assert len(report.result.added) == 6 and [s.path for s in report.skipped] == bad_files[:1]


def _mixed_stream(odim_stream) -> tuple[list[Path], list[Path]]:
    """Files already archived, then a stream with a late file, an identical copy, an impostor and junk."""
    early = odim_stream(2)  # 09:50, 09:55: archived before
    stream = odim_stream(6, start="2024-02-27T10:00", folder="stream2")  # 10:00 .. 10:25
    late = odim_stream(1, start="2024-02-27T09:45", folder="late")  # older than everything archived
    copy = odim_stream(1, start="2024-02-27T10:05", folder="copy")  # identical to stream[1]
    impostor = odim_stream(1, start="2024-02-27T10:10", scale=2.0, folder="impostor")  # conflicts with stream[2]
    archived_other = odim_stream(1, start="2024-02-27T09:55", scale=3.0, folder="other")  # conflicts with early[1]
    junk = early[0].parent.parent / "junk.h5"
    junk.write_bytes(b"not radar")
    files = [stream[0], stream[1], late[0], impostor[0], stream[2], copy[0], junk, stream[3], archived_other[0],
             stream[4], stream[5], early[0]]
    return early, files


def _outcome(home: Path, report) -> dict:
    archive = Archive.open("swiss", home=home, create=False)
    import xarray as xr

    r = report.result
    return {
        "times": archive.times.tolist(),
        "values": archive.read().values,
        "rows": xr.open_zarr(archive.path).time.values.tolist(),  # physical (arrival) order
        "added": sorted(r.added), "unchanged": sorted(r.unchanged), "replaced": sorted(r.replaced),
        "skipped": sorted((s.path.name, s.path.parent.name, s.reason) for s in report.skipped),
        "ingested": sorted(str(p) for p in report.ingested),
    }


@pytest.mark.parametrize("policy", ["first", "newest", "reject"])
def test_every_scheduler_gives_the_same_archive(tmp_path: Path, odim_stream, monkeypatch, policy: str) -> None:
    """Synchronous, threads and the process pool (staged frames) agree on everything, for every duplicates policy."""
    from nowcast.config import load_region

    region = load_region("swiss")
    region = region.model_copy(update={"ingest": region.ingest.model_copy(update={"duplicates": policy})})
    early, files = _mixed_stream(odim_stream)
    outcomes = {}
    for scheduler in ["synchronous", "processes", *(["threads"] if policy == "first" else [])]:
        home = tmp_path / scheduler
        monkeypatch.setenv("NOWCAST_HOME", str(home))
        ingest_files(early, region, home=home, scheduler="synchronous", progress=False)
        report = ingest_files(files, region, home=home, scheduler=scheduler, progress=False, batch_size=5)
        assert scheduler == "synchronous" or report.scheduler.split(" ")[0] in ("process", "LocalCluster")
        outcomes[scheduler] = _outcome(home, report)
        assert not list((home / "archives").glob(".*staging*"))
    ref = outcomes.pop("synchronous")
    assert len(ref["added"]) >= 5 and any("junk.h5" in s[0] for s in ref["skipped"])
    for scheduler, got in outcomes.items():
        for key in ref:
            if key == "values":
                np.testing.assert_array_equal(got[key], ref[key], err_msg=scheduler)
            else:
                assert got[key] == ref[key], (scheduler, key)


def test_frames_are_conformed_once(home: Path, odim_stream, monkeypatch) -> None:
    """The worker conforms; the driver's append does not run conform a second time."""
    from nowcast.io import archive as archive_mod
    from pipelines import ingest

    calls = {"worker": 0, "archive": 0}
    real = archive_mod.conform

    def counting(where):
        def wrapped(*args, **kwargs):
            calls[where] += 1
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(ingest, "conform", counting("worker"))
    monkeypatch.setattr(archive_mod, "conform", counting("archive"))
    report = ingest_files(odim_stream(3), "swiss", scheduler="synchronous", progress=False)
    assert len(report.result.added) == 3 and calls == {"worker": 3, "archive": 0}
    # external callers still get every check
    with pytest.raises(Exception, match="all NaN"):
        frame = Archive.open("swiss").read().isel(time=[0]).load()
        Archive.open("swiss").append(frame * np.nan, source="x.h5")
    assert calls["archive"] == 1


def test_machine_fault_in_a_worker_defers_the_file(home: Path, odim_stream, monkeypatch) -> None:
    """Disk full while a pool worker stages its frame: deferred (retry later), never skipped as the file's fault."""
    import errno

    from nowcast.io import archive as archive_mod

    files = odim_stream(4)

    def full(self, slot, frame):
        if slot == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, slot, frame)

    real = archive_mod.Staging.write
    monkeypatch.setattr(archive_mod.Staging, "write", full)  # inherited by the forked workers
    report = ingest_files(files, "swiss", scheduler="processes", progress=False)
    assert [d.path for d in report.deferred] == [files[2]] and not report.skipped
    assert "machine fault" in report.deferred[0].reason
    assert len(Archive.open("swiss").times) == 3


POOL_CHILD = """
import os, signal, sys
from nowcast.io import archive as archive_mod
from pipelines.ingest import ingest_files

calls = {"n": 0}
def point(name):
    if name == os.environ["KILL_AT"]:
        calls["n"] += 1
        if calls["n"] == 1:  # the second batch (the first creates the store)
            os.kill(os.getpid(), signal.SIGKILL)
archive_mod._fault_point = point
ingest_files(sys.argv[1:], "swiss", scheduler="processes", progress=False, batch_size=3)
"""


@pytest.mark.parametrize("step", ["resize", "write", "commit"])
def test_pool_ingest_killed_mid_commit(home: Path, odim_stream, tmp_path: Path, step: str) -> None:
    """SIGKILL of the driver in its second commit (the first batch created the store): the first batch stays, the staging folder and the
    workers go, and the next ingest archives everything."""
    import os
    import subprocess
    import sys
    import time

    files = odim_stream(7)
    script = tmp_path / "child.py"
    script.write_text(POOL_CHILD)
    proc = subprocess.run([sys.executable, str(script), *map(str, files)], env={**os.environ, "KILL_AT": step},
                          cwd=Path(__file__).parents[1], timeout=120)
    assert proc.returncode == -9
    assert list((home / "archives").glob(".*staging*")), "the killed ingest left its staging folder"
    archive = Archive.open("swiss")
    assert not list((home / "archives").glob(".*staging*")), "opening the archive removes a dead ingest's staging folder"
    n = len(archive.times)
    assert n in ((6,) if step == "commit" else (3,))
    np.testing.assert_array_equal(archive.times, T0 + STEP * np.arange(n))
    for frame in archive.read().values:
        np.testing.assert_array_equal(frame, raw_field(files[0]))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _orphans(script):
        time.sleep(0.1)
    assert not _orphans(script), "pool workers must die with their driver"
    report = ingest_files(files, "swiss", scheduler="processes", progress=False)
    assert len(report.result.added) == 7 - n and len(report.result.unchanged) == n


def _orphans(script: Path) -> list[str]:
    import subprocess

    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(script) in line]


def test_files_of_several_frames_go_through_the_pool(tmp_path: Path, monkeypatch) -> None:
    """A CF netCDF with several times cannot be staged in one slot: its frames travel to the driver
    (packed) and land exactly as with the synchronous path."""
    import warnings

    import xarray as xr

    from nowcast.config import load_region

    grid = load_region("swiss-south").grid
    files = []
    rng = np.random.default_rng(0)
    for k in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            coords = grid.coords()
        n = 1 if k == 1 else 2  # one single-frame file among them: staged
        times = T0 + STEP * (np.arange(n) + 2 * k)
        values = rng.gamma(0.3, 2.0, size=(n, *grid.shape)).astype(np.float32)
        ds = xr.Dataset({"rain": (("time", "y", "x"), values, {"units": "mm/h", "grid_mapping": "spatial_ref"})},
                        coords={"time": times, **coords})
        path = tmp_path / f"multi{k}.nc"
        ds.to_netcdf(path)
        files.append(path)
    got = {}
    for scheduler in ("synchronous", "processes"):
        home = tmp_path / scheduler
        monkeypatch.setenv("NOWCAST_HOME", str(home))
        report = ingest_files(files, "swiss-south", home=home, scheduler=scheduler, progress=False)
        assert len(report.result.added) == 5 and not report.skipped, report.summary()
        got[scheduler] = Archive.open("swiss-south", home=home).read().values
    np.testing.assert_array_equal(got["processes"], got["synchronous"])
