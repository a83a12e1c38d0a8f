"""``nowcast ingest`` and ``nowcast archive info`` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nowcast.cli import main


def test_ingest_then_info_json(home: Path, odim_stream, capsys: pytest.CaptureFixture) -> None:
    files = odim_stream(4)
    del files[2]  # a gap of one frame
    rc = main(["ingest", "--region", "swiss", "--scheduler", "synchronous", "--no-progress", *map(str, files)])
    out = capsys.readouterr().out
    assert rc == 0 and "3 frame(s) added" in out
    assert main(["archive", "info", "--region", "swiss", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_frames"] == 3 and info["variable"] == "rain_rate" and info["units"] == "mm h-1"
    assert info["gaps"] == [{"after": "2024-02-27T09:55:00Z", "before": "2024-02-27T10:05:00Z", "missing": 1}]
    assert [f["time"] for f in info["frames"]] == ["2024-02-27T09:50:00Z", "2024-02-27T09:55:00Z", "2024-02-27T10:05:00Z"]
    frame = info["frames"][0]
    assert frame["min"] == 0.0 and frame["max"] > 1.0 and 0 < frame["wet_fraction"] < 1


def test_info_table(home: Path, odim_stream, capsys: pytest.CaptureFixture) -> None:
    main(["ingest", "-r", "swiss", "--scheduler", "synchronous", "--no-progress", *map(str, odim_stream(2))])
    capsys.readouterr()
    assert main(["archive", "info", "--region", "swiss"]) == 0
    out = capsys.readouterr().out
    assert "2 frame(s)" in out and "2024-02-27T09:55:00Z" in out and "wet %" in out


def test_bad_file_exits_3_partial_after_ingesting_the_good_ones(home: Path, odim_stream, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "garbage.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    files = odim_stream(2)
    rc = main(["ingest", "--region", "swiss", "--scheduler", "synchronous", "--no-progress", str(files[0]), str(bad), str(files[1])])
    captured = capsys.readouterr()
    assert rc == 3  # partial: the good files went in
    assert "2 frame(s) added" in captured.out and "1 file(s) skipped" in captured.out
    assert f"{bad}:" in captured.err
    from nowcast.io.archive import Archive

    assert len(Archive.open("swiss").times) == 2


def test_conflicting_field_needs_overwrite(home: Path, odim_stream, capsys) -> None:
    main(["ingest", "-r", "swiss", "--scheduler", "synchronous", "--no-progress", *map(str, odim_stream(1))])
    doubled = odim_stream(1, scale=2.0, folder="doubled")
    assert main(["ingest", "-r", "swiss", "--scheduler", "synchronous", "--no-progress", str(doubled[0])]) == 2
    assert "2024-02-27T09:50:00Z" in capsys.readouterr().err
    assert main(["ingest", "-r", "swiss", "--overwrite", "--scheduler", "synchronous", "--no-progress", str(doubled[0])]) == 0
    assert "1 replaced" in capsys.readouterr().out
    main(["archive", "info", "-r", "swiss", "--json"])
    assert json.loads(capsys.readouterr().out)["frames"][0]["max"] == pytest.approx(2 * 13.43, rel=1e-4)


def test_info_without_archive_is_one_line_error(home: Path, capsys) -> None:
    assert main(["archive", "info", "--region", "swiss"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no archive for region 'swiss'" in err[0]


def test_unknown_region(home: Path, odim_stream, capsys) -> None:
    assert main(["ingest", "--region", "atlantis", *map(str, odim_stream(1))]) == 2
    assert "unknown region 'atlantis'" in capsys.readouterr().err


def test_home_option(tmp_path: Path, odim_stream, capsys) -> None:
    other = tmp_path / "elsewhere"
    assert main(["ingest", "-r", "swiss-south", "--home", str(other), "--no-progress", *map(str, odim_stream(1))]) == 0
    assert (other / "archives" / "swiss-south.zarr" / "zarr.json").is_file()
    capsys.readouterr()
    assert main(["archive", "info", "-r", "swiss-south", "--home", str(other), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_frames"] == 1
