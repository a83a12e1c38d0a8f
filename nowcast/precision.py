"""Numerical precision of the networks: bf16 autocast where the hardware has bf16 units, fp32 elsewhere.

Why: the forecaster's cost is its convolutions, and on a CPU with AVX-512
bf16 (or AMX) a bf16 convolution runs ~2.5x faster than an fp32 one (measured
in ``benchmarks/model_speed.py``). ``torch.autocast`` runs exactly the
convolutions in bf16 and keeps everything that needs the range or the
precision in fp32: the gate normalisation (``group_norm`` is on autocast's
fp32 list), the LSTM memory ``c`` (its update multiplies fp32 gates), the
residual sum onto the analysis frame, the Lagrangian transform and
advection (numpy, outside the network), the loss and its reduction, and
the weights and optimizer state, which stay fp32 ("master weights"; only
their bf16 copies enter the convolutions).

Choices (config ``training.precision``, CLI ``--precision``):

``auto``
    bf16 where the device has bf16 units (CPU: ``avx512_bf16`` or AMX; CUDA:
    :func:`torch.cuda.is_bf16_supported`) **and** they are faster there,
    fp32 elsewhere. Having the units is not enough: on an Intel Xeon with
    AVX-512 BF16 but no AMX (Sapphire Rapids as virtualised here) oneDNN's
    bf16 convolution measured 1.5x *slower* than fp32 (9.6 vs 6.4 ms for the
    bottom layer's 8x48x16x16 -> 192, 5x5), where an AMD Zen 4 core runs it
    ~2.5x faster; on a GPU a network this small is bound by kernel launches
    and autocast's casts make bf16 slower. So ``auto`` times that
    convolution once per process and device both ways (~0.1 s) and takes
    bf16 only if it is at least :data:`MIN_SPEEDUP` times faster.
``bf16``
    bf16 autocast; refused with a clear error where unsupported (emulated
    bf16 would be slower than fp32, which is never what a user wants).
``fp32``
    No autocast: bit-for-bit the historical behaviour.

What changes, measured on the held-out sets (docs/benchmarks.md): forecasts
differ from fp32 by well under a dB of rain rate where it rains, and CSI/FSS
per lead agree within the stated tolerance.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Literal

from nowcast.errors import ConfigError

Precision = Literal["auto", "bf16", "fp32"]
#: Precision names accepted by configs and the CLI.
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")


@functools.lru_cache(maxsize=None)
def _cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX tiles)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except Exception:  # noqa: BLE001 - a probe that fails means "unknown": not supported
                continue
    return False


#: bf16 must beat fp32 by this factor on the probe convolution for ``auto`` to choose it.
MIN_SPEEDUP = 1.2


def _kind(device: str) -> str:
    import torch

    return torch.device(device).type


@functools.lru_cache(maxsize=None)
def bf16_speedup(device: str = "cpu") -> float:
    """fp32 time / bf16-autocast time of the bottom layer's gate convolution on ``device`` (0 if no bf16 units).

    Why a measurement and not a rule: having bf16 units is not enough. On a
    CPU without AMX oneDNN's bf16 convolution can be slower than fp32, and on
    a GPU a network this small is bound by kernel launches, so autocast's
    extra cast kernels make bf16 *slower* (this probe: 0.65x on an H200,
    docs/benchmarks.md). The probe runs the convolution as training runs it:
    fp32 tensors, once plain and once under ``torch.autocast`` (casts
    included). The two are timed alternately, best of 3 each, so a busy
    machine slows both alike; on CUDA each timing is a batch of launches
    between synchronisations. CPU timings use one thread.
    """
    if not bf16_supported(device):
        return 0.0
    import time

    import torch

    kind = _kind(device)
    cuda = kind == "cuda"
    calls = 50 if cuda else 1
    threads = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand((8, 48, 16, 16), generator=gen).to(device)
        w = (torch.rand((192, 48, 5, 5), generator=gen) - 0.5).to(device)

        def run(precision: str) -> float:
            context = (torch.autocast(device_type=kind, dtype=torch.bfloat16) if precision == "bf16"
                       else contextlib.nullcontext())
            if cuda:
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            with context:
                for _ in range(calls):
                    torch.nn.functional.conv2d(x, w, padding=2)
            if cuda:
                torch.cuda.synchronize(device)
            return time.perf_counter() - t0

        best = {"fp32": float("inf"), "bf16": float("inf")}
        with torch.no_grad():
            run("fp32"), run("bf16")  # warm-up: kernel selection, caches
            for _ in range(3):
                for name, fastest in best.items():
                    best[name] = min(fastest, run(name))
    finally:
        torch.set_num_threads(threads)
    return best["fp32"] / best["bf16"]


def bf16_supported(device: str = "cpu") -> bool:
    """Whether ``device`` runs bf16 natively (not emulated)."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind == "cpu":
        return _cpu_has_bf16()
    return False


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """``auto`` -> ``bf16`` or ``fp32`` for ``device``; ``bf16`` where unsupported is a :class:`ConfigError`.

    Raises
    ------
    ConfigError
        An unknown name, or ``bf16`` asked on a device without bf16 units.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return "fp32"
    supported = bf16_supported(device)
    if precision == "bf16":
        if not supported:
            raise ConfigError(f"precision 'bf16': device {device!r} has no bf16 units (use 'auto' or 'fp32')")
        return "bf16"
    if not supported:
        return "fp32"
    return "bf16" if bf16_speedup(str(device)) >= MIN_SPEEDUP else "fp32"


@contextlib.contextmanager
def autocast(precision: str, device: str = "cpu") -> Iterator[str]:
    """Run the enclosed network code in ``precision`` (resolved); yields the resolved name."""
    import torch

    resolved = resolve_precision(precision, device)
    if resolved == "fp32":
        yield resolved
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
        yield resolved


#: Device names accepted by the CLI (``auto``: CUDA when present, else CPU).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``; ``cuda`` without one is a :class:`ConfigError`."""
    import torch

    name = str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: no CUDA device is visible to torch (use 'cpu' or 'auto')")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"device {name!r}: expected one of {', '.join(DEVICES)}")
    return name


def check_choice(device: str = "cpu", precision: str = "auto") -> None:
    """Validate a command's ``--device``/``--precision`` before any work (one-line :class:`ConfigError`)."""
    resolve_precision(precision, resolve_device(device))
