"""Learning-rate schedules: the factor a run's learning rate is multiplied by at training step ``step``
of ``total`` (every epoch's batches).

Crowded Valley (Schmidt, Schneider & Hennig 2021) compared optimizers under several schedules and
found the schedule as important as the optimizer; these are the ones their study and AlgoPerf's
baselines use. A schedule is a hyperparameter of a gradient run (``--set adam.schedule=cosine``, or
``--schedule`` for every gradient optimizer); a run without one keeps its rate, and its numbers.
"""

from __future__ import annotations

import math
from typing import Callable

WARMUP = 0.05  # warm-up share of training: AlgoPerf's NAdamW baseline (warmup_factor 0.05)


def _constant(step: int, total: int) -> float:
    return 1.0


def _cosine(step: int, total: int) -> float:
    """Cosine decay from the full rate at the first step towards 0 (Loshchilov & Hutter 2017, SGDR,
    without restarts)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _warmup_cosine(step: int, total: int) -> float:
    """A linear warm-up over the first :data:`WARMUP` of the steps (from 1/warm-up steps of the rate),
    then cosine decay over the rest."""
    warm = max(1, round(WARMUP * total))
    if step < warm:
        return (step + 1) / warm
    return _cosine(step - warm, total - warm)


SCHEDULES: dict[str, Callable[[int, int], float]] = {
    "constant": _constant,
    "cosine": _cosine,
    "warmup-cosine": _warmup_cosine,
}


def factor(schedule: str, step: int, total: int) -> float:
    """The learning-rate multiplier of ``schedule`` at step ``step`` (from 0) of ``total``."""
    return SCHEDULES[schedule](step, total)
