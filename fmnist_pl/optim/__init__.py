"""Optimizers: the registry (names -> classes and hyperparameters) and the Keras-form RMSprop."""

from fmnist_pl.optim.registry import (REFERENCE_OPTIMIZERS, REGISTRY, OptimizerError, OptimizerInfo,
                                      OptimizerSpec, get_info, register, resolve)

__all__ = ["REFERENCE_OPTIMIZERS", "REGISTRY", "OptimizerError", "OptimizerInfo", "OptimizerSpec", "get_info",
           "register", "resolve"]
