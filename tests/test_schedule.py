"""Scheduled runs: the watch loop, run-once, the region lock, bad files, retries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nowcast.cli import main
from nowcast.config import load_region
from nowcast.errors import LockError
from nowcast.schedule import REJECTED, STATE_FILE, region_lock, run_once, watch

REGION = "swiss-south"


@pytest.fixture()
def region():
    return load_region(REGION)


def _feed(src: Path, incoming: Path) -> Path:
    """Hand a file over the way docs/operations.md recommends: hidden copy, then rename."""
    incoming.mkdir(exist_ok=True)
    tmp = incoming / f".{src.name}.part"
    shutil.copyfile(src, tmp)
    return tmp.rename(incoming / src.name)


def _corrupt(path: Path) -> Path:
    """An HDF5-named file that is not HDF5 (a truncated transfer, say)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    return path


def _state(home: Path) -> dict:
    return json.loads((home / "runs" / REGION / STATE_FILE).read_text())


def test_watch_fed_file_by_file_forecasts_each_complete_window(home, tmp_path, region, odim_moving):
    files = odim_moving(6)
    incoming = tmp_path / "incoming"
    sequence = files[:2] + [_corrupt(tmp_path / "bad" / "RFO202402271001.h5")] + files[2:]
    reports = []
    for src in sequence:
        _feed(src, incoming)
        passes = watch(region, incoming, home=home, interval=0, render=False, max_passes=1,
                       settle_seconds=0, on_pass=reports.append)
        assert passes == 1
    # One forecast per frame that completes a 4-frame window: frames 4, 5 and 6.
    made = [f for r in reports for f in r.forecasts]
    assert [len(r.forecasts) for r in reports] == [0, 0, 0, 0, 1, 1, 1]
    assert len(made) == 3 and all(Path(f).exists() for f in made)
    # The bad file was moved aside and logged; the loop went on.
    assert reports[2].rejected == ["RFO202402271001.h5"]
    assert (incoming / REJECTED / "RFO202402271001.h5").is_file()
    assert not (incoming / "RFO202402271001.h5").exists()
    log_text = (home / "runs" / REGION / "runs.log").read_text()
    assert "RFO202402271001.h5" in log_text and "rejected" in log_text
    # A further pass with nothing new does nothing (each window forecast once).
    again = run_once(region, incoming, home=home, render=False, settle_seconds=0)
    assert not again.busy
    refs = [e["reference_time"] for e in _state(home)["forecasts"]]
    assert refs == ["2024-02-27T10:05:00Z", "2024-02-27T10:10:00Z", "2024-02-27T10:15:00Z"]


def test_keep_prunes_old_runs_and_renders_animations(home, tmp_path, region, odim_moving):
    incoming = tmp_path / "incoming"
    for src in odim_moving(4):
        _feed(src, incoming)
    report = run_once(region, incoming, home=home, keep=2, render=True, settle_seconds=0)
    assert len(report.forecasts) == 1 and len(report.animations) == 1
    anim = Path(report.animations[0])
    assert anim.is_file() and anim.stat().st_size > 0
    for src in odim_moving(7, folder="more")[4:]:
        _feed(src, incoming)
        run_once(region, incoming, home=home, keep=2, render=False, settle_seconds=0)
    kept = [e for e in _state(home)["forecasts"] if "forecast" in e]
    assert len(kept) == 2
    on_disk = sorted(p.name for p in (home / "forecasts" / REGION).iterdir())
    assert on_disk == sorted(Path(e["forecast"]).name for e in kept)
    assert not anim.exists()  # the pruned run's animation went with it


def test_failed_forecast_is_retried_once_and_does_not_block_the_next(home, tmp_path, region, odim_moving, monkeypatch):
    import nowcast.forecast

    real = nowcast.forecast.run_forecast
    calls: list[str] = []

    def flaky(region, home=None, time=None, **kwargs):
        calls.append(time)
        if time == "2024-02-27T10:05:00Z":
            raise RuntimeError("disk full")
        return real(region, home=home, time=time, **kwargs)

    monkeypatch.setattr(nowcast.forecast, "run_forecast", flaky)
    incoming = tmp_path / "incoming"
    files = odim_moving(5)
    for src in files[:4]:
        _feed(src, incoming)
    first = run_once(region, incoming, home=home, render=False, settle_seconds=0)
    assert first.failed_forecasts == ["2024-02-27T10:05:00Z"] and not first.forecasts
    assert calls == ["2024-02-27T10:05:00Z"] * 2  # retried exactly once
    _feed(files[4], incoming)
    second = run_once(region, incoming, home=home, render=False, settle_seconds=0)
    assert len(second.forecasts) == 1 and not second.failed_forecasts
    assert calls[2:] == ["2024-02-27T10:10:00Z"]  # the failed time is not retried forever


def test_lock_refuses_a_second_instance(home, tmp_path, region, capsys):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    with region_lock(REGION, home):
        with pytest.raises(LockError, match="already being processed by pid"):
            with region_lock(REGION, home):
                pass
        for argv in (["run-once", "--region", REGION], ["watch", "--region", REGION, "--incoming", str(incoming), "--max-passes", "1"]):
            assert main([*argv, "--home", str(home), "--no-render"]) == 2
            err = capsys.readouterr().err
            assert "already being processed" in err and str(home / "runs" / REGION / "lock") in err
    with region_lock(REGION, home):  # released again
        pass


def test_ctrl_c_stops_watch_cleanly(home, tmp_path, region, odim_moving, monkeypatch):
    import nowcast.schedule

    incoming = tmp_path / "incoming"
    for src in odim_moving(2):
        _feed(src, incoming)

    def interrupted(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(nowcast.schedule.time, "sleep", interrupted)
    passes = watch(region, incoming, home=home, interval=5, render=False, settle_seconds=0)
    assert passes == 1
    assert set(_state(home)["seen"]) == {f.name for f in incoming.glob("*.h5")}
    with region_lock(REGION, home):  # the lock was released
        pass


def test_file_still_being_written_waits_for_next_pass(home, tmp_path, region, odim_moving):
    incoming = tmp_path / "incoming"
    _feed(odim_moving(1)[0], incoming)
    report = run_once(region, incoming, home=home, render=False, settle_seconds=3600)
    assert not report.ingested
    report = run_once(region, incoming, home=home, render=False, settle_seconds=0)
    assert len(report.ingested) == 1


def test_run_once_cli_reports_and_exits_3_degraded_on_a_rejected_file(home, tmp_path, odim_moving, capsys):
    incoming = tmp_path / "incoming"
    for src in odim_moving(4):
        _feed(src, incoming)
    _corrupt(incoming / "RFO202402271100.h5")
    code = main(["run-once", "--region", REGION, "--incoming", str(incoming), "--home", str(home),
                 "--no-render", "--settle", "0", "-q"])
    out = capsys.readouterr().out
    assert code == 3, out  # degraded: the pass went on, but a file was rejected
    assert "4 ingested, 1 rejected" in out and "1 forecast(s)" in out
    code = main(["run-once", "--region", REGION, "--incoming", str(incoming), "--home", str(home),
                 "--no-render", "--settle", "0", "-q"])
    assert code == 0 and "0 ingested, 0 rejected" in capsys.readouterr().out
