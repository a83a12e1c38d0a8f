"""Operations hardening (issue #9): impossible values, impossible times, dropping frames, machine faults."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from nowcast.config import load_region
from nowcast.errors import EnvironmentFault, InputFileError, is_environment_fault
from nowcast.io import archive as archive_mod
from nowcast.io.archive import Archive, conform
from tests.test_archive import REGION, STEP, T0, Crash, _crash_at, field, frames


# ------------------------------------------------------ impossible values
@pytest.mark.parametrize("bad", [-5.0, -999.0, np.inf, -np.inf, 1e6])
def test_impossible_rain_rates_never_reach_the_archive(home: Path, bad: float, caplog) -> None:
    da = frames([0])
    da.values[0, 40:42, 40:45] = bad  # 10 cells: a few bad cells are masked, the file goes in
    archive = Archive.open(REGION, home=home)
    archive.append(da)
    stored = archive.read().load().values[0]
    assert np.isnan(stored[40:42, 40:45]).all()
    ok = np.isfinite(stored)
    assert (stored[ok] >= 0).all() and (stored[ok] <= 500).all()
    assert "frames[0].h5: 10 implausible cell(s) masked as no data" in caplog.text


def test_max_rain_rate_is_a_limit_on_both_sides() -> None:
    region = load_region(REGION)
    limit = region.ingest.max_rain_rate
    da = frames([0])
    da.values[0, 60, 60] = limit  # exactly at the limit: plausible
    da.values[0, 61, 61] = np.nextafter(np.float32(limit), np.float32(np.inf))  # just above: masked
    out = conform(da, region).values[0]
    assert out[60, 60] == limit and np.isnan(out[61, 61])


def test_a_file_mostly_impossible_is_refused_not_masked(home: Path) -> None:
    region = load_region(REGION)
    da = frames([0])
    da.values[0] = -999.0  # e.g. a fill value where the writer meant "no data" everywhere: wrong file
    with pytest.raises(InputFileError, match="physically impossible.*max_implausible_fraction"):
        conform(da, region)
    da.values[0] = field(0)
    n_covered = np.count_nonzero(~np.isnan(da.values[0]))
    k = int(region.ingest.max_implausible_fraction * n_covered)  # exactly at the fraction: masked, accepted
    rows, cols = np.nonzero(~np.isnan(da.values[0]))
    da.values[0, rows[:k], cols[:k]] = -1.0
    assert np.isnan(conform(da, region).values[0, rows[:k], cols[:k]]).all()
    da.values[0, rows[k], cols[k]] = -1.0  # one more: refused
    with pytest.raises(InputFileError, match="physically impossible"):
        conform(da, region)


# ------------------------------------------------------ impossible times
def test_frames_from_the_future_or_the_distant_past_are_refused(monkeypatch) -> None:
    region = load_region(REGION)
    now = T0 + np.timedelta64(1, "h")
    monkeypatch.setattr(archive_mod, "utc_now", lambda: now)
    tolerance = np.timedelta64(int(region.ingest.future_tolerance_minutes * 60), "s")
    da = frames([0])
    da = da.assign_coords(time=[now + tolerance])  # exactly at the tolerance: accepted
    conform(da, region)
    with pytest.raises(InputFileError, match="in the future.*future_tolerance_minutes"):
        conform(da.assign_coords(time=[now + tolerance + np.timedelta64(1, "s")]), region)
    with pytest.raises(InputFileError, match="before the archive's earliest time"):
        conform(da.assign_coords(time=[np.datetime64("1970-01-01T00:00", "ns")]), region)
    conform(da.assign_coords(time=[np.datetime64("1990-01-01T00:00", "ns")]), region)  # exactly the earliest


# ------------------------------------------------------ dropping frames
def test_drop_removes_frames_and_keeps_the_rest(home: Path) -> None:
    archive = Archive.open(REGION, home=home)
    archive.append(frames([0, 1, 2, 3, 4, 5]))
    removed = archive.drop(T0 + 2 * STEP, T0 + 3 * STEP)
    assert removed == [T0 + 2 * STEP, T0 + 3 * STEP]
    reopened = Archive.open(REGION, home=home)
    assert list(((reopened.times - T0) // STEP).astype(int)) == [0, 1, 4, 5]
    da = reopened.read().load()
    for k in (0, 1, 4, 5):
        np.testing.assert_array_equal(da.sel(time=T0 + STEP * k).values, field(k))
    assert reopened.drop(T0 + 9 * STEP) == []  # nothing there: nothing done
    assert reopened.drop(T0 + 5 * STEP) == [T0 + 5 * STEP]  # the newest frame: nothing to rewrite
    reopened.append(frames([2]))  # and the archive keeps working
    assert list(((Archive.open(REGION, home=home).times - T0) // STEP).astype(int)) == [0, 1, 2, 4]


@pytest.mark.parametrize("step", ["journal", "resize", "write", "consolidate", "commit"])
def test_crash_while_dropping_leaves_all_or_nothing(home: Path, monkeypatch, step: str) -> None:
    Archive.open(REGION, home=home).append(frames([0, 1, 2, 3]))
    _crash_at(monkeypatch, step)
    with pytest.raises(Crash):
        Archive.open(REGION, home=home).drop(T0 + STEP)
    monkeypatch.setattr(archive_mod, "_fault_point", lambda name: None)
    reopened = Archive.open(REGION, home=home)
    expected = [0, 2, 3] if step == "commit" else [0, 1, 2, 3]
    assert list(((reopened.times - T0) // STEP).astype(int)) == expected
    da = reopened.read().load()
    for k in expected:
        np.testing.assert_array_equal(da.sel(time=T0 + STEP * k).values, field(k))
    assert not reopened._journal_path.exists()


def test_archive_drop_command(home: Path, capsys) -> None:
    from nowcast.cli import main

    Archive.open(REGION, home=home).append(frames([0, 1, 2]))
    t = np.datetime_as_string(T0 + STEP, unit="s") + "Z"
    assert main(["archive", "drop", "--region", REGION, "--time", t]) == 0
    assert "dropped 1 frame(s)" in capsys.readouterr().out
    assert len(Archive.open(REGION, home=home)) == 2
    assert main(["archive", "drop", "--region", REGION, "--time", "yesterday"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# ------------------------------------------------------ machine faults vs bad files
def test_machine_faults_are_told_apart_from_bad_files() -> None:
    assert is_environment_fault(OSError(errno.ENOSPC, "No space left on device"))
    assert is_environment_fault(OSError(errno.EACCES, "Permission denied"))
    wrapped = RuntimeError("zarr write failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert is_environment_fault(wrapped)
    assert not is_environment_fault(OSError(errno.ENOENT, "No such file"))
    assert not is_environment_fault(ValueError("truncated HDF5"))
    assert not is_environment_fault(InputFileError("x.h5", "corrupt"))


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_defers_good_files_and_quarantines_none(home: Path, odim_moving, monkeypatch) -> None:
    """run-once with the disk full: every good file stays in incoming; the next run ingests them all."""
    from nowcast.schedule import run_once

    region = load_region(REGION)
    incoming = home / "incoming"
    incoming.mkdir()
    for f in odim_moving(3):
        (incoming / f.name).write_bytes(f.read_bytes())
    (incoming / "junk.h5").write_bytes(b"not an HDF5 file")
    names = sorted(p.name for p in incoming.iterdir() if p.is_file())
    monkeypatch.setattr(archive_mod.Archive, "_create", _disk_full)
    with pytest.raises(EnvironmentFault, match="left in place"):
        run_once(region, incoming, home=home, render=False, settle_seconds=0)
    rejected = incoming / "rejected"
    good_left = sorted(p.name for p in incoming.iterdir() if p.is_file())
    assert set(good_left) >= set(names) - {"junk.h5"}  # no good file moved away
    assert not rejected.exists() or all(n == "junk.h5" or n.startswith("junk.h5") for n in (p.name for p in rejected.iterdir()))
    monkeypatch.undo()
    report = run_once(region, incoming, home=home, render=False, settle_seconds=0)
    assert sorted(report.ingested) == sorted(set(names) - {"junk.h5"})
    assert len(Archive.open(REGION, home=home)) == 3
    assert (incoming / "rejected" / "junk.h5").exists()
    assert "not a recognised radar or satellite file" in (incoming / "rejected" / "junk.h5.reason.txt").read_text()


def test_one_unreadable_file_does_not_stop_the_batch(home: Path, odim_moving, tmp_path: Path, monkeypatch) -> None:
    """A reader crashing with an unexpected exception skips that file only; the summary says partial."""
    from nowcast.io import readers
    from pipelines.ingest import ingest_files

    files = odim_moving(4)
    real = readers.read_file

    def flaky(path, reader=None):
        if Path(path) == files[1]:
            raise ZeroDivisionError("reader bug on this file")
        return real(path, reader=reader)

    monkeypatch.setattr(readers, "read_file", flaky)
    report = ingest_files(files, REGION, home=home, scheduler="synchronous", progress=False)
    assert len(report.ingested) == 3 and [s.path for s in report.skipped] == [files[1]]
    assert "reader failed: ZeroDivisionError" in report.skipped[0].reason


def test_ingest_exit_codes_partial_and_machine_fault(home: Path, odim_moving, tmp_path: Path, monkeypatch, capsys) -> None:
    from nowcast.cli import main

    good = [str(p) for p in odim_moving(2)]
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"junk")
    args = ["ingest", "--region", REGION, "--scheduler", "synchronous", "--no-progress", "-q"]
    assert main([*args, str(junk)]) == 2  # nothing went in: bad input
    assert main([*args, str(junk), *good]) == 3  # partial
    capsys.readouterr()
    monkeypatch.setattr(archive_mod.Archive, "_write_tail", _disk_full)
    more = [str(p) for p in odim_moving(3)][2:]
    assert main([*args, *more]) == 4
    err = capsys.readouterr().err
    assert "No space left on device" in err and err.count("\n") == 1


def test_local_cluster_listens_on_loopback_only(home: Path, odim_moving, monkeypatch) -> None:
    """No dashboard on 0.0.0.0:8787: every listening socket of the ingest cluster is on 127.0.0.1, port chosen free."""
    import distributed

    from pipelines.ingest import ingest_files

    seen = []
    real = distributed.LocalCluster

    class Recording(real):
        def close(self, *args, **kwargs):
            servers = [self.scheduler.http_server] + [w.http_server for w in self.workers.values()]
            seen.extend(sock.getsockname()[:2] for srv in servers for sock in srv._sockets.values())
            return super().close(*args, **kwargs)

    monkeypatch.setattr(distributed, "LocalCluster", Recording)
    report = ingest_files(odim_moving(2), REGION, home=home, scheduler="threads", progress=False)
    assert len(report.ingested) == 2
    assert seen and all(host == "127.0.0.1" for host, _ in seen), seen
    assert all(port != 8787 for _, port in seen)


@pytest.mark.parametrize("policy", ["first", "newest", "reject"])
@pytest.mark.parametrize("same_batch", [True, False])
def test_duplicate_time_policy(home: Path, odim_stream, policy: str, same_batch: bool) -> None:
    """Two files, one time, different fields: the region's policy decides, and the conflict is reported."""
    from pipelines.ingest import ingest_files

    region = load_region("swiss")
    region = region.model_copy(update={"ingest": region.ingest.model_copy(update={"duplicates": policy})})
    real, impostor = odim_stream(1)[0], odim_stream(1, scale=2.0, folder="doubled")[0]
    if same_batch:
        report = ingest_files([real, impostor], region, home=home, scheduler="synchronous", progress=False)
    else:
        ingest_files([real], region, home=home, scheduler="synchronous", progress=False)
        report = ingest_files([impostor], region, home=home, scheduler="synchronous", progress=False)
    if policy == "newest" and not same_batch:  # the newer file replaced the archived one: reported as replaced
        assert not report.skipped and len(report.result.replaced) == 1
    else:
        assert len(report.skipped) == 1 and f"ingest.duplicates: {policy}" in report.skipped[0].reason
    archive = Archive.open(region, home=home, create=False)
    if policy == "reject":
        assert len(archive) == 0
        return
    stored = archive.read().load().values[0]
    expected_max = 13.43 * (2.0 if policy == "newest" else 1.0)
    assert np.nanmax(stored) == pytest.approx(expected_max, rel=1e-4)
    if same_batch:
        assert report.skipped[0].path == (real if policy == "newest" else impostor)
