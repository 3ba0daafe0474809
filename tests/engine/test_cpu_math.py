"""CPU settings while training: flush-to-zero on every thread, freed memory kept in the heap."""

import ctypes
import ctypes.util

import pytest
import torch


def test_flush_denormals_reaches_the_worker_threads():
    from fmnist_pl.engine.denormals import flush_denormals

    tiny = torch.full((1 << 16,), 1e-39)  # denormal; a parallel op spreads it over all threads
    try:
        if not flush_denormals(True):
            pytest.skip("this CPU cannot flush denormals")
        assert torch.count_nonzero(tiny * 1.0) == 0  # flushed on every chunk, not only the main thread's
    finally:
        flush_denormals(False)
    assert torch.count_nonzero(tiny * 1.0) == tiny.numel()


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def test_freed_memory_is_kept_while_training_and_returned_after():
    """What malloc did with a freed 64 MB block, read from glibc's own books (mallinfo2).

    Page faults would be a proxy: this VM's kernel also reclaims idle pages on its own (DAMON),
    so they vary from run to run; where malloc put the block does not.
    """
    from fmnist_pl.engine.heap import retain_freed_memory

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
