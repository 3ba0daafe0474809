"""Tune every method with the same number of trials, then compare the tuned methods on fresh seeds.

The protocol of Sivaprasad et al. 2020 and Schmidt et al. 2021 ("Descending through a Crowded
Valley"): a ranking means little without the tuning each method got, so every method gets
``--trials`` configurations sampled from its search space (:mod:`fmnist_pl.optim.spaces`), chosen
on validation accuracy, and the report shows the expected best validation accuracy against the
number of trials (:mod:`fmnist_pl.analysis.tuning`) before the chosen configurations are
retrained on fresh seeds and compared with the verdict statistics.

Optuna does the sampling, through its ask-and-tell interface. Round r holds trials r*B .. r*B+B-1
of every study (B: ``--batch``, default all): they are asked, trained as one ``compare``
(``round-<r>/``, whose gradient trials of every method train together in one lockstep group, the
workload where lockstep pays most) and told. Each method's study lives in ``study.db`` (SQLite)
inside the output folder, or in ``--storage``, so that ``optuna-dashboard`` shows it. Stopped at
any point (``kill -9`` included), a tune continues to the same trials and numbers: a round is
defined by its trial numbers, every sampler is seeded by the trial's number, a round's compare
resumes from its checkpoints, and only trials not yet told are told.
"""

from __future__ import annotations

import contextlib
import math
import shlex
import uuid
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from fmnist_pl import store
from fmnist_pl.analysis import tuning as stats
from fmnist_pl.analysis.runs import best_val_acc
from fmnist_pl.analysis.targets import first_reached, validation_points
from fmnist_pl.config import CompareConfig
from fmnist_pl.data import idx
from fmnist_pl.errors import ConfigError
from fmnist_pl.execution.backend import Backend, InProcess
from fmnist_pl.optim import registry, spaces
from fmnist_pl.store.lock import check_owned
from fmnist_pl.study.compare import compare
from fmnist_pl.study.live import LiveCurves, mean
from fmnist_pl.study.setup import holding, output_folder, prepare
from fmnist_pl.study.sweep import FINAL_SEEDS, check_final, final_config, seed_range, step_param

if TYPE_CHECKING:
    from optuna import Study
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

    from fmnist_pl.report.figures import Drawer

TUNE_FILE = "tune.json"  # the tune's own settings and its studies' name: what --resume continues
SUMMARY_FILE = "tuning.json"  # the trials, curves, rankings and choices (also in the final report)
TRIALS_FILE = "trials.csv"
STUDY_FILE = "study.db"
MAX_TRIALS = 1000
SEED_STRIDE = 1_000_003  # sampler seed of trial n: seed * stride + n (a prime, so no two trials share one)
RUNG_MARK = ".rung-"  # round-3.rung-1: the first rung of round 3 (the round's own folder holds its last)
PRUNERS = ("none", "halving")


# ---------------------------------------------------------------------------- samplers
def _random(seed: int, number: int, grid: dict[str, list[float]]) -> BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed * SEED_STRIDE + number)


def _tpe(seed: int, number: int, grid: dict[str, list[float]]) -> BaseSampler:
    import optuna

    # constant_liar: the trials of one round are asked before any is told; without it TPE would
    # suggest the same point for all of them.
    return optuna.samplers.TPESampler(seed=seed * SEED_STRIDE + number, constant_liar=True, multivariate=True)


def _grid(seed: int, number: int, grid: dict[str, list[float]]) -> BaseSampler:
    import optuna

    # Optuna's GridSampler walks the grid in an order its seed decides: a restart asks the same points.
    return optuna.samplers.GridSampler(grid, seed=seed)


@dataclass(frozen=True)
class Sampler:
    """How a ``--sampler`` draws a study's trials: ``make(seed, trial number, grid)`` is the Optuna
    sampler that asks trial ``number``; ``enqueued``: the point is computed here (:func:`qmc_point`)
    and enqueued, the sampler only asks it; ``grid``: it walks :func:`grid_points`."""

    make: Callable[[int, int, dict[str, list[float]]], BaseSampler]
    enqueued: bool = False
    grid: bool = False


SAMPLERS: dict[str, Sampler] = {
    "qmc": Sampler(_random, enqueued=True),  # scrambled Sobol points, as AlgoPerf's quasi-random search
    "random": Sampler(_random),
    "tpe": Sampler(_tpe),
    "grid": Sampler(_grid, grid=True),
}


def grid_points(space: spaces.Space, count: int) -> dict[str, list[float]]:
    """``count`` points evenly spread (on the log scale for a log dimension) over the one searched
    dimension of ``space``: the grid a DeepOBS-style study walks."""
    searched = [d for d in space.dimensions if not d.fixed]
    if len(searched) != 1:
        names = ", ".join(d.name for d in searched)
        raise ConfigError(
            f"a grid searches one hyperparameter; {space.optimizer} searches {len(searched)} ({names}): "
            f"fix the others with --space {space.optimizer}.NAME=VALUE"
        )
    (d,) = searched
    if d.categorical:
        raise ConfigError(
            f"a grid walks a numeric range; {space.optimizer}.{d.name} is a choice: use another --sampler"
        )
    if count == 1:
        return {d.name: [d.low]}
    if d.log:
        a, b = math.log10(d.low), math.log10(d.high)
        # clamped: 10 ** log10(high) may round a step past high, which Optuna's range check refuses
        values = [min(max(10 ** (a + (b - a) * i / (count - 1)), d.low), d.high) for i in range(count)]
    else:
        values = [d.low + (d.high - d.low) * i / (count - 1) for i in range(count)]
    if d.integer:
        values = sorted({int(round(v / d.step) * d.step) for v in values})
        if len(values) < count:
            raise ConfigError(
                f"{space.optimizer}.{d.name} has only {len(values)} values on its grid, fewer than --trials {count}: "
                f"use --trials {len(values)} or a wider range"
            )
    return {d.name: values}


def qmc_point(distributions: dict[str, Any], seed: int, number: int) -> dict[str, Any]:
    """Point ``number`` of a scrambled Sobol sequence over ``distributions`` (scipy's engine, the one
    Optuna's QMCSampler uses).

    Why not the QMCSampler itself: it learns its space from the first *finished* trial and samples
    at random until then, so a batch asked before any trial is told - a round trained in lockstep -
    would be random points, and the same point for every trial of a fresh sampler."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from scipy.stats import qmc

    names = sorted(distributions)
    if not names:
        return {}
    engine = qmc.Sobol(len(names), scramble=True, seed=seed)
    if number:
        engine.fast_forward(number)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "balance properties": we take single points
        u = engine.random(1)[0]
    out: dict[str, Any] = {}
    for name, x in zip(names, u):
        d = distributions[name]
        if isinstance(d, FloatDistribution):
            out[name] = (
                math.exp(math.log(d.low) + x * (math.log(d.high) - math.log(d.low)))
                if d.log
                else d.low + x * (d.high - d.low)
            )
            out[name] = min(max(out[name], d.low), d.high)
        elif isinstance(d, IntDistribution):
            if d.log:
                value = math.exp(math.log(d.low - 0.5) + x * (math.log(d.high + 0.5) - math.log(d.low - 0.5)))
            else:
                value = d.low - 0.5 * d.step + x * (d.high - d.low + d.step)
            steps = round((value - d.low) / d.step)
            out[name] = int(min(max(d.low + steps * d.step, d.low), d.high))
        elif isinstance(d, CategoricalDistribution):
            out[name] = d.choices[min(int(x * len(d.choices)), len(d.choices) - 1)]  # equal shares of [0, 1)
        else:
            raise TypeError(f"quasi-random points of {type(d).__name__} are not supported ({name})")
    return out


@dataclass(frozen=True)
class Protocol:
    """A published tuning protocol as ``tune`` settings (``--protocol``), scaled down by ``--scale``."""

    source: str
    sampler: str
    trials: int
    final_seeds: int
    ks: tuple[int, ...]  # the tuning budgets its rankings are read at
    step_only: bool = False  # search only each method's step size, the rest at the registry's values
    step_range: tuple[float, float] | None = None  # the step-size range of gradient methods
    studies: int = 1  # independent studies per method, each of `trials` trials
    one_shot: bool = False  # reports the one-shot defaults beside the tuned budgets (needs the defaults runs)


PROTOCOLS: dict[str, Protocol] = {
    "deepobs": Protocol(
        "DeepOBS (Schneider, Balles & Hennig 2019): the learning rate on a grid of 36 points log-spaced over "
        "[1e-5, 1e2], the rest at their defaults; the best rerun on 10 seeds",
        sampler="grid",
        trials=36,
        final_seeds=10,
        ks=(1, 36),
        step_only=True,
        step_range=(1e-5, 1e2),
    ),
    "crowded-valley": Protocol(
        "Descending through a Crowded Valley (Schmidt, Schneider & Hennig 2021): one-shot defaults, then random "
        "search over every hyperparameter with a small (25) and a large (50) budget; the best rerun on 10 seeds",
        sampler="random",
        trials=50,
        final_seeds=10,
        ks=(1, 25, 50),
        one_shot=True,
    ),
    "algoperf": Protocol(
        "AlgoPerf's external tuning ruleset (Dahl et al. 2023): 5 quasi-random trials per study over the "
        "search space; the official score takes the median over 5 such studies of the best trial's time to the "
        "validation target",
        sampler="qmc",
        trials=5,
        final_seeds=5,
        ks=(1, 5),
        studies=5,
    ),
}


def step_only_space(optimizers: Sequence[str], step_range: tuple[float, float] | None) -> tuple[str, ...]:
    """``--space`` items that leave only each method's step size searched (a gradient method's ``lr``, over
    ``step_range`` when given; a gradient-free one's ``stdev_init``) and fix the rest at the registry's values."""
    items = []
    for name in (n.lower() for n in optimizers):
        step = step_param(name)
        defaults = registry.get_info(name).defaults
        for d in spaces.get_space(name).dimensions:
            if d.target == step:
                if step_range is not None and not registry.get_info(name).gradient_free:
                    items.append(f"{name}.{d.name}={step_range[0]!r}:{step_range[1]!r}:log")
                continue
            value = defaults[d.target] if d.index is None else defaults[d.target][d.index]
            value = 1 - value if d.transform == "one_minus" else value
            items.append(f"{name}.{d.name}={value!r}")
    return tuple(items)


def _check_storage(url: str) -> None:
    """``--storage``: a database URL SQLAlchemy can open, without a password in it (it is saved in tune.json)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigError(
            f"--storage {url!r} is not a database URL SQLAlchemy knows ({type(exc).__name__}); use e.g. "
            "sqlite:////abs/path/study.db or postgresql://user@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).is_absolute():
        raise ConfigError(
            f"--storage {url!r} names a SQLite file relative to where the command runs (a resume elsewhere would "
            "open another): give an absolute path, sqlite:////abs/path/study.db"
        )
    if parsed.password or {"password", "passwd"} & set(parsed.query):
        raise ConfigError(
            "--storage holds a password, which tune.json would keep: give it to the database client "
            "instead (PGPASSWORD, ~/.pgpass) and drop it from the URL"
        )


@dataclass(frozen=True)
class TuneConfig:
    """One ``tune``: ``base`` is the tuning compare (methods, epochs, tuning seeds, output), the rest
    is how trials are drawn and how the final comparison runs."""

    base: CompareConfig
    trials: int = 16  # configurations per method (per study)
    sampler: str = "qmc"  # quasi-random, as AlgoPerf's external tuning ruleset
    space: tuple[str, ...] = ()  # --space overrides, e.g. "adam.lr=1e-5:1e-1:log"
    storage: str | None = None  # an Optuna storage URL; default: sqlite in the output folder
    batch: int | None = None  # trials per study per round (asked, then trained together); default all
    final_seeds: int = FINAL_SEEDS
    final_epochs: int | None = None
    defaults: bool = True  # also train each method at its registry defaults once (the one-shot marker)
    studies: int = 1  # independent studies per method (AlgoPerf: 5), each of `trials` trials
    ks: tuple[int, ...] = ()  # numbers of trials the ranking is shown at; default 1, 4 and all
    protocol: str | None = None  # the published protocol these settings reproduce (--protocol)
    scale: float = 1.0  # its trials and final seeds scaled down by this (one machine)
    prune: str = "none"  # "halving": successive halving on epoch rungs within each study
    eta: int = 3  # keep the best 1/eta at each rung (Li et al. 2017's default)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"--sampler {self.sampler!r}: choose from {', '.join(SAMPLERS)}")
        for key, value, low, high in (
            ("trials", self.trials, 1, MAX_TRIALS),
            ("batch", self.batch, 1, MAX_TRIALS),
            ("studies", self.studies, 1, 100),
        ):
            if value is None and key == "batch":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"--{key} must be a whole number from {low} to {high}, got {value!r}")
        if self.base.lrs or self.base.trials or self.base.lr is not None:
            raise ConfigError("tune samples every hyperparameter from its space: drop --lr/--lrs and use --space")
        check_final(self.base, self.final_epochs, self.final_seeds)
        if self.storage is not None:
            _check_storage(self.storage)
        chosen = spaces.parse_space_overrides(self.space, self.base.optimizers)  # one line, before anything is written
        self._check_set(chosen)
        self._check_prune()
        if SAMPLERS[self.sampler].grid:
            if self.studies > 1:
                raise ConfigError("--sampler grid walks the same grid in every study: drop --studies")
            for space in chosen.values():
                grid_points(space, self.trials)

    def _check_set(self, chosen: dict[str, spaces.Space]) -> None:
        """A ``--set`` item may fix what the spaces leave alone, never what they search or fix."""
        for item in self.base.overrides:
            name, _, key = item.partition("=")[0].partition(".")
            space = chosen.get(name.lower())
            targeted = {d.target for d in space.dimensions} if space else set()
            if key in targeted:
                raise ConfigError(
                    f"--set {item}: {name}.{key} belongs to its search space; fix it with --space {name}.NAME=VALUE "
                    "(`fmnist-pl list-optimizers --spaces` names the dimensions)"
                )

    def _check_prune(self) -> None:
        if self.prune not in PRUNERS:
            raise ConfigError(f"--prune {self.prune!r}: choose from {', '.join(PRUNERS)}")
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise ConfigError(f"--eta must be a whole number >= 2, got {self.eta!r}")
        if self.prune == "none":
            return
        if self.base.budget_spec is not None or self.base.epochs < self.eta:
            raise ConfigError(
                f"--prune halving cuts trials at epoch rungs: it needs --epochs >= --eta ({self.eta}) and no --budget"
            )
        if self.round_size < self.eta:
            option = "--batch" if self.batch is not None else "--trials"
            raise ConfigError(f"--prune halving keeps 1/{self.eta} of a round: give {option} >= --eta ({self.eta})")

    @property
    def round_size(self) -> int:
        """Trials of each study per round: ``--batch``, or every trial in one round."""
        return self.batch or self.trials

    @property
    def rounds(self) -> int:
        return math.ceil(self.trials / self.round_size)

    @classmethod
    def for_protocol(cls, base: CompareConfig, protocol: str, scale: float = 1.0, **rest: Any) -> TuneConfig:
        """The settings of a published protocol (:data:`PROTOCOLS`), its trials, studies and final seeds
        scaled by ``scale`` (at least 2 trials and 2 seeds), on ``base``'s methods and epochs."""
        if protocol not in PROTOCOLS:
            raise ConfigError(f"--protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
            raise ConfigError(f"--scale must be a number in (0, 1], got {scale!r}")
        p = PROTOCOLS[protocol]
        if p.one_shot and not rest.get("defaults", True):
            raise ConfigError(f"--protocol {protocol} reports the one-shot defaults too: drop --no-defaults")
        trials = max(2, round(p.trials * scale))
        space = tuple(rest.pop("space", ()))
        if p.step_only:
            space = step_only_space(base.optimizers, p.step_range) + space  # the user's --space items win
        return cls(
            base,
            trials=trials,
            sampler=p.sampler,
            space=space,
            final_seeds=max(2, round(p.final_seeds * scale)),
            studies=max(1, round(p.studies * scale)) if p.studies > 1 else 1,
            ks=tuple(sorted({min(trials, max(1, round(k * scale))) for k in p.ks})),
            protocol=protocol,
            scale=float(scale),
            **rest,
        )

    def describe_protocol(self) -> str | None:
        """The protocol and how far it was scaled down, for the terminal and the report."""
        if self.protocol is None:
            return None
        p = PROTOCOLS[self.protocol]
        text = f"--protocol {self.protocol}: {p.source}"
        if self.scale < 1:
            parts = [f"{self.trials} of {p.trials} trials", f"{self.final_seeds} of {p.final_seeds} final seeds"]
            if p.studies > 1:
                parts.append(f"{self.studies} of {p.studies} studies")
            text += f". Scaled down by --scale {self.scale:g}: {', '.join(parts)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tune.json)."""
        return asdict(self) | {"base": self.base.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuneConfig:
        """Back from :meth:`to_dict` (keys it does not know, such as tune.json's study name, are left out)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "base"}
        for key in ("space", "ks"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(base=CompareConfig.from_dict(data["base"]), **known)


@dataclass
class MethodStudy:
    """One Optuna study of one method (``index``: which of its independent studies), and its space."""

    name: str  # the registry name
    index: int  # 0 when a method has one study
    study: Study
    storage: BaseStorage  # the study's (where a trial's learning curve is reported)
    space: spaces.Space
    seed: int  # its sampler's seed: --seed, plus the study's index
    distributions: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[float]] = field(default_factory=dict)  # the grid sampler's points

    def label(self, number: int) -> str:
        """The run label of trial ``number``: ``trial-003``, or ``s2-trial-003`` in study 2."""
        return trial_label(number) if self.index == 0 else f"s{self.index}-{trial_label(number)}"

    def trial_id(self, number: int) -> int:
        """Trial ``number``'s id in the storage: what its public API writes a trial by (ask-and-tell hands
        out no ``Trial`` for one asked before a stop)."""
        study_id = self.storage.get_study_id_from_name(self.study.study_name)
        return self.storage.get_trial_id_from_study_id_trial_number(study_id, number)


@dataclass(frozen=True)
class TrialResult:
    """What a round's compare says of one trial."""

    value: float | None  # the validation accuracy it is judged by; None: diverged or failed
    status: str  # complete, diverged, failed; pruned (its last rung's result); missing
    hparams: dict[str, Any] | None  # what it trained with (--set items included)
    images_to_target: int | None = None  # training images until validation first reached --target
    epochs_to_target: float | None = None
    curve: tuple[float, ...] = ()  # validation accuracy after each whole epoch, the mean over the tuning seeds
    seconds: float | None = None  # its training's share of its lockstep groups' wall time, over its tuning seeds


# ---------------------------------------------------------------------------- the tune
def tune(
    config: TuneConfig,
    echo: Callable[[str], None] = print,
    backend: Backend | None = None,
    drawer: Drawer | None = None,
    arrays: idx.FashionMNISTArrays | None = None,
) -> Path:
    """Tune each method on the tuning seeds, then compare the chosen configurations on fresh seeds.

    Writes ``<output>/<name>/``: ``tune.json`` (these settings), ``study.db`` (the Optuna studies),
    ``round-<r>/`` (each round's trials, a compare ranked by validation; with pruning, its earlier
    rungs in ``round-<r>.rung-<i>/``), ``tuning.json`` and ``trials.csv`` (every trial; the curves,
    rankings and choices) and ``final/`` (the tuned methods on ``final_seeds`` fresh seeds, whose
    report shows the tuning). Returns the final compare's folder. Running it again on the same folder
    continues it (``tune --resume``).
    """
    backend = backend or InProcess()
    top = output_folder(config.base)
    check_owned(top, "tune")
    final = final_config(config.base, top, config.final_epochs, config.final_seeds)
    _, _, runs = prepare(final, arrays)
    backend.check(runs, config.base)
    how = "the same `fmnist-pl tune` command, or " + shlex.join(["fmnist-pl", "tune", "--resume", str(top)])
    with holding(top, "tune", how):
        prefix = _check_same(top, config)
        # Before the studies exist: a start that fails between the two finds its studies' name again.
        store.write_json(top / TUNE_FILE, config.to_dict() | {"study_prefix": prefix})
        with _quiet_optuna():
            studies = _studies(config, prefix, top)
            if config.protocol is not None:
                echo(str(config.describe_protocol()))
            for r in range(1, config.rounds + 1):
                _round(config, top, studies, r, echo, backend, drawer, arrays)
            summary = _summarize(config, top, studies)
        store.write_json(top / SUMMARY_FILE, summary)
        store.atomic_write_text(top / TRIALS_FILE, stats.trials_csv(summary))
        for line in stats.summary_lines(summary):
            echo(line)
        failed = [name for name, m in summary["methods"].items() if m["chosen"] is None]
        if failed:
            raise ConfigError(
                f"every trial of {', '.join(failed)} diverged or failed; narrow the space (--space) and continue "
                f"with a new --name"
            )
        chosen = tuple(
            f"{name}.{item}" for name, m in summary["methods"].items() for item in _items(name, m["chosen"]["hparams"])
        )
        final = replace(final, overrides=config.base.overrides + chosen)  # the choice wins
        resume = (top / "final" / store.CONFIG_FILE).exists()
        return compare(
            final, resume=resume, echo=echo, extra={"tuning": summary}, backend=backend, drawer=drawer, arrays=arrays
        )


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every study created and trial told at INFO; the terminal shows our lines instead."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            # GridSampler's seed and enqueue_trial's fixed parameters are marked experimental: no news to the user.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(before)


def _comparable(config: TuneConfig) -> dict[str, Any]:
    """What must not change when a tune continues: all but the progress bars, where the data is and where
    the folder is (a tune may be moved or renamed)."""
    loose = {"progress": True, "data_dir": None, "download": False, "output_dir": ".", "name": None}
    return asdict(replace(config, base=replace(config.base, **loose)))


def _check_same(top: Path, config: TuneConfig) -> str:
    """A folder's tune continues only with the settings it started with (other trials or spaces would
    make its studies answer another question); returns its studies' name prefix, made at its start."""
    path = top / TUNE_FILE
    if not path.exists():
        return f"{top.name}-{uuid.uuid4().hex[:8]}"  # unique in a shared --storage
    try:
        data = store.read_json(path)
        saved = TuneConfig.from_dict(data)
        prefix = str(data["study_prefix"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a tune's settings ({exc}); choose another --name") from None
    old, new = _comparable(saved), _comparable(config)
    if old != new:
        changed = [f"--{k.replace('_', '-')}" for k in new if k != "base" and old[k] != new[k]]
        changed += [f"--{k.replace('_', '-')}" for k in new["base"] if old["base"][k] != new["base"][k]]
        raise ConfigError(
            f"{top} holds a tune started with other settings ({', '.join(changed)}); continue it as it was "
            f"started with `{shlex.join(['fmnist-pl', 'tune', '--resume', str(top)])}`, or choose another --name"
        )
    return prefix


def storage_url(config: TuneConfig, top: Path) -> str:
    """``--storage``, or the SQLite database in the output folder (``optuna-dashboard`` reads it)."""
    return config.storage or f"sqlite:///{top / STUDY_FILE}"


def study_name(prefix: str, name: str, index: int) -> str:
    """``<folder>-<id>/adam``, or ``<folder>-<id>/adam/study-2`` among several studies."""
    return f"{prefix}/{name}" + (f"/study-{index}" if index else "")


def _studies(config: TuneConfig, prefix: str, top: Path) -> list[MethodStudy]:
    """Every method's studies, created or, on a resume, loaded from the storage."""
    import optuna

    chosen = spaces.parse_space_overrides(config.space, config.base.optimizers)
    # One database connection for all the studies (Optuna's documented RDBStorage; create_study puts
    # its cache in front), also what a trial's learning curve is written through (_report_curve).
    storage = optuna.storages.RDBStorage(storage_url(config, top))
    out = []
    for name in (n.lower() for n in config.base.optimizers):
        grid = grid_points(chosen[name], config.trials) if SAMPLERS[config.sampler].grid else {}
        for index in range(1, config.studies + 1) if config.studies > 1 else (0,):
            study = optuna.create_study(
                study_name=study_name(prefix, name, index),
                storage=storage,
                direction="maximize",
                load_if_exists=True,
            )
            dists = spaces.to_distributions(chosen[name])
            out.append(MethodStudy(name, index, study, storage, chosen[name], config.base.seed + index, dists, grid))
    return out


def _round(
    config: TuneConfig,
    top: Path,
    studies: list[MethodStudy],
    r: int,
    echo: Callable[[str], None],
    backend: Backend,
    drawer: Drawer | None,
    arrays: idx.FashionMNISTArrays | None,
) -> None:
    """Round ``r``: trials (r-1)*B .. r*B-1 of every study asked (those not asked yet), trained as one
    compare (resumed if it was started) and told (those not told yet)."""
    lo, hi = (r - 1) * config.round_size, min(r * config.round_size, config.trials)
    batch = []
    for m in studies:
        _ask_up_to(config, m, hi)
        batch.append((m, [t for t in m.study.get_trials(deepcopy=False) if lo <= t.number < hi]))
    if all(t.state.is_finished() for _, trials in batch for t in trials):
        return  # told before a stop
    entries = [(m.name, "defaults") for m in studies if config.defaults and r == 1 and m.index <= 1]
    trial_entries = [
        (m.name, m.label(t.number), *_items(m.name, spaces.apply(m.space, t.params)))
        for m, trials in batch
        for t in trials
    ]
    names = ", ".join(dict.fromkeys(m.name for m in studies))
    count = len(trial_entries)
    echo(f"round {r}: {count} trials of {names} ({config.sampler} sampler), {config.base.epochs} epochs")

    previous: Path | None = None  # the last rung's folder: the next step's runs go on from its checkpoints

    def train(kept: Sequence[tuple[str, ...]], stop: int | None, rung: int | None) -> dict[str, TrialResult]:
        nonlocal previous
        name = f"round-{r}" if rung is None else f"round-{r}{RUNG_MARK}{rung}"
        round_config = replace(config.base, output_dir=str(top), name=name, trials=tuple(kept), stop_epoch=stop)
        resume = (top / name / store.CONFIG_FILE).exists()
        folder = compare(
            round_config,
            resume=resume,
            echo=echo,
            backend=backend,
            drawer=drawer,
            arrays=arrays,
            write_report=False,
            carry_from=() if previous is None else (previous,),
        )
        previous = folder
        return trial_results(folder, config.base.target)

    pruned: dict[str, TrialResult] = {}  # a pruned trial's last rung's result
    # The trials still to tell, by run, with where their curves go (the storage and the trial's id there).
    untold = {
        f"{m.name}/{m.label(t.number)}": (m.storage, m.trial_id(t.number))
        for m, trials in batch
        for t in trials
        if not t.state.is_finished()
    }
    # Each trial's curve in its study as the round trains (optuna-dashboard), from the runs' TensorBoard files;
    # not under a --budget: a run it stops mid-epoch logs that part epoch, which a study could not take back.
    with LiveCurves(lambda: _round_folders(top, r), {} if config.base.budget_spec else untold):
        results = _train_round(config, r, entries, trial_entries, train, pruned, echo)
    from optuna.trial import TrialState

    for m, trials in batch:
        # Telling runs the sampler's after_trial: a GridSampler would stop the study (allowed only
        # inside study.optimize) once its grid is spent. Sampling is over for these trials anyway.
        m.study.sampler = _random(m.seed, 0, m.grid)
        for t in trials:
            if t.state.is_finished():
                continue  # told before a stop
            run = f"{m.name}/{m.label(t.number)}"
            got = pruned.get(run) or results[run]
            _report_curve(*untold[run], got.curve)
            if run in pruned and got.value is not None:
                m.study.tell(t.number, state=TrialState.PRUNED)
                continue
            # A diverged trial - at a rung or at the end - is the worst result there is, not a failure
            # to ignore or a pruned one: an adaptive sampler (TPE) then learns where the space diverges.
            m.study.tell(t.number, stats.WORST if got.value is None else got.value)


def _train_round(
    config: TuneConfig,
    r: int,
    entries: list[tuple[str, ...]],
    trial_entries: list[tuple[str, ...]],
    train: Callable[[Sequence[tuple[str, ...]], int | None, int | None], dict[str, TrialResult]],
    pruned: dict[str, TrialResult],
    echo: Callable[[str], None],
) -> dict[str, TrialResult]:
    """Train round ``r``'s plan: through its pruning rungs (the trials cut at each go into ``pruned``), then
    to the end; its results by setting."""
    if config.prune == "halving":
        # Every rung trains the full plan and stops at its epoch; the default runs (never cut) go
        # through the rungs too, so that each next step's groups all go on from the last rung.
        for rung, epochs in enumerate(rungs(config.base.epochs, config.eta)[:-1], start=1):
            if not trial_entries:
                break
            at_rung = train(entries + trial_entries, epochs, rung)
            keep = halving_survivors(trial_entries, {run: got.value for run, got in at_rung.items()}, config.eta)
            cut = (f"{e[0]}/{e[1]}" for e in trial_entries if e[1] not in keep.get(e[0], ()))
            pruned |= {run: at_rung[run] for run in cut}
            trial_entries = [e for e in trial_entries if e[1] in keep.get(e[0], ())]
            echo(f"round {r}, rung {rung} ({epochs} epochs): {len(trial_entries)} trials go on")
    return train(entries + trial_entries, None, None) if entries + trial_entries else {}


def _report_curve(storage: BaseStorage, trial_id: int, curve: Sequence[float]) -> None:
    """A trial's validation accuracy after each epoch as its intermediate values (step = epoch): Optuna's
    learning curve of a trial, which optuna-dashboard plots; a pruned trial's ends at its rung.

    Through the storage's public API: ask-and-tell hands out no ``Trial`` for a trial asked before a
    stop. A step that holds this value already (seen live, :mod:`fmnist_pl.study.live`, or reported
    before a stop) is not written again; any other value it holds is replaced by the round's."""
    if not curve:
        return
    current = storage.get_trial(trial_id).intermediate_values
    for step, value in enumerate(curve, start=1):
        if math.isfinite(value) and current.get(step) != value:
            storage.set_trial_intermediate_value(trial_id, step, value)


def _rung(folder: Path) -> int:
    """A rung folder's rung: 2 for ``round-3.rung-2``."""
    return int(folder.name.rsplit("-", 1)[1])


def _round_folders(top: Path, r: int) -> list[Path]:
    """Round ``r``'s compare folders in the order they train: its pruning rungs, then its own."""
    return [*sorted(top.glob(f"round-{r}{RUNG_MARK}*"), key=_rung), top / f"round-{r}"]


def _ask_up_to(config: TuneConfig, m: MethodStudy, count: int) -> None:
    """Ask ``m``'s study until it holds ``count`` trials (a trial enqueued before a stop is asked first)."""
    from optuna.trial import TrialState

    for t in m.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if set(t.params) != set(m.distributions) or "run" not in t.user_attrs:
            _finish_cut_ask(config, m, t)  # asked, but stopped before Optuna wrote all of it
    for _ in m.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        _ask(config, m, enqueue=False)
    while len(m.study.get_trials(deepcopy=False)) < count:
        _ask(config, m, enqueue=True)


def _ask(config: TuneConfig, m: MethodStudy, enqueue: bool) -> None:
    """Ask ``m``'s study for its next trial, its sampler seeded by the trial's number (a restart asks
    the same); a sampler whose points are ``enqueued`` gets the trial's point first (:func:`qmc_point`)."""
    number = len(m.study.get_trials(deepcopy=False))
    sampler = SAMPLERS[config.sampler]
    if sampler.enqueued and enqueue:
        m.study.enqueue_trial(qmc_point(m.distributions, m.seed, number))
    m.study.sampler = sampler.make(m.seed, number, m.grid)
    trial = m.study.ask(m.distributions)
    trial.set_user_attr("run", f"{m.name}/{m.label(trial.number)}")


def _finish_cut_ask(config: TuneConfig, m: MethodStudy, trial: FrozenTrial) -> None:
    """Write what a stop cut off while Optuna wrote ``trial`` (it writes an asked trial's values one at a
    time, then we add its run's name): the same ask replayed on an in-memory copy of the study as it
    then stood (its trials before this one) with the sampler seeded as :func:`_ask` seeded it draws the
    same values, so the trial trains as first asked; a value already written must agree, or it is one line."""
    import optuna

    scratch = optuna.create_study(direction="maximize")  # in memory; quiet under _quiet_optuna
    scratch.add_trials([t for t in m.study.get_trials(deepcopy=False) if t.number < trial.number])
    sampler = SAMPLERS[config.sampler]
    if sampler.enqueued:
        scratch.enqueue_trial(qmc_point(m.distributions, m.seed, trial.number))
    scratch.sampler = sampler.make(m.seed, trial.number, m.grid)
    again = scratch.ask(m.distributions)
    if again.number != trial.number or any(not _same(again.params[k], v) for k, v in trial.params.items()):
        raise ConfigError(
            f"trial {trial.number} of study {m.study.study_name} was cut off while Optuna wrote it, and asking it "
            "again gives other values (was the study changed by hand?): start the tune again with another --name"
        )
    trial_id = m.trial_id(trial.number)
    for name, dist in m.distributions.items():
        if name not in trial.params:
            m.storage.set_trial_param(trial_id, name, dist.to_internal_repr(again.params[name]), dist)
    m.storage.set_trial_user_attr(trial_id, "run", f"{m.name}/{m.label(trial.number)}")


def trial_label(number: int) -> str:
    """A trial's run label: ``trial-007``."""
    return f"trial-{number:03d}"


def _items(name: str, hparams: dict[str, Any]) -> list[str]:
    """``key=value`` items for the hyperparameters that differ from the registry's defaults (tuples
    as ``a,b``; every float with all its digits)."""
    defaults = registry.get_info(name).defaults
    out = []
    for key, value in hparams.items():
        if key in defaults and _same(defaults[key], value):
            continue
        text = (
            ",".join(map(repr, value))
            if isinstance(value, (tuple, list))
            else value
            if isinstance(value, str)
            else repr(value)
        )
        out.append(f"{key}={text}")
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal, a tuple and the list JSON made of it included."""
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return list(a) == list(b)
    return a == b


def rungs(epochs: int, eta: int) -> list[int]:
    """Successive halving's epoch rungs up to ``epochs``: epochs / eta^i, whole and at least 1, ascending
    (9 epochs, eta 3: 1, 3, 9)."""
    out = {epochs}
    value = float(epochs)
    while value / eta >= 1:
        value /= eta
        out.add(max(1, round(value)))
    return sorted(out)


def halving_survivors(
    entries: Sequence[tuple[str, ...]], values: Mapping[str, float | None], eta: int
) -> dict[str, set[str]]:
    """Per method, the labels of the best ceil(n / eta) of each of its studies' trials by validation
    accuracy at this rung (a diverged trial never goes on; ties keep the earlier trial): successive
    halving's cut (Jamieson & Talwalkar 2016), within each study, so that every method keeps the same share."""
    by_study: dict[tuple[str, str], list[tuple[str, float | None]]] = {}
    for name, label, *_ in entries:
        study = label.rpartition("trial-")[0]  # "s2-" in a method's second study, "" with one study
        by_study.setdefault((name, study), []).append((label, values[f"{name}/{label}"]))
    out: dict[str, set[str]] = {}
    for (name, _), rows in by_study.items():
        keep = math.ceil(len(rows) / eta)
        ranked = sorted((r for r in rows if r[1] is not None), key=lambda r: -r[1])  # stable: ties keep their order
        out.setdefault(name, set()).update(label for label, _ in ranked[:keep])
    return out


def trial_results(folder: Path, target: float | None, after_epoch: int = 0) -> dict[str, TrialResult]:
    """Per setting of a round: the validation accuracy a trial is judged by (its best epoch's, the mean
    over the tuning seeds, as a sweep selects; None for a diverged or failed run), its status and
    hyperparameters, when it first reached ``target`` on validation (the slowest seed's; None where
    a seed never did): AlgoPerf's time to result; and the seconds of its epochs after ``after_epoch``."""
    loaded = store.load_compare(folder)
    hparams = {r["setting"]: r["optimizer"]["hparams"] for r in loaded["config"]["runs"]}
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for run in loaded["runs"]:
        by_setting.setdefault(run["setting"], []).append(run)
    out: dict[str, TrialResult] = {}
    for setting, runs in by_setting.items():
        # An epoch's seconds are its lockstep group's wall time, which the group's K runs shared: 1/K is
        # this run's. Epochs up to ``after_epoch`` were trained (and counted) in an earlier rung's folder.
        seconds = sum(
            sum(row.get("seconds") or 0.0 for row in r.get("history") or () if row["epoch"] > after_epoch)
            / max(1, (r.get("timing") or {}).get("lockstep_runs") or 1)
            for r in runs
        )
        bad = [r.get("status", "failed") for r in runs if r.get("status") != "ok"]
        if bad:
            out[setting] = TrialResult(None, bad[0], hparams.get(setting), curve=mean_curve(runs), seconds=seconds)
            continue
        reached = [first_reached(validation_points(r), target) if target is not None else None for r in runs]
        slowest = max(reached, key=lambda p: p["images"]) if all(reached) else None  # type: ignore[arg-type, return-value]
        out[setting] = TrialResult(
            sum(map(best_val_acc, runs)) / len(runs),
            "complete",
            hparams.get(setting),
            int(slowest["images"]) if slowest else None,
            float(slowest["epoch"]) if slowest else None,
            mean_curve(runs),
            seconds,
        )
    return out


def mean_curve(runs: Sequence[Mapping[str, Any]]) -> tuple[float, ...]:
    """A setting's validation accuracy after each whole epoch, the mean over its tuning seeds: the epochs
    every seed finished (under a --budget a last row may be part of one) before any of them diverged -
    what TensorBoard shows of them, and so what a study is shown live (:mod:`fmnist_pl.study.live`)."""

    def whole(run: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        stop = run.get("diverged_epoch")
        return [
            row for row in run.get("history") or () if not row.get("fraction") and (stop is None or row["epoch"] < stop)
        ]

    rows = [whole(r) for r in runs]
    epochs = min(map(len, rows), default=0)
    return tuple(mean(seed[i]["val_acc"] for seed in rows) for i in range(epochs))


def _summarize(config: TuneConfig, top: Path, studies: list[MethodStudy]) -> dict[str, Any]:
    """Every trial as plain data, per method (its studies pooled), and the statistics of the tuning
    (:func:`fmnist_pl.analysis.tuning.summarize`)."""
    base = config.base
    plan = rungs(base.epochs, config.eta) if config.prune == "halving" else [base.epochs]
    results: dict[str, TrialResult] = {}
    trained: dict[str, int] = {}  # run -> epochs it trained (a survivor goes on from its rung)
    # A pruned trial's result is its last rung's; a trial that went on to the end has its round's own.
    folders = [f for f in top.glob("round-*") if (f / store.CONFIG_FILE).exists()]
    rung_folders = sorted((f for f in folders if RUNG_MARK in f.name), key=_rung)
    seconds: dict[str, float] = {}  # run -> its training's seconds, over the folders it trained in
    for folder in rung_folders:
        rung = _rung(folder)
        epochs = plan[rung - 1]
        for run, got in trial_results(folder, base.target, plan[rung - 2] if rung > 1 else 0).items():
            results[run] = replace(got, status="pruned") if got.status == "complete" else got
            trained[run] = max(trained.get(run, 0), epochs)
            seconds[run] = seconds.get(run, 0.0) + (got.seconds or 0.0)
    for folder in (f for f in folders if RUNG_MARK not in f.name):
        for run, got in trial_results(folder, base.target, plan[-2] if len(plan) > 1 else 0).items():
            results[run] = got
            trained[run] = base.epochs
            seconds[run] = seconds.get(run, 0.0) + (got.seconds or 0.0)
    rows: dict[str, list[dict[str, Any]]] = {}
    for m in studies:
        for t in sorted(m.study.get_trials(deepcopy=False), key=lambda t: t.number)[: config.trials]:
            run = f"{m.name}/{m.label(t.number)}"
            got = results.get(run, TrialResult(None, "missing", None))
            curve = list(got.curve)
            rows.setdefault(m.name, []).append(
                {
                    "number": t.number,
                    "study": m.index,
                    "run": run,
                    "params": dict(t.params),
                    "hparams": got.hparams or spaces.apply(m.space, t.params),
                    "value": got.value,
                    "status": got.status,
                    # the validation curve in brief (the mean over the tuning seeds, whole epochs)
                    "epochs": len(curve) if curve else None,
                    "best_acc_epoch": curve.index(max(curve)) + 1 if curve else None,
                    "last_val_acc": curve[-1] if curve else None,
                    "images_to_target": got.images_to_target,
                    "epochs_to_target": got.epochs_to_target,
                    "model_epochs": trained.get(run, 0) * base.seeds,
                    "seconds": seconds.get(run),
                }
            )
    first = {m.name: m for m in studies}
    methods = {
        name: stats.MethodTrials(
            name=name,
            trials=trials,
            space=first[name].space,
            distributions=first[name].distributions,
            defaults=results[f"{name}/defaults"].value if f"{name}/defaults" in results else None,
        )
        for name, trials in rows.items()
    }
    return stats.summarize(
        methods,
        ks=config.ks,
        setup={
            "sampler": config.sampler,
            "trials": config.trials,
            "studies": config.studies,
            "round_size": config.round_size,
            "epochs": base.epochs,
            "target": base.target,
            "tuning_seeds": seed_range(base.seed_list),
            "final_seeds": seed_range(final_config(base, top, config.final_epochs, config.final_seeds).seed_list),
            "storage": storage_url(config, top) if config.storage is None else "--storage (given)",
            "protocol": config.describe_protocol(),
            "prune": None
            if config.prune == "none"
            else f"successive halving, eta {config.eta}, epoch rungs {', '.join(map(str, plan))}",
        },
    )
