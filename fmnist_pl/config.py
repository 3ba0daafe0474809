"""What a comparison is: a frozen dataclass whose defaults are the reference's setup."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from fmnist_pl.optimizers import REFERENCE_OPTIMIZERS


class ConfigError(ValueError):
    """A user-caused bad setting; the message names the value and the fix."""


@dataclass(frozen=True)
class CompareConfig:
    """One ``compare``: which optimizers, how long, on what, and where the results go."""

    optimizers: tuple[str, ...] = REFERENCE_OPTIMIZERS  # the reference compared these four
    epochs: int = 30  # the reference trained 30 epochs
    batch_size: int = 32  # Keras' default, which the reference used
    lr: float | None = None  # one learning rate for all (the reference's own suggestion); None: each its own
    overrides: tuple[str, ...] = ()  # "adam.lr=3e-4" style per-optimizer hyperparameters
    seed: int = 42  # first seed; seed k is seed + k
    seeds: int = 1  # runs per optimizer, paired across optimizers
    hidden: tuple[int, ...] = (300, 100)  # the reference's Dense 300 -> Dense 100
    more_hidden: tuple[tuple[int, ...], ...] = ()  # further architectures to compare the optimizers on
    accelerator: str = "auto"  # GPU when present
    data_dir: str | None = None  # else $FMNIST_DATA, else the Debian package's folder
    download: bool = False  # allow torchvision's download when no local copy exists
    output_dir: str = "outputs"
    name: str | None = None  # default: a timestamp
    limit_train_batches: int | None = None  # quick smoke runs
    progress: bool = True
    separate: bool = False  # train each run alone (its seconds are its own) instead of in lockstep
    lrs: tuple[float, ...] = ()  # a learning-rate grid: every optimizer runs at each (used by sweep)
    target: float | None = 0.88  # report epochs/seconds to this validation accuracy (AlgoPerf's time-to-result)

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "seeds"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{key.replace('_', '-')} must be a whole number >= 1, got {value!r}")
        if self.lr is not None and (not math.isfinite(self.lr) or self.lr <= 0):
            raise ConfigError(f"--lr must be a number > 0, got {self.lr!r}")
        if self.limit_train_batches is not None and self.limit_train_batches < 1:
            raise ConfigError(f"--limit-train-batches must be >= 1, got {self.limit_train_batches!r}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ConfigError(f"--hidden must list layer sizes >= 1 like 300,100, got {self.hidden!r}")
        if self.target is not None and not 0 < self.target <= 1:
            raise ConfigError(f"--target must be a validation accuracy in (0, 1], got {self.target!r}")
        if self.accelerator not in ("auto", "cpu", "gpu", "cuda", "mps"):
            raise ConfigError(f"--accelerator must be one of auto, cpu, gpu, cuda, mps; got {self.accelerator!r}")
        if self.name is not None and (not self.name or "/" in self.name or self.name in (".", "..")):
            raise ConfigError(f"--name must be a plain folder name, got {self.name!r}")

    @property
    def architecture_list(self) -> list[tuple[int, ...]]:
        return list(dict.fromkeys([tuple(self.hidden), *(tuple(h) for h in self.more_hidden)]))

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CompareConfig":
        known = {f for f in cls.__dataclass_fields__}
        clean = {k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v)
                 for k, v in data.items() if k in known}
        return cls(**clean)


def arch_name(hidden: tuple[int, ...] | list[int]) -> str:
    """An architecture's short name, ``h300-100``: run-name prefix and report heading."""
    return "h" + "-".join(map(str, hidden))


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"300,100"`` -> ``(300, 100)``, with a one-line error for anything else."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--hidden must be comma-separated layer sizes like 300,100, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise ConfigError(f"--hidden sizes must be >= 1, got {text!r}")
    return sizes


def parameter_count(hidden: tuple[int, ...] | list[int], in_features: int = 28 * 28, classes: int = 10) -> int:
    """Weights and biases of the MLP: 266,610 for the reference's (300, 100)."""
    sizes = [in_features, *hidden, classes]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
