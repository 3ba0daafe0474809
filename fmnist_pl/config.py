"""What a comparison is, and what one planned run is: frozen dataclasses, defaults with reasons.

``CompareConfig`` is what the user asked for (validated on construction: a bad value is a
one-line :class:`ConfigError`); ``RunPlan`` is one training run the planner derived from it
(:mod:`fmnist_pl.plan`), with the structured key its results are filed and grouped by.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from fmnist_pl.architecture import REFERENCE_HIDDEN
from fmnist_pl.data.idx import VAL_SIZE
from fmnist_pl.errors import ConfigError
from fmnist_pl.optim.registry import REFERENCE_OPTIMIZERS, OptimizerSpec

NAME_MAX = 255  # bytes in one folder name on Linux/macOS file systems
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit seed
MAX_LRS = 1_000  # points in one learning-rate grid (a bound, so a typo cannot plan 10^8 runs)


def check_lr(value: float, where: str) -> float:
    """The one learning-rate check (``--lr``, ``--lrs``): a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where} must be a number > 0, got {value!r}")
    return float(value)


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
    hidden: tuple[int, ...] = REFERENCE_HIDDEN  # the reference's Dense 300 -> Dense 100
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
    val_size: int = VAL_SIZE  # the first N training images validate (reference: 5,000); small data in tests
    time_budget: float | None = None  # seconds of training per run (the reference asked for time as a criterion)

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "seeds", "val_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{key.replace('_', '-')} must be a whole number >= 1, got {value!r}")
        if self.lr is not None:
            check_lr(self.lr, "--lr")
        for lr in self.lrs:
            check_lr(lr, "--lrs")
        if self.limit_train_batches is not None and self.limit_train_batches < 1:
            raise ConfigError(f"--limit-train-batches must be >= 1, got {self.limit_train_batches!r}")
        for hidden in (self.hidden, *self.more_hidden):
            if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
                raise ConfigError(f"--hidden must list layer sizes >= 1 like 300,100, got {hidden!r}")
        if self.time_budget is not None and (
            isinstance(self.time_budget, bool)
            or not isinstance(self.time_budget, (int, float))
            or not math.isfinite(self.time_budget)
            or self.time_budget <= 0
        ):
            raise ConfigError(f"--time-budget must be a number of seconds > 0, got {self.time_budget!r}")
        if self.target is not None and not 0 < self.target <= 1:
            raise ConfigError(f"--target must be a validation accuracy in (0, 1], got {self.target!r}")
        if self.accelerator not in ("auto", "cpu", "gpu", "cuda", "mps"):
            raise ConfigError(f"--accelerator must be one of auto, cpu, gpu, cuda, mps; got {self.accelerator!r}")
        if self.name is not None and (
            not self.name or "/" in self.name or "\0" in self.name or self.name in (".", "..")
        ):
            raise ConfigError(f"--name must be a plain folder name, got {self.name!r}")
        if self.name is not None and len(self.name.encode()) > NAME_MAX:
            raise ConfigError(
                f"--name is {len(self.name.encode())} bytes long; a folder name has at most "
                f"{NAME_MAX}: choose a shorter --name"
            )
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, int)
            or not 0 <= self.seed <= MAX_SEED - self.seeds + 1
        ):
            raise ConfigError(
                f"--seed must be a whole number from 0 to {MAX_SEED - self.seeds + 1:,} (with --seeds "
                f"{self.seeds}, every seed up to seed+{self.seeds - 1} must fit in 63 bits), got {self.seed!r}"
            )

    @property
    def architecture_list(self) -> list[tuple[int, ...]]:
        return list(dict.fromkeys([tuple(self.hidden), *(tuple(h) for h in self.more_hidden)]))

    @property
    def trains_alone(self) -> bool:
        """Every run trains in its own group: asked for, or under a time budget, where a run's seconds
        must be its own (K runs in lockstep would share one budget)."""
        return self.separate or self.time_budget is not None

    @property
    def run_count(self) -> int:
        """Runs this compare plans: architectures x seeds x optimizers x learning rates (one without a grid)."""
        return len(self.architecture_list) * self.seeds * len(self.optimizers) * max(1, len(self.lrs))

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareConfig:
        known = set(cls.__dataclass_fields__)
        clean = {
            k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v)
            for k, v in data.items()
            if k in known
        }
        return cls(**clean)


@dataclass(frozen=True)
class RunPlan:
    """One planned training run and the structured key its results are filed under.

    ``optimizer`` (name + every hyperparameter), ``seed`` and ``hidden`` determine the run's
    numbers; ``name`` (unique within a compare; the run's folder and TensorBoard run),
    ``setting`` (the name without the seed: what a run's seeds have in common, the unit of
    rankings and significance) and ``variant`` (the setting without the architecture: the unit
    of a ranking within one architecture) are derived from them by the planner, never parsed back.
    """

    name: str
    setting: str
    variant: str
    optimizer: OptimizerSpec
    seed: int
    hidden: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.name,
            "setting": self.setting,
            "variant": self.variant,
            "optimizer": self.optimizer.to_dict(),
            "seed": self.seed,
            "hidden": list(self.hidden),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunPlan:
        opt = data["optimizer"]
        return cls(
            name=data["run"],
            setting=data["setting"],
            variant=data["variant"],
            optimizer=OptimizerSpec(opt["name"], opt["hparams"]),
            seed=int(data["seed"]),
            hidden=tuple(int(h) for h in data["hidden"]),
        )


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"300,100"`` -> ``(300, 100)``, with a one-line error for anything else."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--hidden must be comma-separated layer sizes like 300,100, got {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise ConfigError(f"--hidden sizes must be >= 1, got {text!r}")
    return sizes


def parse_lrs(text: str) -> tuple[float, ...]:
    """``"1e-4:1e0:7"`` (log grid: start, stop, count) or ``"0.001,0.01"`` -> learning rates."""
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            lo, hi, n = math.log10(float(start)), math.log10(float(stop)), int(count)
            if n < 2:
                raise ValueError
            if n > MAX_LRS:
                raise ConfigError(
                    f"--lrs asks for {n:,} learning rates; at most {MAX_LRS:,} (DeepOBS uses 36): use a smaller COUNT"
                )
            lrs = tuple(float(f"{10 ** (lo + (hi - lo) * i / (n - 1)):.3g}") for i in range(n))
        else:
            lrs = tuple(float(v) for v in text.split(","))
            if len(lrs) > MAX_LRS:
                raise ConfigError(f"--lrs lists {len(lrs):,} learning rates; at most {MAX_LRS:,}")
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(
            f"--lrs must be START:STOP:COUNT (log grid, COUNT >= 2) like 1e-4:1e0:7, "
            f"or a list like 0.001,0.01; got {text!r}"
        ) from None
    for lr in lrs:
        check_lr(lr, "--lrs")
    return lrs
