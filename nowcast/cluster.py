"""dask clients for the pipelines that fan out (ingest, hindcast): one place that starts them safely.

Why one module: a LocalCluster is a network service. dask starts an HTTP
(dashboard) server on the scheduler and on every worker whatever
``dashboard_address`` says (``None`` means port 8787 on *all interfaces*,
measured), so every cluster nowcast starts binds them to the loopback
interface on a free port: nothing is exposed to the network and two runs at
once never fight over a port. Worker processes talk to the scheduler over
TCP on loopback; in-process clusters use ``inproc://``.

``scheduler`` values understood everywhere:

``"threads"``     a LocalCluster of one worker with one thread per core, in this process;
``"processes"``   a LocalCluster of single-threaded worker processes, one per core;
``"tcp://host:8786"`` (any other string)   an existing cluster;
a ``distributed.Client``   used as is, owned (and closed) by the caller.

Ctrl-C (issue #9: one ``nowcast: interrupted`` line, exit 130, nothing
half-written). A terminal sends SIGINT to the whole foreground process
group, worker processes included: each then died with its own
``KeyboardInterrupt`` traceback, and closing the cluster after the
interrupt logged nanny tracebacks, "still alive, killing" warnings and
cancelled-task warnings (measured: 19 to 72 stderr lines). So worker
processes are started with SIGINT ignored (:func:`_sigint_ignored`: an
ignored signal stays ignored across the spawn, and Python then installs no
``KeyboardInterrupt`` handler in them): only the command's own process sees
Ctrl-C, and it shuts the workers down. A cluster or client closed because of
an exception is closed with distributed's loggers silenced
(:func:`_distributed_silenced`): the exception is what the user is told about.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from nowcast.errors import NowcastError

log = logging.getLogger(__name__)

#: Where a LocalCluster listens (see the module docstring), by ``processes``.
LOCAL_CLUSTER_NETWORK: dict[bool, dict[str, str]] = {
    False: {"dashboard_address": "127.0.0.1:0", "worker_dashboard_address": "127.0.0.1:0"},
    True: {"dashboard_address": "127.0.0.1:0", "worker_dashboard_address": "127.0.0.1:0", "host": "127.0.0.1"},
}
#: How long to try reaching a ``--scheduler`` address.
CONNECT_TIMEOUT = "10s"


def n_cores() -> int:
    """CPU cores this process may use (its affinity mask, not the machine's count)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


@contextlib.contextmanager
def dask_client(scheduler: Any) -> Iterator[tuple[Any, str, bool]]:
    """Yield ``(client, description, same_process)`` for ``scheduler``; what is started here is closed on exit.

    ``same_process`` is True only for the in-process ``"threads"`` cluster,
    where results need no pickling (the ingest sends frames uncompressed then).

    Raises
    ------
    NowcastError
        An address that cannot be reached, in one line.
    """
    from distributed import Client, LocalCluster

    cluster = None
    same_process = False
    if scheduler in ("processes", "threads"):
        processes = scheduler == "processes"
        cores = n_cores()
        if processes:
            _quiet_resource_tracker()
        with _sigint_ignored(processes):
            cluster = LocalCluster(
                n_workers=cores if processes else 1,
                threads_per_worker=1 if processes else cores,
                processes=processes,
                **LOCAL_CLUSTER_NETWORK[processes],
                silence_logs=logging.WARNING,
            )
        try:
            client = Client(cluster)
        except BaseException:
            with _distributed_silenced():
                cluster.close()
            raise
        same_process = not processes
        description = (f"LocalCluster (processes: {cores} workers)" if processes
                       else f"LocalCluster (threads: 1 worker, {cores} threads)")
    elif isinstance(scheduler, str):
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            raise NowcastError(f"--scheduler {scheduler}: cannot connect to the dask scheduler ({exc})") from None
        description = f"dask scheduler {scheduler}"
    else:  # an existing distributed.Client, owned by the caller
        client = scheduler
        description = f"dask client {getattr(client, 'scheduler', None) and client.scheduler.address}"
    failed = True
    try:
        yield client, description, same_process
        failed = False
    finally:
        # Closed in every case; after an exception (Ctrl-C included) without distributed's shutdown chatter.
        with _distributed_silenced() if failed else contextlib.nullcontext():
            try:
                if failed and cluster is not None and not same_process:
                    _silence_workers(client)  # their stderr is ours: no "task cancelled" warnings from them either
                if client is not scheduler:
                    client.close()
            finally:
                if cluster is not None:
                    cluster.close()


@contextlib.contextmanager
def _sigint_ignored(enabled: bool = True) -> Iterator[None]:
    """Ignore SIGINT in this process while worker processes are spawned, so that they inherit it ignored.

    A disposition of "ignore" survives ``fork``/``exec`` (a handler does
    not), and a Python process that starts with SIGINT ignored keeps it so:
    the workers never raise ``KeyboardInterrupt``, and Ctrl-C in a terminal
    (sent to the whole process group) reaches only the command, which closes
    them. A Ctrl-C during these seconds of start-up is lost (press it again);
    outside the main thread, where signals cannot be changed, nothing is done.
    """
    import signal
    import threading

    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def _quiet_loggers() -> None:
    """Raise distributed's loggers above CRITICAL in this process for good (run on workers about to close)."""
    for name in [*list(logging.root.manager.loggerDict), *_SHUTDOWN_LOGGERS]:
        if any(name == root or name.startswith(root + ".") for root in _SHUTDOWN_LOGGERS):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _silence_workers(client: Any) -> None:
    """Silence the loggers of the local worker processes before they are closed; best effort, never raises.

    Workers closed while they run a task log each cancelled task as a
    warning, on the command's stderr. Run on their event loop, so a worker
    busy in a task still answers at once.
    """
    try:
        client.run(_quiet_loggers, on_error="ignore")
    except Exception:  # noqa: BLE001 - a cluster in trouble is closed anyway
        log.debug("could not silence the workers' loggers before closing them", exc_info=True)


def _quiet_resource_tracker() -> None:
    """Start Python's multiprocessing resource tracker with its leak warning filtered, unless it already runs.

    A worker still busy in a task 4 s after it was told to close (Ctrl-C
    during a hindcast window of several seconds) is killed by its nanny; the
    semaphore it held (numcodecs' blosc lock) is then removed by the
    resource tracker, a process of its own, which also prints "There appear
    to be N leaked semaphore objects to clean up" on the command's stderr
    after it has exited (measured: 2 lines in most interrupted hindcasts on a
    loaded machine). The clean-up is what we want, the warning is not. The
    tracker takes its warning filters from this process's ``-W`` options when
    it starts, so one is added for that moment only.
    """
    import sys
    from multiprocessing import resource_tracker

    option = "ignore:resource_tracker:UserWarning"
    sys.warnoptions.append(option)
    try:
        resource_tracker.ensure_running()  # a no-op when it runs already
    except Exception:  # noqa: BLE001 - only a warning is at stake
        log.debug("could not start the resource tracker", exc_info=True)
    finally:
        sys.warnoptions.remove(option)


#: Loggers silenced while a cluster is closed after an exception.
_SHUTDOWN_LOGGERS = ("distributed", "tornado", "asyncio")


@contextlib.contextmanager
def _distributed_silenced() -> Iterator[None]:
    """Silence distributed's (and its event loop's) loggers, restoring their levels afterwards.

    Closing a cluster whose work was just cancelled makes distributed log
    cancelled tasks, workers killed after a timeout and nanny tracebacks: all
    expected then, and none of it the user's business (the one-line error or
    ``interrupted`` is). Child loggers with a level of their own (dask's
    config sets several) are raised too.
    """
    names = [n for n in list(logging.root.manager.loggerDict)
             if any(n == root or n.startswith(root + ".") for root in _SHUTDOWN_LOGGERS)]
    loggers = [logging.getLogger(n) for n in {*names, *_SHUTDOWN_LOGGERS}]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
