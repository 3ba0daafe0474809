"""How much memory a lockstep group (or a gradient-free run) needs, estimated before anything is allocated or written.

So that ``--hidden 100000,100000`` or a huge grid is refused in one line, saying how much it
needs and how much there is, instead of dying in an allocation half-way through a start.
The estimate is deliberately simple and a little generous; it is not a promise to the byte.
"""

from __future__ import annotations

import os
from typing import Sequence

from fmnist_pl.architecture import IN_FEATURES, NUM_CLASSES, parameter_count

FLOAT = 4  # float32
# Per member and parameter: the weights, their gradient, the best epoch's copy, up to two
# optimizer state tensors (Adam), the optimizers' temporaries (foreach/fused work space), and the
# epoch checkpoint's snapshot of weights, best copy and state, held while it is written beside
# the next epoch's training (fmnist_pl.engine.trainer.make_trainer).
COPIES_PER_PARAMETER = 1 + 1 + 1 + 2 + 2 + (1 + 1 + 2)
DATASET_BYTES = 70_000 * (IN_FEATURES + 1) * FLOAT  # the whole split on the device, as float32


def group_bytes(hidden: Sequence[int], members: int, batch_size: int, eval_batch_size: int = 5_000) -> int:
    """Bytes a lockstep group of ``members`` runs of ``hidden`` needs at its peak (training or evaluation)."""
    widths = sum(hidden) + NUM_CLASSES
    weights = members * parameter_count(hidden) * FLOAT * COPIES_PER_PARAMETER
    train_activations = members * batch_size * widths * FLOAT * 3  # outputs, their gradients, ReLU masks
    eval_activations = members * eval_batch_size * widths * FLOAT * 2  # last and best weights' logits
    return weights + max(train_activations, eval_activations) + DATASET_BYTES


# A search holds its population [P, n], the sampled noise, and the library's temporaries
# (ranked weights, the gradient estimate; a GA's parents beside its children): about four copies.
POPULATION_COPIES = 4


def search_bytes(hidden: Sequence[int], popsize: int, batch_size: int, eval_batch_size: int = 5_000) -> int:
    """Bytes one gradient-free run of population ``popsize`` scoring batches of ``batch_size`` needs at its peak."""
    widths = sum(hidden) + NUM_CLASSES
    population = popsize * parameter_count(hidden) * FLOAT * POPULATION_COPIES
    train_activations = 2 * popsize * batch_size * widths * FLOAT  # a GA scores parents and children
    eval_activations = eval_batch_size * widths * FLOAT * 2
    return population + max(train_activations, eval_activations) + DATASET_BYTES


def available_bytes(device: str) -> tuple[int | None, str]:
    """Memory free for a new group on ``device`` ("cpu" or "cuda"), and where that figure comes from."""
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return free, f"free memory on {torch.cuda.get_device_name(0)}"
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available RAM"
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), "available RAM"
    except (ValueError, OSError, AttributeError):
        return None, "unknown"


def gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
