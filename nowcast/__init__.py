"""nowcast: short-term precipitation forecasting from weather radar.

The package follows one data flow: readers turn radar/satellite files into
georeferenced :class:`xarray.DataArray` frames, the archive stores them per
region in Zarr, forecasters (transferable-memory RNNs and optical-flow
baselines) turn the latest window into a forecast dataset, and verification
and rendering consume that dataset.
"""

import os as _os

# Py-ART prints a banner on import (it is only used for sample files); keep CLI output clean.
_os.environ.setdefault("PYART_QUIET", "1")
# OpenMP threads that spin while waiting make torch many times slower when
# another process shares the cores (measured: up to 400x on small kernels on
# a busy 2-core machine); passive waiting costs nothing measurable when idle.
# Must be set before torch is imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
