"""Soak test (issue #9): a stream with junk, duplicates, kills and a full disk loses no frame.

``benchmarks/soak.py`` feeds a stream of ODIM composites, junk files and
duplicates into an incoming directory and runs ``nowcast run-once`` passes as
child processes, some SIGKILLed inside an archive write and some with the
disk full (ENOSPC simulated at the archive write), then compares the archive
with a clean ingest of the good files. The short version runs in CI; the
300-frame one only with ``pytest -m soak`` (it is also marked ``slow``, so
the default ``-m 'not slow'`` never selects it).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).parents[1] / "benchmarks" / "soak.py"


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("nowcast_bench_soak", SOAK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _check(result: dict, n_frames: int) -> None:
    files = result["files"]
    assert result["frames_lost"] == 0, result["frames_lost_times"]
    assert not result["extra_frames"]
    assert result["good_files_rejected"] == [] and result["good_files_not_ingested"] == []
    # every junk and every conflicting duplicate in rejected/, each with a (non-empty) reason file
    assert result["junk_rejected"] == files["junk"] > 0, result["junk_not_rejected"]
    assert result["conflicts_rejected"] == files["conflicting_duplicates"] > 0, result["conflicts_not_rejected"]
    assert result["conflict_reasons_ok"], "a conflicting duplicate was rejected for another reason than ingest.duplicates"
    assert result["rejected_without_reason"] == [] and result["unexpected_rejected"] == []
    # the archive equals a clean ingest of the good files, frame by frame
    assert result["clean_ingest_frames"] == result["frames_archived"] == n_frames
    assert result["frames_differing_from_clean_ingest"] == 0, result["differing_times"]
    assert result["archive_sorted_unique"] and result["identical_neighbour_frames"] == 0
    assert result["debris"] == [] and result["unexpected_exits"] == []
    assert result["ok"]


def test_short_soak_loses_no_frame(soak, tmp_path: Path) -> None:
    """24 frames, 4 junk files, 3 exact copies, 3 conflicting duplicates, 2 late
    frames; 2 passes SIGKILLed inside an archive write, 1 with the disk full."""
    result = soak.run_soak(tmp_path / "soak", n_frames=24, seed=0, kill_every=2, disk_full_every=3, junk_every=6,
                           duplicate_every=8, late_every=12, chunk=6)
    _check(result, 24)
    faults = result["faults"]
    assert faults["kills"] == faults["kills_scheduled"] >= 2, result["passes_detail"]
    assert faults["disk_full"] == faults["disk_full_scheduled"] >= 1, result["passes_detail"]
    assert sum(result["passes_recovering"].values()) >= 1, "no pass had to recover an interrupted write"
    assert set(result["files"]["junk_by_kind"]) == set(soak.JUNK_KINDS)


@pytest.mark.slow
@pytest.mark.soak
def test_full_soak_loses_no_frame(soak, tmp_path: Path, request) -> None:
    """The bounded soak of docs/benchmarks.md: 300 frames (several minutes)."""
    if "soak" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the 300-frame soak runs only with -m soak")
    result = soak.run_soak(tmp_path / "soak", n_frames=300, seed=0)
    _check(result, 300)
    assert result["faults"]["kills"] >= 10 and result["faults"]["disk_full"] >= 5, result["faults"]
