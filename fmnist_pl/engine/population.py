"""Population evaluation: P candidate weight vectors scored in one batched forward.

The interface a gradient-free method (an evolution strategy, a genetic algorithm) needs from
the engine, in EvoTorch's vectorized form: a ``[P, n]`` tensor of solutions in, ``[P]``
fitnesses out. A solution is the flat parameter vector of the plain :class:`~fmnist_pl.engine.mlp.MLP`
in ``torch.nn.utils.parameters_to_vector`` order (layer by layer, weight then bias), so the
centre of a search distribution loads into an ``MLP`` with ``vector_to_parameters``. The
forward is :func:`~fmnist_pl.engine.mlp.stacked_logits`, the same batched matmuls the
lockstep engine trains with: the layer views are slices of the solutions tensor, never a
Python loop over members and never a copy of the weights.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from fmnist_pl.architecture import layer_shapes, parameter_count
from fmnist_pl.engine.mlp import stacked_logits


def unflatten(solutions: torch.Tensor, hidden: Sequence[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``[P, n]`` -> per-layer views ``weights[i]: [P, out, in]``, ``biases[i]: [P, out]`` (no copies)."""
    if solutions.dim() != 2 or solutions.shape[1] != parameter_count(hidden):
        raise ValueError(
            f"solutions must be [P, {parameter_count(hidden)}] for hidden {tuple(hidden)}, got {tuple(solutions.shape)}"
        )
    weights, biases, at = [], [], 0
    for out, n_in in layer_shapes(hidden):
        weights.append(solutions[:, at : at + out * n_in].view(-1, out, n_in))
        at += out * n_in
        biases.append(solutions[:, at : at + out])
        at += out
    return weights, biases


def population_logits(solutions: torch.Tensor, x: torch.Tensor, hidden: Sequence[int]) -> torch.Tensor:
    """Logits ``[P, 10, B]`` of every solution on the images ``x: [B, 784]``."""
    weights, biases = unflatten(solutions, hidden)
    return stacked_logits(weights, biases, x)


@torch.no_grad()
def population_fitness(
    solutions: torch.Tensor, x: torch.Tensor, y: torch.Tensor, hidden: Sequence[int], metric: str = "cross_entropy"
) -> torch.Tensor:
    """``[P]``: each solution's mean cross-entropy (to minimize) or accuracy (to maximize) on ``(x, y)``."""
    logits = population_logits(solutions, x, hidden)
    targets = y.expand(solutions.shape[0], -1)
    if metric == "cross_entropy":
        return F.cross_entropy(logits, targets, reduction="none").mean(1)
    if metric == "accuracy":
        return (logits.argmax(1) == targets).float().mean(1)
    raise ValueError(f"unknown fitness metric {metric!r}; choose cross_entropy or accuracy")
