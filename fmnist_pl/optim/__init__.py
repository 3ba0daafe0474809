"""Optimizers: the registry (names -> classes and hyperparameters, gradient and gradient-free), the
Keras-form RMSprop, and the EvoTorch glue (``evolution``: our MLP as an EvoTorch problem)."""

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

__all__ = [
    "REFERENCE_OPTIMIZERS",
    "REGISTRY",
    "OptimizerError",
    "OptimizerInfo",
    "OptimizerSpec",
    "get_info",
    "register",
    "resolve",
]
