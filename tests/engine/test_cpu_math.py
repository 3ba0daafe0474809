"""CPU settings while training: flush-to-zero on every thread, freed memory kept in the heap (fmnist_pl.runtime)."""

import ctypes
import ctypes.util
import logging
import os

import pytest
import torch


@pytest.fixture
def two_threads():
    """torch on two OpenMP threads whose pool exists with flush-to-zero off everywhere: a thread the
    flag does not reach then keeps computing denormals, which the tests below can see."""
    from fmnist_pl.runtime.denormals import flush_denormals

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        if not flush_denormals(False):  # also starts the pool's worker, flag off
            pytest.skip("this CPU cannot flush denormals")
        yield
    finally:
        flush_denormals(False)
        torch.set_num_threads(before)


def _denormals_left() -> int:
    """How many of 2^20 denormal inputs stay non-zero through ``x * 1.0``: a parallel op, each thread
    computing its own chunk, so a thread without flush-to-zero leaves its chunk's denormals.

    Made and counted as bits, never as floats: on a thread that flushes, converting 1e-39 to float32
    gives 0 and comparing a denormal with 0 says equal.
    """
    tiny = torch.full((1 << 20,), 0x000AE398, dtype=torch.int32).view(torch.float32)  # ~1e-39
    return int(torch.count_nonzero((tiny * 1.0).view(torch.int32)))


def test_flush_denormals_reaches_the_worker_threads(two_threads):
    from fmnist_pl.runtime.denormals import Reach, flush_denormals

    assert _denormals_left() == 1 << 20  # off everywhere
    assert flush_denormals(True) is Reach.EVERY_THREAD
    assert _denormals_left() == 0  # flushed on every chunk, not only the main thread's
    assert flush_denormals(False) is Reach.EVERY_THREAD
    assert _denormals_left() == 1 << 20  # and cleared on every thread again


def test_without_libgomp_only_the_main_thread_flushes_and_a_warning_says_so(two_threads, monkeypatch, caplog):
    from fmnist_pl.runtime import denormals

    monkeypatch.setattr(denormals, "_gomp_libraries", list)  # finds no libgomp
    monkeypatch.setattr(denormals, "_warned", False)
    with caplog.at_level(logging.WARNING, logger=denormals.__name__):
        reach = denormals.flush_denormals(True)
        left = _denormals_left()
        denormals.flush_denormals(False)
        denormals.flush_denormals(True)
    assert reach is denormals.Reach.MAIN_THREAD and reach  # still truthy: the caller sets it back
    assert 0 < left < 1 << 20  # the worker's chunk kept its denormals: what the other test would catch
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "torch.set_num_threads(1)" in warnings[0].getMessage()  # once per process
    # On one thread there is no worker to miss: every thread has it, nothing to warn about.
    monkeypatch.setattr(denormals, "_warned", False)
    torch.set_num_threads(1)
    caplog.clear()
    assert denormals.flush_denormals(True) is denormals.Reach.EVERY_THREAD and not caplog.records


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def test_freed_memory_is_kept_while_training_and_returned_after():
    """What malloc did with a freed 64 MB block, read from glibc's own books (mallinfo2).

    Page faults would be a proxy: this VM's kernel also reclaims idle pages on its own (DAMON),
    so they vary from run to run; where malloc put the block does not.
    """
    from fmnist_pl.runtime.heap import retain_freed_memory

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("this C library has no mallinfo2 (glibc < 2.33)")
    libc.mallinfo2.restype = _MallInfo2
    block = 64 << 20  # above glibc's largest dynamic mmap threshold: by default an mmap of its own

    def after_free(nbytes: int) -> _MallInfo2:
        x = torch.ones(nbytes // 4)
        del x
        return libc.mallinfo2()

    with retain_freed_memory() as applied:
        if not applied:
            pytest.skip("this C library has no mallopt")
        kept = after_free(block)
    # Defaults back: a block larger than anything the heap kept is mapped for itself and unmapped when
    # freed (with the training settings it would stay in the heap, as `kept` shows).
    returned = after_free(4 * block)
    assert kept.fordblks >= block  # freed, and still held in the heap for the next step
    assert returned.fordblks < 4 * block and returned.hblkhd < 4 * block  # handed back to the OS


def test_training_settings_flush_inside_and_restore_everything_after(two_threads, monkeypatch):
    from fmnist_pl.runtime.denormals import Reach
    from fmnist_pl.runtime.training import NVML_CHECK, numerics, training_settings

    monkeypatch.setenv(NVML_CHECK, "1")
    assert _denormals_left() == 1 << 20
    with training_settings() as reach:
        assert reach is Reach.EVERY_THREAD
        assert _denormals_left() == 0
        assert NVML_CHECK not in os.environ
    assert _denormals_left() == 1 << 20  # set back on every thread
    assert os.environ[NVML_CHECK] == "1"
    assert numerics() == {"flush_to_zero": "every thread"}
    assert _denormals_left() == 1 << 20
