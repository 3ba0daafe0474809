"""The process settings a training group runs under, as one context manager with one contract.

:func:`training_settings` is the only place that changes process-wide state for training, and it
sets everything back on leaving. Of what it does, only flush-to-zero can change numbers (it is
part of the numerics, so ``config.json`` records how far it reached: :func:`numerics`); the rest
only changes speed.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from fmnist_pl.runtime.denormals import Reach, flush_denormals
from fmnist_pl.runtime.heap import retain_freed_memory

# Lightning sets it (fork safety for DataLoader workers, which we do not use); with it every Adam
# step's CUDA-graph health check probes NVML, even on a machine without a GPU.
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


@contextlib.contextmanager
def training_settings() -> Iterator[Reach]:
    """While inside: denormals flushed to zero on every thread torch computes on (as TensorFlow, the
    reference's framework, does on CPU: :mod:`.denormals`), freed memory kept in the heap
    (:mod:`.heap`), and no NVML probe per step. Yields how far flush-to-zero reached."""
    reach = flush_denormals(True)
    nvml_check = os.environ.pop(NVML_CHECK, None)
    try:
        with retain_freed_memory():
            yield reach
    finally:
        if reach:
            flush_denormals(False)
        if nvml_check is not None:
            os.environ[NVML_CHECK] = nvml_check


def numerics() -> dict[str, str]:
    """What of the process settings changes numbers, for ``config.json``: where flush-to-zero
    reaches in a process like this one ("every thread", "main thread only" or "none")."""
    with training_settings() as reach:
        pass
    return {"flush_to_zero": reach.label}
