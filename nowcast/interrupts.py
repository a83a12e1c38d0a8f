"""Ctrl-C that cannot be lost.

Why: Python's own SIGINT handler raises ``KeyboardInterrupt`` in whatever
frame runs when the signal arrives. If that frame is a finaliser (an object's
``__del__``, such as a ``distributed`` future released by the ingest driver),
Python prints "Exception ignored in ..." with a traceback and the command goes
on as if no Ctrl-C had come: seen in CI, an interrupted 64-file ingest ran to
its end and exited 0 (``tests/test_interrupt.py``). Here the handler also
remembers the interrupt: long loops call :func:`raise_if_pending` between
their commits, the CLI treats a command that returns after a remembered
interrupt as interrupted (one ``nowcast: interrupted`` line, exit 130), and
the traceback of the swallowed ``KeyboardInterrupt`` is not printed (any other
exception in a finaliser still is).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_pending = False


def _handler(signum: int, frame: object) -> None:
    """Remember the interrupt, then raise it as Python's default handler does."""
    global _pending
    _pending = True
    raise KeyboardInterrupt


def _unraisable(unraisable: sys.UnraisableHookArgs, previous=None) -> None:
    """Keep quiet about a Ctrl-C raised inside a finaliser (it is remembered); pass anything else on."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _pending:
        return
    (previous or sys.__unraisablehook__)(unraisable)


def pending() -> bool:
    """Whether a Ctrl-C came since :func:`installed` was entered (raised or swallowed)."""
    return _pending


def raise_if_pending() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C came and was swallowed: a safe point between commits."""
    if _pending:
        raise KeyboardInterrupt


@contextmanager
def installed() -> Iterator[None]:
    """Handle SIGINT with :func:`_handler` for the duration (main thread only; elsewhere a no-op).

    The previous handler is restored on exit, and the remembered interrupt is
    cleared on entry and on exit, so that neither a later in-process CLI call
    nor library code run after it inherits a Ctrl-C.
    """
    global _pending
    _pending = False
    try:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, _handler)
        previous_hook = sys.unraisablehook
        sys.unraisablehook = lambda unraisable: _unraisable(unraisable, previous_hook)
        try:
            yield
        finally:
            sys.unraisablehook = previous_hook
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    finally:
        _pending = False
