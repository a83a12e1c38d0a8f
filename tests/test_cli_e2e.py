"""The operational chain end to end through ``nowcast.cli.main``, in a temporary home:
ingest real-format files -> forecast -> verify -> render."""

from __future__ import annotations

from pathlib import Path

import pytest
import numpy as np

from nowcast.cli import main

REGION = "swiss-south"


def test_ingest_forecast_verify_render(home: Path, tmp_path: Path, odim_moving, capsys) -> None:
    import xarray as xr

    # 4 input frames + 3 held back for verification: the real field moving 2 km/5 min east.
    files = odim_moving(7)
    assert main(["ingest", "--region", REGION, "--scheduler", "synchronous", "--no-progress", "-q",
                 *map(str, files)]) == 0
    assert "7 frame(s) added" in capsys.readouterr().out

    fc_path = tmp_path / "out" / "forecast.nc"
    code = main(["forecast", "--region", REGION, "--time", "2024-02-27T10:05Z", "--leads", "3",
                 "--method", "tmu", "--out", str(fc_path), "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    # The shipped TMU forecaster (the region's model), no fallback.
    assert "tmu forecast for swiss-south from 2024-02-27T10:05:00Z" in out and str(fc_path) in out
    shipped = (Path(__file__).resolve().parent.parent / "models" / "zoo" / "SHA256SUMS").read_text()
    with xr.open_dataset(fc_path) as ds:  # plain xarray, no nowcast code
        assert ds["rain_rate"].shape == (3, 128, 128)
        assert ds.attrs["method"] == "tmu" and ds.attrs["model"] == "swiss-south-tmu"
        assert "fallback_reason" not in ds.attrs
        assert f"{ds.attrs['checkpoint_sha256']}  swiss-south-tmu.pt" in shipped
        # the product says how the model compares with extrapolation, and what it was trained on
        assert "vs pysteps extrapolation" in ds.attrs["model_heldout_skill"]
        assert ds.attrs["model_study_skill"].startswith("fresh test sets (seed")  # the study the default follows
        assert ds.attrs["model_trend"].startswith(("added where", "not added: "))  # what this forecast did with it
        assert "simulated from real seeds" in ds.attrs["model_training_data"]
        assert str(ds["time"].values[-1]).startswith("2024-02-27T10:20")
        assert np.nanmax(ds["rain_rate"].values) > 0.1  # it rains in the forecast

    code = main(["verify", str(fc_path), "--region", REGION, "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "csi" in out.lower()

    anim = tmp_path / "out" / "forecast.gif"
    code = main(["render", str(fc_path), "--observed", "--out", str(anim), "-q"])
    assert code == 0, capsys.readouterr()
    assert anim.is_file() and anim.read_bytes()[:6] in (b"GIF89a", b"GIF87a")


def test_forecast_without_archive_is_one_line_exit_2(home: Path, capsys) -> None:
    assert main(["forecast", "--region", REGION]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nowcast: error: ") and "nowcast ingest" in err and err.count("\n") == 1


def test_unknown_method_is_one_line_exit_2(home: Path, odim_moving, capsys) -> None:
    main(["ingest", "--region", REGION, "--scheduler", "synchronous", "--no-progress", "-q", *map(str, odim_moving(4))])
    capsys.readouterr()
    assert main(["forecast", "--region", REGION, "--method", "crystal-ball"]) == 2
    err = capsys.readouterr().err
    assert "crystal-ball" in err and "persistence" in err and err.count("\n") == 1


@pytest.mark.parametrize(("flag", "value", "words"), [("--precision", "fp16", "auto, bf16, fp32"),
                                                       ("--device", "tpu", "auto, cpu, cuda")])
def test_bad_precision_or_device_is_one_line_exit_2(home: Path, flag: str, value: str, words: str, capsys) -> None:
    assert main(["forecast", "--region", REGION, flag, value]) == 2
    err = capsys.readouterr().err
    assert value in err and words in err and err.count("\n") == 1


def test_forecast_product_says_which_precision_the_model_ran_in(home: Path, odim_moving, tmp_path: Path, capsys) -> None:
    import xarray as xr

    main(["ingest", "--region", REGION, "--scheduler", "synchronous", "--no-progress", "-q", *map(str, odim_moving(4))])
    out = tmp_path / "f.zarr"
    assert main(["forecast", "--region", REGION, "--method", "tmu", "--precision", "fp32", "--leads", "2",
                 "--out", str(out), "-q"]) == 0
    with xr.open_zarr(out) as ds:
        assert ds.attrs["model_precision"] == "fp32" and ds.attrs["model_device"] == "cpu"
