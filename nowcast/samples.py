"""Real sample files that ship in registry packages (see docs/data.md).

No network is ever used: the files come from ``pyart-mch`` (radar) and
``iris-sample-data`` (satellite), installed through the ``samples`` extra.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from nowcast.errors import NowcastError

#: name -> (package, path inside the package)
SAMPLES: dict[str, tuple[str, str]] = {
    "meteoswiss_odim_composite": ("pyart", "testing/data/RFO_example_h5_grid.h5"),
    "meteoswiss_metranet_rzc": ("pyart", "testing/data/RZC_example_metranet_grid.001"),
    "finland_odim_pvol": ("pyart", "testing/data/example_radar.polar.fikor.h5"),
    "nexrad_l3_reflectivity": ("pyart", "testing/data/example_nexrad_level3_msg19"),
    "nexrad_l3_precip_rate": ("pyart", "testing/data/example_nexrad_level3_msg176"),
    "eumetsat_ir_brightness": ("iris_sample_data", "sample_data/toa_brightness_stereographic.nc"),
}


def sample_path(name: str) -> Path:
    """Path of a named real sample file.

    Raises
    ------
    NowcastError
        If the name is unknown or the package carrying it is not installed
        (the message says which extra to install).
    """
    if name not in SAMPLES:
        raise NowcastError(f"unknown sample {name!r}; known: {', '.join(sorted(SAMPLES))}")
    package, rel = SAMPLES[name]
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise NowcastError(
            f"sample {name!r} needs the package {package!r}: pip install 'nowcast[samples]'"
        ) from None
    path = Path(str(root)) / rel
    if not path.is_file():
        raise NowcastError(f"sample {name!r}: {path} is missing from package {package!r}")
    return path
