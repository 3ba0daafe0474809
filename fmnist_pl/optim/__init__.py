"""Optimizers: the registry (names -> classes and hyperparameters, gradient and gradient-free), their
search spaces (``spaces``: what a tuner may try), the Keras-form RMSprop, and the EvoTorch glue
(``evolution``: our MLP as an EvoTorch problem)."""

from fmnist_pl.optim.registry import (
    REFERENCE_OPTIMIZERS,
    REGISTRY,
    OptimizerError,
    OptimizerInfo,
    OptimizerSpec,
    get_info,
    register,
    resolve,
)
from fmnist_pl.optim.spaces import (
    SPACES,
    Dimension,
    Space,
    apply,
    at_bound,
    describe,
    get_space,
    parse_space_overrides,
    to_distributions,
)

__all__ = [
    "REFERENCE_OPTIMIZERS",
    "REGISTRY",
    "SPACES",
    "Dimension",
    "OptimizerError",
    "OptimizerInfo",
    "OptimizerSpec",
    "Space",
    "apply",
    "at_bound",
    "describe",
    "get_info",
    "get_space",
    "parse_space_overrides",
    "register",
    "resolve",
    "to_distributions",
]
