"""Every CLI failure is one line on stderr and a documented exit code (docs/operations.md).

The slips run in-process through ``nowcast.cli.main`` and, for a few, through
a real ``python -m nowcast`` process (where typer's own exception handling,
``sys.excepthook`` and the interpreter's final flush also come into play).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nowcast.cli import main
from nowcast.errors import (
    EXIT_BUG,
    EXIT_ENVIRONMENT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    EnvironmentFault,
)

REGION = "swiss-south"

# (argv, exit code, words on stderr, words on stdout)
SLIPS = [
    pytest.param(["forcast"], EXIT_USAGE, ["No such command 'forcast'", "Did you mean 'forecast'?"], [], id="typo"),
    pytest.param(["forecast"], EXIT_USAGE, ["Missing option", "--region", "nowcast forecast --help"], [],
                 id="missing-region"),
    pytest.param(["forecast", "--region", REGION, "--leads", "0"], EXIT_USAGE, ["--leads", "greater than or equal to 1"],
                 [], id="leads-0"),
    pytest.param(["forecast", "--bogus"], EXIT_USAGE, ["No such option", "--bogus"], [], id="unknown-option"),
    pytest.param([], EXIT_USAGE, ["missing command", "nowcast COMMAND --help"], ["Usage", "forecast"], id="bare"),
    pytest.param(["archive"], EXIT_USAGE, ["missing command", "nowcast archive COMMAND --help"], ["info"],
                 id="bare-group"),
    pytest.param(["--version"], EXIT_OK, [], ["nowcast "], id="version"),
    pytest.param(["--help"], EXIT_OK, [], ["Usage", "forecast", "--version"], id="help"),
    pytest.param(["forecast", "--help"], EXIT_OK, [], ["--region"], id="command-help"),
    pytest.param(["forecast", "--region", REGION], EXIT_USAGE, ["no archive for region", "nowcast ingest"], [],
                 id="no-archive"),
    pytest.param(["ingest", "--region", REGION, "--reader", "foo", "x.h5"], EXIT_USAGE, ["'foo'", "odim_h5"], [],
                 id="unknown-reader"),
    pytest.param(["render", "fc.nc", "--region", REGION, "--out", "x.bmp"], EXIT_USAGE, ["x.bmp", "'.bmp'", ".png",
                 ".gif", ".mp4"], [], id="render-bmp"),
    pytest.param(["render", "fc.nc", "--format", "png", "--out", "x.gif"], EXIT_USAGE, ["x.gif", "--format png"], [],
                 id="render-format-mismatch"),
    pytest.param(["pretrain", "--promote", "missing.pt", "--only", "swiss-south-tmu"], EXIT_USAGE,
                 ["missing.pt", "checkpoint file does not exist"], [], id="promote-missing"),
    pytest.param(["pretrain", "--promote", "x.h5", "--only", "swiss-south-tmu"], EXIT_USAGE,
                 ["x.h5", "not a readable nowcast checkpoint"], [], id="promote-not-a-checkpoint"),
    pytest.param(["pretrain", "--promote", "x.h5"], EXIT_USAGE, ["--promote needs exactly one model name in --only"], [],
                 id="promote-which-model"),
]


def _check(code: int, out: str, err: str, expected: int, err_words: list[str], out_words: list[str]) -> None:
    lines = err.splitlines()
    assert "Traceback" not in err, err
    if expected == EXIT_OK:
        assert err == "", err
    else:
        assert len(lines) == 1 and err.endswith("\n"), err
        assert lines[0].startswith("nowcast: error: "), err
    for word in err_words:
        assert word in err, (word, err)
    for word in out_words:
        assert word in out, (word, out)
    assert code == expected, (code, err)


@pytest.fixture()
def workdir(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated home and a working directory holding a (bogus) radar file ``x.h5``."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "x.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.chdir(work)
    return work


@pytest.fixture(autouse=True)
def restore_logging():
    """``main`` reconfigures the root logger (bound to pytest's capture): put it back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize(("argv", "expected", "err_words", "out_words"), SLIPS)
def test_slip_is_one_line_and_documented_exit_code(workdir: Path, capsys, argv, expected, err_words, out_words):
    code = main(argv)
    captured = capsys.readouterr()
    _check(code, captured.out, captured.err, expected, err_words, out_words)


def _nowcast(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "nowcast", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, **kwargs)


@pytest.mark.parametrize(
    ("argv", "expected", "err_words", "out_words"),
    [p for p in SLIPS if p.id in ("typo", "unknown-option", "bare", "version", "leads-0", "render-bmp")],
)
def test_slip_in_a_real_process(workdir: Path, argv, expected, err_words, out_words):
    proc = _nowcast(argv, workdir)
    _check(proc.returncode, proc.stdout, proc.stderr, expected, err_words, out_words)


def test_version_matches_the_package(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"nowcast {version('nowcast')}\n"


# --- failures inside a command -----------------------------------------------------


def _forecast_raises(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    import nowcast.forecast

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(nowcast.forecast, "run_forecast", boom)


def test_internal_error_is_one_line_exit_1(home: Path, monkeypatch, capsys):
    _forecast_raises(monkeypatch, ZeroDivisionError("division by zero"))
    assert main(["forecast", "--region", REGION]) == EXIT_BUG
    err = capsys.readouterr().err
    assert err == "nowcast: internal error: ZeroDivisionError: division by zero (run with -v for the traceback)\n"


@pytest.mark.parametrize("flag", ["-v", "--verbose", "-vv"])
def test_internal_error_with_verbose_shows_the_traceback(home: Path, monkeypatch, capsys, flag: str):
    _forecast_raises(monkeypatch, ZeroDivisionError("division by zero"))
    assert main(["forecast", "--region", REGION, flag]) == EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in boom" in err
    assert err.splitlines()[-1] == "nowcast: internal error: ZeroDivisionError: division by zero"


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device", "/x"),
        EnvironmentFault("/srv/nowcast/archives: read-only file system"),
        MemoryError(),
    ],
    ids=["enospc", "environment-fault", "memory"],
)
def test_machine_fault_is_one_line_exit_4(home: Path, monkeypatch, capsys, exc: BaseException):
    _forecast_raises(monkeypatch, exc)
    assert main(["forecast", "--region", REGION]) == EXIT_ENVIRONMENT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("nowcast: error: machine fault (not the input): ")
    if isinstance(exc, OSError):
        assert err == "nowcast: error: machine fault (not the input): [Errno 28] No space left on device: '/x'\n"


def test_partial_run_is_one_line_exit_3(home: Path, monkeypatch, capsys):
    from nowcast.errors import EXIT_PARTIAL, PartialRunError

    _forecast_raises(monkeypatch, PartialRunError("region swiss-south: 1 file(s) skipped"))
    assert main(["forecast", "--region", REGION]) == EXIT_PARTIAL
    assert capsys.readouterr().err == "nowcast: error: region swiss-south: 1 file(s) skipped\n"


def test_wrapped_disk_full_is_exit_4(home: Path, monkeypatch, capsys):
    """h5py/zarr wrap the OSError: the chain is followed and the errno shown."""
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/srv/a.zarr/c/0")
        except OSError as cause:
            raise RuntimeError("cannot write chunk") from cause
    except RuntimeError as wrapped:
        exc = wrapped
    _forecast_raises(monkeypatch, exc)
    assert main(["forecast", "--region", REGION]) == EXIT_ENVIRONMENT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write chunk" in err and "[Errno 28]" in err


def test_interrupt_is_one_line_exit_130(home: Path, monkeypatch, capsys):
    _forecast_raises(monkeypatch, KeyboardInterrupt())
    assert main(["forecast", "--region", REGION]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "nowcast: interrupted\n"


def test_closed_pipe_exits_quietly(workdir: Path):
    """``nowcast --help | head -0``: no traceback, no "Exception ignored", exit 141 (128 + SIGPIPE)."""
    proc = subprocess.Popen([sys.executable, "-m", "nowcast", "--help"], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader goes away before nowcast writes
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 141 and err == "", err


# --- log format ---------------------------------------------------------------------


def test_log_lines_off_a_terminal_do_not_wrap_and_carry_utc_timestamps(capsys):
    from nowcast.logging_setup import configure_logging

    configure_logging(0)
    message = "rain " * 60  # 300 characters
    logging.getLogger("nowcast.ingest").info(message)
    logging.getLogger("distributed.scheduler").info("cluster chatter")  # third-party INFO stays quiet
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO nowcast\.ingest: " + re.escape(message), lines[0])


def test_log_timestamps_are_utc_whatever_the_machine_zone(capsys, monkeypatch):
    import time

    from nowcast.logging_setup import configure_logging

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        configure_logging(0)
        record = logging.LogRecord("nowcast", logging.INFO, __file__, 1, "epoch", None, None)
        record.created = 0.0
        logging.getLogger("nowcast").handle(record)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert capsys.readouterr().err == "1970-01-01T00:00:00Z INFO nowcast: epoch\n"


def test_terminal_keeps_rich():
    from rich.logging import RichHandler

    from nowcast.logging_setup import make_handler

    class Tty:
        def isatty(self) -> bool:
            return True

        def write(self, text: str) -> int:
            return len(text)

        def flush(self) -> None:
            pass

    assert isinstance(make_handler(Tty()), RichHandler)
    assert not isinstance(make_handler(sys.stderr), RichHandler)  # pytest's capture is no terminal
