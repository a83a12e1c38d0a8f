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
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from nowcast.errors import NowcastError

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
        cluster = LocalCluster(
            n_workers=cores if processes else 1,
            threads_per_worker=1 if processes else cores,
            processes=processes,
            **LOCAL_CLUSTER_NETWORK[processes],
            silence_logs=logging.WARNING,
        )
        client = Client(cluster)
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
    try:
        yield client, description, same_process
    finally:
        if client is not scheduler:
            client.close()
        if cluster is not None:
            cluster.close()
