"""Import pysteps without its import-time banner on stdout.

pysteps prints "Pysteps configuration file found at ..." with ``print`` when it
is first imported; stdout of ``nowcast`` commands is for their results (tables,
JSON), so the first import happens here with stdout captured. Import this
module before any ``pysteps`` submodule.
"""

from __future__ import annotations

import contextlib
import io

with contextlib.redirect_stdout(io.StringIO()):
    import pysteps  # noqa: F401
