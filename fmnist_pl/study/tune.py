"""Tune every method with the same number of trials, then compare the tuned methods on fresh seeds.

The protocol of Sivaprasad et al. 2020 and Schmidt et al. 2021 ("Descending through a Crowded
Valley"): a ranking means little without the tuning each method got, so every method gets
``--trials`` configurations sampled from its search space (:mod:`fmnist_pl.optim.spaces`), chosen
on validation accuracy, and the report shows the expected best validation accuracy against the
number of trials (:mod:`fmnist_pl.analysis.tuning`) before the chosen configurations are
retrained on fresh seeds and compared with the verdict statistics.

Optuna does the sampling, through its ask-and-tell interface: a batch of asked trials becomes
one ``compare`` (a round, ``round-<n>/``), whose gradient trials train together in one lockstep
group, as a compare's runs do - the workload where lockstep pays most. Each method is an Optuna
study in ``study.db`` (SQLite) inside the output folder, or in ``--storage``, so that
``optuna-dashboard`` shows it; a study resumed after ``kill -9`` asks nothing twice: the trials
asked and not yet told are the round to finish, and every sampler is seeded by the trial number.
"""

from __future__ import annotations

import contextlib
import math
import shlex
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from fmnist_pl import store
from fmnist_pl.analysis import tuning as stats
from fmnist_pl.config import CompareConfig
from fmnist_pl.data import idx
from fmnist_pl.errors import ConfigError, Interrupted
from fmnist_pl.execution.backend import Backend, InProcess
from fmnist_pl.optim import registry, spaces
from fmnist_pl.store.lock import check_owned, exclusive, only_marked, remove_failed_start
from fmnist_pl.study.compare import compare
from fmnist_pl.study.setup import output_folder, prepare
from fmnist_pl.study.sweep import FINAL_SEEDS, check_final, seed_range

if TYPE_CHECKING:
    from optuna import Study
    from optuna.samplers import BaseSampler

    from fmnist_pl.report.figures import Drawer

TUNE_FILE = "tune.json"  # the tune's own settings: what --resume continues
SUMMARY_FILE = "tuning.json"  # the trials, curves, rankings and choices (also in the final report)
TRIALS_FILE = "trials.csv"
STUDY_FILE = "study.db"
MAX_TRIALS = 1000
SEED_STRIDE = 1_000_003  # sampler seed of trial n: seed * stride + n (a prime, so no two trials share one)


def _random(seed: int, number: int, grid: dict[str, list[float]]) -> BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed * SEED_STRIDE + number)


def _tpe(seed: int, number: int, grid: dict[str, list[float]]) -> BaseSampler:
    import optuna

    # constant_liar: the trials of one batch are asked before any is told; without it TPE would
    # suggest the same point for all of them.
    return optuna.samplers.TPESampler(seed=seed * SEED_STRIDE + number, constant_liar=True, multivariate=True)


def _grid(seed: int, number: int, grid: dict[str, list[float]]) -> BaseSampler:
    import optuna

    # Trial n takes grid point n (Optuna's GridSampler does so for the first len(grid) trials).
    return optuna.samplers.GridSampler(grid, seed=seed)


SAMPLERS: dict[str, Callable[[int, int, dict[str, list[float]]], BaseSampler]] = {
    "qmc": _random,  # not used to sample: qmc trials are enqueued Sobol points (qmc_point), this only asks them
    "random": _random,
    "tpe": _tpe,
    "grid": _grid,
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
    if count == 1:
        return {d.name: [d.low]}
    if d.log:
        a, b = math.log10(d.low), math.log10(d.high)
        values = [10 ** (a + (b - a) * i / (count - 1)) for i in range(count)]
    else:
        values = [d.low + (d.high - d.low) * i / (count - 1) for i in range(count)]
    if d.integer:
        values = sorted({int(round(v / d.step) * d.step) for v in values})
    return {d.name: values}


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
    from fmnist_pl.study.sweep import step_param

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


@dataclass(frozen=True)
class TuneConfig:
    """One ``tune``: ``base`` is the tuning compare (methods, epochs, tuning seeds, output), the rest
    is how trials are drawn and how the final comparison runs."""

    base: CompareConfig
    trials: int = 16  # configurations per method
    sampler: str = "qmc"  # quasi-random, as AlgoPerf's external tuning ruleset
    space: tuple[str, ...] = ()  # --space overrides, e.g. "adam.lr=1e-5:1e-1:log"
    storage: str | None = None  # an Optuna storage URL; default: sqlite in the output folder
    batch: int | None = None  # trials per method per round (asked, then trained together); default all
    final_seeds: int = FINAL_SEEDS
    final_epochs: int | None = None
    defaults: bool = True  # also train each method at its registry defaults once (the one-shot marker)
    studies: int = 1  # independent studies per method (AlgoPerf: 5), each of `trials` trials
    ks: tuple[int, ...] = ()  # numbers of trials the ranking is shown at; default 1, 4 and all
    protocol: str | None = None  # the published protocol these settings reproduce (--protocol)
    scale: float = 1.0  # its trials and final seeds scaled down by this (one machine)
    prune: str = "none"  # "halving": successive halving on epoch rungs within each method's trials
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
        if self.prune not in PRUNERS:
            raise ConfigError(f"--prune {self.prune!r}: choose from {', '.join(PRUNERS)}")
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise ConfigError(f"--eta must be a whole number >= 2, got {self.eta!r}")
        if self.prune == "halving" and (self.base.budget_spec is not None or self.base.epochs < self.eta):
            raise ConfigError(
                f"--prune halving cuts trials at epoch rungs: it needs --epochs >= --eta ({self.eta}) and no --budget"
            )
        if self.base.lrs or self.base.trials or self.base.lr is not None:
            raise ConfigError("tune samples every hyperparameter from its space: drop --lr/--lrs and use --space")
        check_final(self.base, self.final_epochs, self.final_seeds)
        chosen = spaces.parse_space_overrides(self.space, self.base.optimizers)  # one line, before anything is written
        if self.sampler == "grid":
            for space in chosen.values():
                grid_points(space, self.trials)

    @property
    def round_size(self) -> int:
        return self.batch or self.trials

    @classmethod
    def for_protocol(cls, base: CompareConfig, protocol: str, scale: float = 1.0, **rest: Any) -> TuneConfig:
        """The settings of a published protocol (:data:`PROTOCOLS`), its trials, studies and final seeds
        scaled by ``scale`` (at least 2 trials and 2 seeds), on ``base``'s methods and epochs."""
        if protocol not in PROTOCOLS:
            raise ConfigError(f"--protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
            raise ConfigError(f"--scale must be a number in (0, 1], got {scale!r}")
        p = PROTOCOLS[protocol]
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
        return asdict(self) | {"base": self.base.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuneConfig:
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
    space: spaces.Space
    seed: int  # its sampler's seed: --seed, plus the study's index
    distributions: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[float]] = field(default_factory=dict)  # the grid sampler's points

    def label(self, number: int) -> str:
        """The run label of trial ``number``: ``trial-003``, or ``s2-trial-003`` in study 2."""
        return trial_label(number) if self.index == 0 else f"s{self.index}-{trial_label(number)}"


def tune(
    config: TuneConfig,
    echo: Callable[[str], None] = print,
    backend: Backend | None = None,
    drawer: Drawer | None = None,
    arrays: idx.FashionMNISTArrays | None = None,
) -> Path:
    """Tune each method on the tuning seeds, then compare the chosen configurations on fresh seeds.

    Writes ``<output>/<name>/``: ``tune.json`` (these settings), ``study.db`` (the Optuna studies),
    ``round-<n>/`` (each round's trials, a compare ranked by validation), ``tuning.json`` and
    ``trials.csv`` (every trial; the curves, rankings and choices) and ``final/`` (the tuned methods on
    ``final_seeds`` fresh seeds, whose report shows the tuning). Returns the final compare's folder.
    Running it again on the same folder continues it (``tune --resume``).
    """
    backend = backend or InProcess()
    top = output_folder(config.base)
    check_owned(top, "tune")
    final_config = _final_config(config, top)
    _, _, runs = prepare(final_config, arrays)
    backend.check(runs, config.base)
    how = "the same `fmnist-pl tune` command, or " + shlex.join(["fmnist-pl", "tune", "--resume", str(top)])
    with exclusive(top, "tune") as claim:
        try:
            _check_same(top, config)
            store.write_json(top / TUNE_FILE, config.to_dict())
            with _quiet_optuna():
                studies = _studies(config, top)
                if config.protocol is not None:
                    echo(str(config.describe_protocol()))
                while _round(config, top, studies, echo, backend, drawer, arrays):
                    pass
                summary = _summarize(config, top, studies)
            store.write_json(top / SUMMARY_FILE, summary)
            store.atomic_write_text(top / TRIALS_FILE, stats.trials_csv(summary))
            for line in stats.summary_lines(summary):
                echo(line)
            overrides = tuple(
                f"{name}.{item}"
                for name, m in summary["methods"].items()
                for item in _items(name, m["chosen"]["hparams"])
            )
            final = replace(final_config, overrides=config.base.overrides + overrides)  # the choice wins
            resume = (top / "final" / store.CONFIG_FILE).exists()
            return compare(
                final,
                resume=resume,
                echo=echo,
                extra={"tuning": summary},
                backend=backend,
                drawer=drawer,
                arrays=arrays,
            )
        except Interrupted as exc:
            raise Interrupted(exc.folder, exc.signum, how, exc.started) from None
        finally:
            if only_marked(top):
                remove_failed_start(claim)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every study created and trial told at INFO; the terminal shows our lines instead."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            # QMCSampler and GridSampler's seed are marked experimental: no news to the user.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(before)


def _final_config(config: TuneConfig, top: Path) -> CompareConfig:
    base = config.base
    return replace(
        base,
        output_dir=str(top),
        name="final",
        epochs=config.final_epochs or base.epochs,
        seed=base.seed + base.seeds,
        seeds=config.final_seeds,
    )


def _check_same(top: Path, config: TuneConfig) -> None:
    """A folder's tune continues only with the settings it started with: other trials or spaces
    would make its studies answer another question."""
    path = top / TUNE_FILE
    if not path.exists():
        return
    try:
        saved = TuneConfig.from_dict(store.read_json(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a tune's settings ({exc}); choose another --name") from None
    if _comparable(saved) != _comparable(config):
        changed = [k for k in TuneConfig.__dataclass_fields__ if getattr(saved, k) != getattr(config, k)]
        raise ConfigError(
            f"{top} holds a tune started with other settings ({', '.join(changed)}); continue it with "
            f"`{shlex.join(['fmnist-pl', 'tune', '--resume', str(top)])}` or choose another --name"
        )


def _comparable(config: TuneConfig) -> TuneConfig:
    """What must not change when a tune continues: all but the progress bars and where the data is."""
    return replace(config, base=replace(config.base, progress=True, data_dir=None, download=False))


def storage_url(config: TuneConfig, top: Path) -> str:
    """``--storage``, or the SQLite database in the output folder (``optuna-dashboard`` reads it)."""
    return config.storage or f"sqlite:///{top / STUDY_FILE}"


def _studies(config: TuneConfig, top: Path) -> list[MethodStudy]:
    """Every method's studies (``<name>/<method>``, or ``<name>/<method>/study-<i>`` for several), created
    or, on a resume, loaded from the storage."""
    import optuna

    chosen = spaces.parse_space_overrides(config.space, config.base.optimizers)
    out = []
    for name in (n.lower() for n in config.base.optimizers):
        grid = grid_points(chosen[name], config.trials) if config.sampler == "grid" else {}
        for index in range(1, config.studies + 1) if config.studies > 1 else (0,):
            study = optuna.create_study(
                study_name=f"{top.name}/{name}" + (f"/study-{index}" if index else ""),
                storage=storage_url(config, top),
                direction="maximize",
                load_if_exists=True,
            )
            dists = spaces.to_distributions(chosen[name])
            out.append(MethodStudy(name, index, study, chosen[name], config.base.seed + index, dists, grid))
    return out


def _round(
    config: TuneConfig,
    top: Path,
    studies: list[MethodStudy],
    echo: Callable[[str], None],
    backend: Backend,
    drawer: Drawer | None,
    arrays: idx.FashionMNISTArrays | None,
) -> bool:
    """Train the next round (the trials asked and not told, else newly asked ones) and tell the
    results; False once every study has its trials."""
    from optuna.trial import TrialState

    batch: list[tuple[MethodStudy, list[tuple[int, dict[str, Any]]]]] = []
    for m in studies:
        for _ in m.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            _ask(config, m)  # enqueued before a stop, not yet asked
        trials = m.study.get_trials(deepcopy=False)
        pending = [t for t in trials if t.state == TrialState.RUNNING]
        room = min(config.round_size, config.trials - len(trials))
        for _ in range(0 if pending else max(0, room)):  # a round left unfinished is finished first
            pending.append(_ask(config, m, enqueue=True))
        batch.append((m, [(t.number, dict(t.params)) for t in pending]))
    if not any(rows for _, rows in batch):
        return False
    first = min(number for _, rows in batch for number, _ in rows)
    index = first // config.round_size + 1
    entries = []
    for m, rows in batch:
        if config.defaults and first == 0 and m.index <= 1:
            entries.append((m.name, "defaults"))
        for number, params in rows:
            entries.append((m.name, m.label(number), *_items(m.name, spaces.apply(m.space, params))))
    count = sum(len(rows) for _, rows in batch)
    names = ", ".join(dict.fromkeys(m.name for m, _ in batch))
    echo(f"round {index}: {count} trials of {names} ({config.sampler} sampler), {config.base.epochs} epochs")

    def train(kept: Sequence[tuple[str, ...]], epochs: int, rung: int | None) -> dict[str, dict[str, Any]]:
        name = f"round-{index}" if rung is None else f"round-{index}{RUNG_MARK}{rung}"
        round_config = replace(config.base, output_dir=str(top), name=name, epochs=epochs, trials=tuple(kept))
        resume = (top / name / store.CONFIG_FILE).exists()
        folder = compare(round_config, resume=resume, echo=echo, backend=backend, drawer=drawer, arrays=arrays)
        return trial_results(folder, config.base.target)

    trial_entries = [e for e in entries if e[1] != "defaults"]
    pruned: dict[str, tuple[int, float | None]] = {}  # run -> (the rung's epochs, its value there)
    if config.prune == "halving":
        plan = rungs(config.base.epochs, config.eta)
        for rung, epochs in enumerate(plan[:-1], start=1):
            results = train(trial_entries, epochs, rung)
            keep = halving_survivors(trial_entries, results, config.eta)
            for e in trial_entries:
                run = f"{e[0]}/{e[1]}"
                if e[1] not in keep.get(e[0], ()):
                    pruned[run] = (epochs, results[run]["value"])
            trial_entries = [e for e in trial_entries if e[1] in keep.get(e[0], ())]
            echo(f"round {index}, rung {rung} ({epochs} epochs): {len(trial_entries)} trials go on")
    defaults = [e for e in entries if e[1] == "defaults"]
    results = train(defaults + trial_entries, config.base.epochs, None)
    from optuna.trial import Trial

    for m, rows in batch:
        # Telling runs the sampler's after_trial: a GridSampler would stop the study (allowed only
        # inside study.optimize) once its grid is spent. Sampling is over for these trials anyway.
        m.study.sampler = _random(m.seed, 0, m.grid)
        for number, _ in rows:
            run = f"{m.name}/{m.label(number)}"
            if run in pruned:
                epochs, value = pruned[run]
                if value is not None:
                    trial = next(t for t in m.study.get_trials(deepcopy=False) if t.number == number)
                    Trial(m.study, trial._trial_id).report(value, epochs)  # Optuna keeps it as the pruned value
                m.study.tell(number, state=TrialState.PRUNED)
                continue
            value = results[run]["value"]
            if value is None:
                m.study.tell(number, state=TrialState.FAIL)
            else:
                m.study.tell(number, value)
    return True


RUNG_MARK = ".rung-"  # round-3.rung-1: the first rung of round 3 (the round's own folder holds its last)
PRUNERS = ("none", "halving")


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
    entries: Sequence[tuple[str, ...]], results: dict[str, dict[str, Any]], eta: int
) -> dict[str, set[str]]:
    """Per method, the labels of the best ceil(n / eta) of each of its studies' trials by validation
    accuracy at this rung (a diverged trial never goes on; ties keep the earlier trial): successive
    halving's cut (Jamieson & Talwalkar 2016), within each study, so that every method keeps the same share."""
    by_study: dict[tuple[str, str], list[tuple[str, float | None]]] = {}
    for name, label, *_ in entries:
        study = label.rpartition("trial-")[0]  # "s2-" in a method's second study, "" with one study
        by_study.setdefault((name, study), []).append((label, results[f"{name}/{label}"]["value"]))
    out: dict[str, set[str]] = {}
    for (name, _), rows in by_study.items():
        keep = math.ceil(len(rows) / eta)
        ranked = sorted((r for r in rows if r[1] is not None), key=lambda r: -r[1])  # stable: ties keep their order
        out.setdefault(name, set()).update(label for label, _ in ranked[:keep])
    return out


def _ask(config: TuneConfig, m: MethodStudy, enqueue: bool = False) -> Any:
    """Ask ``m``'s study for its next trial, its sampler seeded by the trial's number (a restart asks
    the same). ``qmc``: the trial's point of the scrambled Sobol sequence is enqueued first, then asked."""
    number = len(m.study.get_trials(deepcopy=False))
    if config.sampler == "qmc":
        if enqueue:
            m.study.enqueue_trial(qmc_point(m.distributions, m.seed, number))
        m.study.sampler = _random(m.seed, number, m.grid)  # every parameter is enqueued
    else:
        m.study.sampler = SAMPLERS[config.sampler](m.seed, number, m.grid)
    trial = m.study.ask(m.distributions)
    trial.set_user_attr("run", f"{m.name}/{m.label(trial.number)}")
    return trial


def qmc_point(distributions: dict[str, Any], seed: int, number: int) -> dict[str, Any]:
    """Point ``number`` of a scrambled Sobol sequence over ``distributions`` (scipy's engine, the one
    Optuna's QMCSampler uses).

    Why not the QMCSampler itself: it learns its space from the first *finished* trial and samples
    at random until then, so a batch asked before any trial is told - a round trained in lockstep -
    would be random points, and the same point for every trial of a fresh sampler."""
    from optuna.distributions import FloatDistribution, IntDistribution
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
        else:
            raise TypeError(f"quasi-random points of {type(d).__name__} are not supported ({name})")
    return out


def trial_label(number: int) -> str:
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
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return list(a) == list(b)
    return a == b


def trial_results(folder: Path, target: float | None) -> dict[str, dict[str, Any]]:
    """Per setting of a round: ``value``, the validation accuracy a trial is judged by (the best epoch's,
    the mean over the tuning seeds, as a sweep selects; None for a diverged or failed run), its
    ``status``, the ``hparams`` it trained with, and the ``images`` and ``epochs`` until its validation
    accuracy first reached ``target`` (the slowest seed's; None where a seed never did): AlgoPerf's
    time to result."""
    loaded = store.load_compare(folder)
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for run in loaded["runs"]:
        by_setting.setdefault(run["setting"], []).append(run)
    hparams = {r["setting"]: r["optimizer"]["hparams"] for r in loaded["config"]["runs"]}
    out: dict[str, dict[str, Any]] = {}
    for setting, runs in by_setting.items():
        row: dict[str, Any] = {"hparams": hparams.get(setting), "images": None, "epochs": None}
        bad = [r.get("status", "failed") for r in runs if r.get("status") != "ok"]
        if bad:
            out[setting] = row | {"value": None, "status": bad[0]}
            continue
        best = [max(p["val_acc"] for p in r["history"] if not math.isnan(p["val_acc"])) for r in runs]
        reached = [_to_target(r, target) for r in runs]
        if target is not None and all(x is not None for x in reached):
            row["images"] = max(x[0] for x in reached)  # type: ignore[index]
            row["epochs"] = max(x[1] for x in reached)  # type: ignore[index]
        out[setting] = row | {"value": sum(best) / len(best), "status": "complete"}
    return out


def _to_target(run: dict[str, Any], target: float | None) -> tuple[int, float] | None:
    """(images, epochs) at the first validation of ``run`` at or above ``target`` (anytime points included)."""
    from fmnist_pl.analysis.targets import validation_points

    if target is None:
        return None
    for p in validation_points(run):
        if p["val_acc"] >= target:
            return int(p["images"]), float(p["epoch"])
    return None


def _summarize(config: TuneConfig, top: Path, studies: list[MethodStudy]) -> dict[str, Any]:
    """Every trial as plain data, per method (its studies pooled), and the statistics of the tuning
    (:func:`fmnist_pl.analysis.tuning.summarize`)."""
    results: dict[str, dict[str, Any]] = {}
    # A pruned trial's result is its last rung's; a trial that went on to the end has the round's own.
    folders = [f for f in top.glob("round-*") if (f / store.CONFIG_FILE).exists()]
    rung_folders = sorted((f for f in folders if RUNG_MARK in f.name), key=lambda f: int(f.name.rsplit("-", 1)[1]))
    for folder in rung_folders:
        results |= {
            run: row | {"status": "pruned"} if row["status"] == "complete" else row
            for run, row in trial_results(folder, config.base.target).items()
        }
    for folder in (f for f in folders if RUNG_MARK not in f.name):
        results |= trial_results(folder, config.base.target)
    rows: dict[str, list[dict[str, Any]]] = {}
    for m in studies:
        for t in sorted(m.study.get_trials(deepcopy=False), key=lambda t: t.number)[: config.trials]:
            run = f"{m.name}/{m.label(t.number)}"
            got = results.get(
                run, {"value": None, "status": "missing", "hparams": None, "images": None, "epochs": None}
            )
            rows.setdefault(m.name, []).append(
                {
                    "number": t.number,
                    "study": m.index,
                    "run": run,
                    "params": dict(t.params),
                    "hparams": got["hparams"] or spaces.apply(m.space, t.params),
                    "value": got["value"],
                    "status": got["status"],
                    "images_to_target": got["images"],
                    "epochs_to_target": got["epochs"],
                }
            )
    first = {m.name: m for m in studies}
    methods = {
        name: stats.MethodTrials(
            name=name,
            trials=trials,
            space=first[name].space,
            distributions=first[name].distributions,
            defaults=(results.get(f"{name}/defaults") or {}).get("value"),
        )
        for name, trials in rows.items()
    }
    base = config.base
    return stats.summarize(
        methods,
        trial_cost=base.epochs * base.seeds,
        ks=config.ks,
        setup={
            "sampler": config.sampler,
            "trials": config.trials,
            "studies": config.studies,
            "round_size": config.round_size,
            "epochs": base.epochs,
            "target": base.target,
            "tuning_seeds": seed_range(base.seed_list),
            "final_seeds": seed_range(_final_config(config, top).seed_list),
            "storage": storage_url(config, top) if config.storage is None else "--storage (given)",
            "protocol": config.describe_protocol(),
            "prune": None
            if config.prune == "none"
            else f"successive halving, eta {config.eta}, epoch rungs "
            + ", ".join(map(str, rungs(base.epochs, config.eta))),
        },
    )
