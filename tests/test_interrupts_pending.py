"""A Ctrl-C that a finaliser swallows is not lost (nowcast.interrupts)."""

from __future__ import annotations

import gc
import signal
import sys

import pytest

from nowcast import interrupts

# the KeyboardInterrupt raised inside __del__ is what these tests make happen
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


class _ReleasedInDel:
    """Sends itself SIGINT while being finalised, as a released dask future can be interrupted."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)


def test_an_interrupt_swallowed_in_a_finaliser_is_remembered():
    with interrupts.installed():
        assert not interrupts.pending()
        obj = _ReleasedInDel()
        del obj  # KeyboardInterrupt raised in __del__: Python prints "Exception ignored" and goes on
        gc.collect()
        assert interrupts.pending()
        with pytest.raises(KeyboardInterrupt):
            interrupts.raise_if_pending()
    assert not interrupts.pending()  # cleared on exit: library calls after the CLI do not inherit it
    interrupts.raise_if_pending()
    assert signal.getsignal(signal.SIGINT) is not interrupts._handler  # the previous handler is back


def test_a_plain_interrupt_still_raises_where_it_arrives():
    with interrupts.installed(), pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_the_cli_reports_a_swallowed_interrupt_as_interrupted(monkeypatch, capsys):
    from nowcast import cli

    def command_whose_interrupt_is_swallowed(argv):
        obj = _ReleasedInDel()
        del obj
        gc.collect()
        return 0

    monkeypatch.setattr(cli, "_run", command_whose_interrupt_is_swallowed)
    assert cli.main(["demo"]) == 130
    assert capsys.readouterr().err.strip().endswith("nowcast: interrupted")
    monkeypatch.setattr(cli, "_run", lambda argv: 0)
    assert cli.main(["demo"]) == 0  # the next call does not inherit it


def test_the_swallowed_interrupt_is_not_reported_but_other_finaliser_errors_are(monkeypatch):
    class _Broken:
        def __del__(self) -> None:
            raise RuntimeError("finaliser bug")

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_type))
    hook = sys.unraisablehook
    with interrupts.installed():
        obj = _ReleasedInDel()
        del obj
        gc.collect()
        assert reported == []  # remembered instead of printed as "Exception ignored ... KeyboardInterrupt"
        broken = _Broken()
        del broken
        gc.collect()
    assert reported == [RuntimeError]  # anything else reaches the previous hook
    assert sys.unraisablehook is hook and not interrupts.pending()  # restored, and forgotten
