"""The netCDF forecast product is CF-1.8 clean in the IOOS compliance-checker.

The checker (``pip install compliance-checker``, in the ``test`` extra) runs
its ``cf:1.8`` suite on products written by :func:`write_forecast`; a product
must have no failed check of high priority (errors) or medium priority
(warnings). Grids: the shipped swiss-south (oblique Mercator, a mapping the
checker gets wrong unless helped), a LAEA grid and a geographic one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nowcast.config import load_region
from nowcast.grid import RegionGrid
from nowcast.products import make_forecast_dataset, write_forecast

pytest.importorskip("compliance_checker", reason="pip install compliance-checker (in nowcast[test])")
pytestmark = pytest.mark.filterwarnings("ignore:The ioos_sos checker is deprecated:DeprecationWarning")

INPUTS = ["2024-02-27T09:50:00Z", "2024-02-27T09:55:00Z", "2024-02-27T10:00:00Z", "2024-02-27T10:05:00Z"]


def _check(path: Path, tmp_path: Path) -> dict:
    """The checker's ``cf:1.8`` JSON report on ``path``."""
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite.load_all_available_checkers()
    report = tmp_path / "cf.json"
    ComplianceChecker.run_checker(str(path), ["cf:1.8"], verbose=0, criteria="normal",
                                  output_filename=str(report), output_format="json")
    return json.loads(report.read_text())["cf:1.8"]


def _failures(result: dict, priority: str) -> list[str]:
    return [f"{item['name']}: {'; '.join(item['msgs'])}"
            for item in result[f"{priority}_priorities"] if item["value"][0] < item["value"][1]]


def _grids() -> dict[str, RegionGrid]:
    return {
        "swiss-south": load_region("swiss-south").grid,
        "laea": RegionGrid.from_extent("EPSG:3035", (4_000_000, 2_500_000, 4_040_000, 2_530_000), 1000.0, "laea"),
        "lonlat": RegionGrid.from_extent("EPSG:4326", (5.0, 45.0, 6.0, 45.5), 0.02, "lonlat"),
    }


@pytest.mark.parametrize("name", list(_grids()))
def test_netcdf_product_has_no_cf_errors_or_warnings(name: str, tmp_path: Path) -> None:
    grid = _grids()[name]
    rng = np.random.default_rng(0)
    values = rng.gamma(0.4, 2.0, size=(3, *grid.shape)).astype(np.float32)
    values[:, :3, :4] = np.nan  # outside coverage: the fill value
    ds = make_forecast_dataset(
        values, grid, "2024-02-27T10:05:00Z", 5, region=name, method="tmu", input_times=INPUTS,
        model="tmu-test", checkpoint_sha256="ab" * 32, fallback_reason=None,
        model_attrs={"model_training_data": "simulated from real seeds"},
        data_origin="simulated from real seeds: a test",
    )
    path = write_forecast(ds, tmp_path / "fc.nc")
    result = _check(path, tmp_path)
    assert result["scored_points"] > 100  # the suite really ran
    assert _failures(result, "high") == [] and result["high_count"] == 0
    assert _failures(result, "medium") == [] and result["medium_count"] == 0
