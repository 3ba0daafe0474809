"""What a comparison is, and what one planned run is: frozen dataclasses, defaults with reasons.

``CompareConfig`` is what the user asked for (validated on construction: a bad value is a
one-line :class:`ConfigError`); ``RunPlan`` is one training run the planner derived from it
(:mod:`fmnist_pl.plan`), with the structured key its results are filed and grouped by.
"""

from __future__ import annotations

import math
import os
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


MAX_TIME_BUDGET = 365 * 24 * 3600  # seconds: a year (Lightning's Timer overflows on absurd values)
TRAIN_IMAGES = 60_000  # Fashion-MNIST's training set, validation included


def absolute_path(value: str | os.PathLike, option: str) -> str:
    """``value`` with ``~`` expanded, made absolute (against the working folder) and normalized; one
    line when a part of it is longer than a file name can be."""
    path = os.path.abspath(os.path.expanduser(os.fspath(value)))
    if "\0" in path:
        raise ConfigError(f"{option} must not contain a NUL byte")
    long = next((part for part in path.split(os.sep) if len(part.encode()) > NAME_MAX), None)
    if long is not None:
        raise ConfigError(
            f"{option} has a folder name of {len(long.encode())} bytes ({long[:20]}...); a file system allows "
            f"at most {NAME_MAX}: choose a shorter {option}"
        )
    return path


# What a budget can count, and the most of each a run may be given (a typo cannot plan a century).
BUDGET_KINDS = {
    "seconds": MAX_TIME_BUDGET,  # training time after a warm-up step: the training thread's CPU time on a CPU, wall time on a GPU
    "images": 1e15,  # training images seen
    "evaluations": 1e18,  # forward evaluations: images x population for a search, images for a gradient method
}


@dataclass(frozen=True)
class Budget:
    """How much training each run gets, counted in one unit: ``--budget images=2e6``.

    Images and evaluations are equal by construction (each run stops at the step that reaches
    the amount); seconds depend on the machine, so their clock starts after a warm-up step and,
    on a CPU, counts the CPU time of the thread that trains (time the OS gives another program is
    not counted); measured across repeats it still varies (benchmarks/RESULTS.md), so for equal
    work use images or evaluations.
    """

    kind: str
    amount: float

    @classmethod
    def parse(cls, text: str, option: str = "--budget") -> Budget:
        kind, sep, value = str(text).partition("=")
        kind = kind.strip()
        if not sep or kind not in BUDGET_KINDS:
            raise ConfigError(
                f"{option} must be KIND=AMOUNT with KIND one of {', '.join(BUDGET_KINDS)}, like images=2e6; got {text!r}"
            )
        try:
            amount = float(value)
        except ValueError:
            raise ConfigError(f"{option} {kind}= needs a number, got {value.strip()!r}") from None
        if not math.isfinite(amount) or amount <= 0:
            raise ConfigError(f"{option} {kind}= must be a number > 0, got {value.strip()!r}")
        if amount > BUDGET_KINDS[kind]:
            raise ConfigError(f"{option} {kind}={amount:g} is more than {BUDGET_KINDS[kind]:g}; use less")
        return cls(kind, amount)

    def __str__(self) -> str:
        return f"{self.kind}={self.amount:.15g}"  # every digit given (images=1234567 stays 1234567)


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
    eval_points: int = 20  # validations per run, evenly spread over its budget (anytime curves); 0: epoch ends only
    budget: str | None = None  # "KIND=AMOUNT": seconds, images or evaluations per run (time_budget is seconds=)
    schedule: str = "constant"  # every gradient run's learning-rate schedule (--set NAME.schedule=... for one)
    # tune's settings, each (optimizer, label, "key=value", ...), trained instead of one per optimizer
    trials: tuple[tuple[str, ...], ...] = ()
    # Train the --epochs plan (its schedule, its anytime points) but stop after this epoch: a tune's
    # successive-halving rung, the exact prefix of the full runs its survivors go on from.
    stop_epoch: int | None = None

    def __post_init__(self) -> None:
        # Paths are made absolute once, here: every writer (Lightning's loggers and checkpoints too)
        # then gets the same folder, and "~" means the home folder even after "--output-dir=".
        for key in ("output_dir", "data_dir"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, absolute_path(value, f"--{key.replace('_', '-')}"))
        for check in CHECKS:
            check(self)

    @property
    def architecture_list(self) -> list[tuple[int, ...]]:
        return list(dict.fromkeys([tuple(self.hidden), *(tuple(h) for h in self.more_hidden)]))

    @property
    def budget_spec(self) -> Budget | None:
        """The budget each run trains under (``--budget``, or ``--time-budget S`` as seconds=S), if any."""
        if self.budget is not None:
            return Budget.parse(self.budget)
        return Budget("seconds", float(self.time_budget)) if self.time_budget is not None else None

    @property
    def trains_alone(self) -> bool:
        """Every run trains in its own group: asked for, or under a budget of seconds, where a run's
        seconds must be its own (K runs in lockstep would share them). Images and evaluations are
        counted per run, so runs under those budgets still train in lockstep."""
        spec = self.budget_spec
        return self.separate or (spec is not None and spec.kind == "seconds")

    @property
    def takes_turns(self) -> bool:
        """Under a budget of seconds, runs on a CPU take turns in short slices (one trains at a time:
        :mod:`fmnist_pl.runtime.turns`), so that a slow minute of the machine hits every run alike."""
        spec = self.budget_spec
        return spec is not None and spec.kind == "seconds"

    @property
    def run_count(self) -> int:
        """Runs this compare plans: architectures x seeds x settings (optimizers x learning rates, or trials)."""
        settings = len(self.trials) if self.trials else len(self.optimizers) * max(1, len(self.lrs))
        return len(self.architecture_list) * self.seeds * settings

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


def _check_counts(c: CompareConfig) -> None:
    for key in ("epochs", "batch_size", "seeds", "val_size"):
        value = getattr(c, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be a whole number >= 1, got {value!r}")
    if c.val_size < TRAIN_IMAGES and c.batch_size > TRAIN_IMAGES - c.val_size:
        raise ConfigError(
            f"--batch-size {c.batch_size:,} is more than the {TRAIN_IMAGES - c.val_size:,} training images; "
            f"use at most {TRAIN_IMAGES - c.val_size:,}"
        )
    if isinstance(c.eval_points, bool) or not isinstance(c.eval_points, int) or not 0 <= c.eval_points <= 1000:
        raise ConfigError(f"--eval-points must be a whole number from 0 to 1000, got {c.eval_points!r}")
    if c.limit_train_batches is not None and c.limit_train_batches < 1:
        raise ConfigError(f"--limit-train-batches must be >= 1, got {c.limit_train_batches!r}")
    if c.stop_epoch is not None and (
        isinstance(c.stop_epoch, bool) or not isinstance(c.stop_epoch, int) or not 1 <= c.stop_epoch <= c.epochs
    ):
        raise ConfigError(f"stop_epoch must be a whole number from 1 to --epochs ({c.epochs}), got {c.stop_epoch!r}")


def _check_rates(c: CompareConfig) -> None:
    if c.lr is not None:
        check_lr(c.lr, "--lr")
    for lr in c.lrs:
        check_lr(lr, "--lrs")
    if c.target is not None and not 0 < c.target <= 1:
        raise ConfigError(f"--target must be a validation accuracy in (0, 1], got {c.target!r}")


def _check_schedule(c: CompareConfig) -> None:
    from fmnist_pl.optim.schedules import SCHEDULES

    if c.schedule not in SCHEDULES:
        raise ConfigError(f"--schedule {c.schedule!r}: choose from {', '.join(SCHEDULES)}")


def _check_model(c: CompareConfig) -> None:
    for hidden in (c.hidden, *c.more_hidden):
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ConfigError(f"--hidden must list layer sizes >= 1 like 300,100, got {hidden!r}")
    if c.accelerator not in ("auto", "cpu", "gpu", "cuda", "mps"):
        raise ConfigError(f"--accelerator must be one of auto, cpu, gpu, cuda, mps; got {c.accelerator!r}")


def _check_time_budget(c: CompareConfig) -> None:
    budget = c.time_budget
    if budget is None:
        return
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
        raise ConfigError(f"--time-budget must be a number of seconds > 0, got {budget!r}")
    if budget > MAX_TIME_BUDGET:
        raise ConfigError(f"--time-budget {budget:g} s is more than a year ({MAX_TIME_BUDGET:,} s); use less")
    object.__setattr__(c, "time_budget", float(budget))  # 30 and 30.0 are one protocol (and one identity)


def _check_budget(c: CompareConfig) -> None:
    if c.budget is None:
        return
    if c.time_budget is not None:
        raise ConfigError("--time-budget S is --budget seconds=S: give one of them")
    object.__setattr__(c, "budget", str(Budget.parse(c.budget)))  # one normal form in config.json


def _check_name(c: CompareConfig) -> None:
    if c.name is None:
        return
    if not c.name or "/" in c.name or "\0" in c.name or c.name in (".", ".."):
        raise ConfigError(f"--name must be a plain folder name, got {c.name!r}")
    if len(c.name.encode()) > NAME_MAX:
        raise ConfigError(
            f"--name is {len(c.name.encode())} bytes long; a folder name has at most {NAME_MAX}: choose a shorter --name"
        )


def _check_seed(c: CompareConfig) -> None:
    top = MAX_SEED - c.seeds + 1
    if isinstance(c.seed, bool) or not isinstance(c.seed, int) or not 0 <= c.seed <= top:
        raise ConfigError(
            f"--seed must be a whole number from 0 to {top:,} (with --seeds {c.seeds}, every seed up to "
            f"seed+{c.seeds - 1} must fit in 63 bits), got {c.seed!r}"
        )


# Each check raises the one-line ConfigError naming its option; run in this order on construction.
CHECKS = (
    _check_counts,
    _check_rates,
    _check_model,
    _check_time_budget,
    _check_budget,
    _check_name,
    _check_seed,
    _check_schedule,
)


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
