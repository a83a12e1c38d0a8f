"""Shared fixtures: an isolated NOWCAST_HOME and paths of real sample files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# pyart prints a banner on import; keep test output readable.
os.environ.setdefault("PYART_QUIET", "1")


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh NOWCAST_HOME so tests never touch ~/.nowcast."""
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setenv("NOWCAST_HOME", str(root))
    return root


@pytest.fixture(scope="session")
def odim_composite() -> Path:
    from nowcast.samples import sample_path

    return sample_path("meteoswiss_odim_composite")
