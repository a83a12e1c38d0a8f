"""``python -m nowcast ...``: the same CLI as the ``nowcast`` console script."""

import sys

from nowcast.cli import main

sys.exit(main())
