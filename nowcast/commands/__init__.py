"""CLI commands, one module each; see :mod:`nowcast.cli`."""
