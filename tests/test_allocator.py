"""The CLI's malloc settings (nowcast.allocator): what is set, when it is left alone, and that the CLI applies it."""

from __future__ import annotations

import sys

import pytest

from nowcast import allocator


class Recorder:
    """A stand-in C library that records ``mallopt`` calls and answers like glibc (1 = accepted)."""

    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


def test_sets_the_three_glibc_parameters():
    libc = Recorder()
    assert allocator.keep_freed_memory({}, libc) is True
    # glibc <malloc.h>: M_TRIM_THRESHOLD -1, M_TOP_PAD -2, M_MMAP_THRESHOLD -3
    assert sorted(libc.calls) == [(-3, 32 << 20), (-2, 64 << 20), (-1, 256 << 20)]


def test_mmap_threshold_is_glibcs_largest_allowed():
    # glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 = 32 MiB on 64-bit; a larger value would be
    # refused and silently leave every array above 128 kB to mmap (the page faults this module exists to avoid)
    assert allocator.MMAP_THRESHOLD == 32 * 1024 * 1024


@pytest.mark.parametrize("value", ["0", "false", "OFF", " no "])
def test_opt_out_leaves_the_allocator_alone(value):
    libc = Recorder()
    assert allocator.keep_freed_memory({allocator.OPT_OUT: value}, libc) is False
    assert libc.calls == []


def test_opt_in_values_still_apply():
    libc = Recorder()
    assert allocator.keep_freed_memory({allocator.OPT_OUT: "1"}, libc) is True
    assert len(libc.calls) == 3


@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "0"}, {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"MALLOC_TOP_PAD_": "0"}, {"MALLOC_MMAP_MAX_": "0"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}])
def test_users_own_tuning_wins(env):
    libc = Recorder()
    assert allocator.keep_freed_memory(env, libc) is False
    assert libc.calls == []


def test_unrelated_tunables_do_not_block():
    libc = Recorder()
    assert allocator.keep_freed_memory({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}, libc) is True


def test_a_refused_setting_is_reported():
    assert allocator.keep_freed_memory({}, Recorder(answer=0)) is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_real_glibc_accepts_the_settings():
    if allocator._glibc() is None:
        pytest.skip("not glibc")
    assert allocator.keep_freed_memory({}) is True


def test_cli_applies_it(monkeypatch):
    from nowcast import cli

    called = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: called.append(True) or True)
    assert cli.main(["--version"]) == 0
    assert called == [True]

