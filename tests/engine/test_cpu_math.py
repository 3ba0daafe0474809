"""CPU settings while training: flush-to-zero on every thread, freed memory kept in the heap."""

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


def test_freed_memory_is_kept_while_training_and_returned_after():
    import resource

    from fmnist_pl.engine.heap import retain_freed_memory

    def faults_per_round(rounds: int = 4) -> float:
        # 64 MB: above glibc's largest dynamic mmap threshold, so by default every round maps fresh pages.
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(rounds):
            torch.ones(16 << 20)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / rounds

    with retain_freed_memory() as applied:
        if not applied:
            pytest.skip("this C library has no mallopt")
        faults_per_round(3)  # the heap grows to hold it
        kept = faults_per_round()
    returned = faults_per_round()
    pages = (64 << 20) / resource.getpagesize()
    assert kept < 0.05 * pages  # reused: no page faults
    assert returned > 0.5 * pages  # defaults back: each round faults its pages in again
