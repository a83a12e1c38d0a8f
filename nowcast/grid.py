"""A region's grid: CRS, cell-centre coordinates and CF georeferencing.

Conventions (the archive's contract, shared by every reader and writer):

* dimensions ``(time, y, x)``; ``x`` ascending (west to east), ``y``
  *descending* (north to south) so that row 0 is the northern edge, as in
  ODIM composites and every image a forecaster looks at;
* ``x``/``y`` are cell centres in projection metres;
* a scalar ``spatial_ref`` coordinate carries the CF grid mapping
  (``pyproj.CRS.to_cf()`` plus ``crs_wkt``), and data variables point at it
  through their ``grid_mapping`` attribute.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
from pyproj import CRS
from pyproj.exceptions import CRSError

from nowcast.errors import GridError

if TYPE_CHECKING:
    from nowcast.config import Region

GRID_MAPPING_NAME = "spatial_ref"


def parse_crs(value: str | CRS, what: str = "grid") -> CRS:
    """Parse anything pyproj accepts, with a :class:`GridError` naming ``what``."""
    if isinstance(value, CRS):
        return value
    try:
        return CRS.from_user_input(value)
    except CRSError as exc:
        raise GridError(f"{what}: unknown projection {value!r} ({exc})") from None


def spatial_ref_coord(crs: CRS) -> xr.DataArray:
    """A scalar CF grid-mapping variable for ``crs``.

    The attributes follow CF 1.8 (``grid_mapping_name`` and friends from
    ``CRS.to_cf``) and also the ``crs_wkt``/``spatial_ref`` pair that GDAL,
    rioxarray and QGIS read.
    """
    with warnings.catch_warnings():
        # pyproj warns that the somerc/omerc "angle from rectified to skew grid"
        # has no CF name; the WKT we store alongside keeps it exactly.
        warnings.filterwarnings("ignore", message=".*angle from rectified to skew grid.*")
        attrs = dict(crs.to_cf())
    attrs.setdefault("crs_wkt", crs.to_wkt())
    attrs["spatial_ref"] = attrs["crs_wkt"]
    return xr.DataArray(np.int32(0), attrs=attrs)


def crs_of(obj: xr.DataArray | xr.Dataset) -> CRS:
    """Recover the CRS that a reader or the archive attached to ``obj``."""
    if GRID_MAPPING_NAME in obj.coords or GRID_MAPPING_NAME in getattr(obj, "data_vars", {}):
        attrs = obj[GRID_MAPPING_NAME].attrs
        wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
        if wkt:
            return CRS.from_wkt(wkt)
        return CRS.from_cf(attrs)
    raise GridError(f"{obj.name or 'dataset'}: no '{GRID_MAPPING_NAME}' grid mapping; cannot georeference")


@dataclass(frozen=True)
class RegionGrid:
    """A regular projected grid.

    Parameters
    ----------
    crs
        Projection of the grid.
    x, y
        Cell-centre coordinates in projection units; ``x`` ascending,
        ``y`` descending (north-up).
    name
        Region name, used in messages.
    """

    crs: CRS
    x: np.ndarray
    y: np.ndarray
    name: str = "grid"

    @classmethod
    def from_region(cls, region: "Region") -> "RegionGrid":
        """Build the grid of a validated :class:`~nowcast.config.Region`."""
        return cls.from_extent(parse_crs(region.crs, region.name), region.extent, region.resolution, region.name)

    @classmethod
    def from_extent(
        cls, crs: CRS | str, extent: tuple[float, float, float, float], resolution: float, name: str = "grid"
    ) -> "RegionGrid":
        """Grid from cell-edge extent ``(xmin, ymin, xmax, ymax)`` and cell size."""
        xmin, ymin, xmax, ymax = extent
        nx = int(round((xmax - xmin) / resolution))
        ny = int(round((ymax - ymin) / resolution))
        x = xmin + resolution * (np.arange(nx) + 0.5)
        y = ymax - resolution * (np.arange(ny) + 0.5)
        return cls(parse_crs(crs, name), x, y, name)

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return (self.y.size, self.x.size)

    @property
    def resolution(self) -> float:
        """Cell size along x (grids here are square-celled)."""
        return float(abs(self.x[1] - self.x[0])) if self.x.size > 1 else float("nan")

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """Cell-edge extent ``(xmin, ymin, xmax, ymax)``."""
        dx = abs(self.x[1] - self.x[0]) if self.x.size > 1 else 0.0
        dy = abs(self.y[1] - self.y[0]) if self.y.size > 1 else 0.0
        return (
            float(self.x.min() - dx / 2),
            float(self.y.min() - dy / 2),
            float(self.x.max() + dx / 2),
            float(self.y.max() + dy / 2),
        )

    @cached_property
    def signature(self) -> tuple:
        """Hashable identity of the grid, used as a regridding cache key."""
        return (
            self.crs.to_wkt(),
            self.x.size,
            float(self.x[0]),
            float(self.x[-1]),
            self.y.size,
            float(self.y[0]),
            float(self.y[-1]),
        )

    def coords(self) -> dict[str, xr.DataArray]:
        """CF coordinate variables for ``x``, ``y`` and ``spatial_ref``."""
        cf = self.crs.cs_to_cf()
        x_attrs = {"standard_name": "projection_x_coordinate", "long_name": "x coordinate of projection", "units": "m"}
        y_attrs = {"standard_name": "projection_y_coordinate", "long_name": "y coordinate of projection", "units": "m"}
        if self.crs.is_geographic:
            x_attrs = {"standard_name": "longitude", "units": "degrees_east"}
            y_attrs = {"standard_name": "latitude", "units": "degrees_north"}
        elif len(cf) == 2:
            x_attrs["units"] = cf[0].get("units", "m")
            y_attrs["units"] = cf[1].get("units", "m")
        return {
            "x": xr.DataArray(self.x, dims="x", attrs=x_attrs),
            "y": xr.DataArray(self.y, dims="y", attrs=y_attrs),
            GRID_MAPPING_NAME: spatial_ref_coord(self.crs),
        }

    def lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        """2-D longitude and latitude of cell centres (for maps and checks)."""
        from pyproj import Transformer

        xx, yy = np.meshgrid(self.x, self.y)
        tr = Transformer.from_crs(self.crs, CRS.from_epsg(4326), always_xy=True)
        lon, lat = tr.transform(xx, yy)
        return np.asarray(lon), np.asarray(lat)

    def index_of_lonlat(self, lon: float, lat: float) -> tuple[int, int]:
        """Row/column of the cell containing a geographic point.

        Raises
        ------
        GridError
            If the point falls outside the grid.
        """
        from pyproj import Transformer

        tr = Transformer.from_crs(CRS.from_epsg(4326), self.crs, always_xy=True)
        px, py = tr.transform(lon, lat)
        xmin, ymin, xmax, ymax = self.extent
        if not (xmin <= px < xmax and ymin < py <= ymax):
            raise GridError(f"{self.name}: point lon={lon}, lat={lat} lies outside the grid")
        col = int((px - xmin) // self.resolution)
        row = int((ymax - py) // abs(self.y[1] - self.y[0]))
        return row, col

    def empty(self, times: np.ndarray | None = None, name: str = "precipitation") -> xr.DataArray:
        """An all-NaN ``(time, y, x)`` float32 array on this grid."""
        times = np.asarray([] if times is None else times, dtype="datetime64[ns]")
        data = np.full((times.size, *self.shape), np.nan, dtype=np.float32)
        return xr.DataArray(data, dims=("time", "y", "x"), coords={"time": times, **self.coords()}, name=name)
