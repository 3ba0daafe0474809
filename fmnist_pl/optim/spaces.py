"""Hyperparameter search spaces: for every registry entry, which values a tuner may try and how a
sampled point becomes its hyperparameters. A :class:`Space` is plain data; Optuna sees it only through
:func:`to_distributions` (which imports Optuna: the command line starts without it). Decay rates are
searched as ``1 - rate`` on a log scale, so that 0.9, 0.99 and 0.999 are equally far apart; every range
is checked at its corners against the registry's own rules, so that any point a sampler picks builds.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from fmnist_pl.errors import OptimizerError
from fmnist_pl.optim.registry import REGISTRY, Limit, _check_number, check_schedule, get_info

SCHEDULE = "schedule"  # any gradient method's space may search its learning-rate schedule: --space adam.schedule=constant,cosine

if TYPE_CHECKING:  # Optuna is imported by to_distributions only
    from optuna.distributions import BaseDistribution


@dataclass(frozen=True)
class Transform:
    """How a searched value becomes a hyperparameter, and which searched values are meaningful."""

    fn: Callable[[float], float]
    formula: str  # the mapping as text, for describe()
    domain: Limit | None = None


TRANSFORMS: dict[str, Transform] = {
    "identity": Transform(lambda v: v, "value"),
    # 1 - rate in (0, 1] keeps a decay rate (momentum, beta, rho) in [0, 1), where every class accepts it.
    "one_minus": Transform(lambda v: 1.0 - v, "1 - value", Limit(0, 1, low_open=True)),
}


@dataclass(frozen=True)
class Dimension:
    """One searched quantity and where it goes: ``target`` (a registry hyperparameter), position
    ``index`` when that is a tuple (Adam's ``betas``), through ``transform``. ``low == high``: fixed."""

    name: str
    target: str
    low: float
    high: float
    log: bool = False
    integer: bool = False
    index: int | None = None
    transform: str = "identity"
    step: int = 1  # integer spacing: 2 for PGPE's popsize, which must be even (symmetric sampling)
    limit: Limit | None = None  # what the searched value may be beyond the registry's rules (torch's beta1 < 1)
    choices: tuple[str, ...] = ()  # a categorical dimension (the learning-rate schedule): one of these

    @property
    def fixed(self) -> bool:
        return len(self.choices) == 1 if self.choices else self.low == self.high

    @property
    def categorical(self) -> bool:
        return bool(self.choices)


@dataclass(frozen=True)
class Space:
    """The ordered dimensions one optimizer is tuned over, and where the ranges come from."""

    optimizer: str
    dimensions: tuple[Dimension, ...]
    source: str = ""


def _one_minus(name: str, target: str, low: float = 1e-3, high: float = 1.0, index: int | None = None) -> Dimension:
    return Dimension(name, target, low, high, log=True, index=index, transform="one_minus")


def _log(name: str, low: float, high: float) -> Dimension:
    return Dimension(name, name, low, high, log=True)


def _popsize(low: int = 10, high: int = 200, step: int = 1) -> Dimension:
    # log where it can be (cost per generation is linear in popsize); Optuna has no log with a step.
    return Dimension("popsize", "popsize", low, high, log=step == 1, integer=True, step=step)


# The sources, named in each Space's `source` for the report. CV: Schmidt, Schneider & Hennig 2021,
# "Descending through a Crowded Valley" (ICML): every lr log-uniform on [1e-4, 1], Adam's beta1 uniform
# on [0.5, 0.999] and beta2 on [0.8, 0.999] (the sampled values in their published results show it,
# fmnist_2c2d included). Choi et al. 2019, "On Empirical Comparisons of Optimizers for Deep Learning":
# 1 - momentum/beta/rho and eps on log scales, eps far above its default included (CV samples momentum
# and rho themselves log-uniformly, mostly near 0). AlgoPerf: the NAdamW baseline's
# tuning_search_space.json (mlcommons/algorithmic-efficiency): weight decay log-uniform on [5e-3, 1].
_CV, _CHOI, _ALGOPERF = "Schmidt et al. 2021 (Crowded Valley)", "Choi et al. 2019", "AlgoPerf NAdamW baseline"
_SGD_LR = _log("lr", 1e-4, 1.0)
# CV's four decades, one lower for adaptive methods: CV's tuned Adam on Fashion-MNIST (batch 128) took
# 2.8e-4, AlgoPerf's NAdamW range is 1e-4..1e-2, and our batch is 32.
_ADAPTIVE_LR = _log("lr", 1e-5, 1e-1)
_EPS = _log("eps", 1e-10, 1e-1)  # a large eps makes an adaptive method momentum-like (Choi)
# CV's beta2 range as 1 - beta2 on Choi's log scale, down to 1e-4 so that the default 0.999 is inside.
_ADAM = (
    _ADAPTIVE_LR,
    Dimension("beta1", "betas", 0.5, 0.999, index=0, limit=Limit(0, 1, high_open=True)),
    _one_minus("one_minus_beta2", "betas", 1e-4, 0.2, index=1),
    _EPS,
)
_ADAM_SOURCE = f"lr: {_CV}, a decade lower; beta1: {_CV}; 1 - beta2: {_CV} on {_CHOI}'s log scale; eps: {_CHOI}"
_DECAY_SOURCE = f"lr: {_CV}, a decade lower; 1 - decay rate, eps: {_CHOI}"
# Gradient-free: no benchmark publishes ranges for 266,610 weights. popsize spans the CMA-ES/NES default
# 4 + 3 ln d = 41 (Hansen 2016, "The CMA Evolution Strategy: A Tutorial"); stdev_init spans the registry
# defaults (0.01-0.05, chosen by validation accuracy, benchmarks/RESULTS.md) by a decade and more, up to
# 7x the first layer's Glorot std (0.043). NES's centre rate is 1 (Wierstra et al. 2014, JMLR), ClipUp's
# step (PGPE) ~max_speed/2 (Toklu et al. 2020): both searched from two decades below to 2.
_STDEV_INIT = _log("stdev_init", 1e-3, 0.3)
_CENTER_LR = _log("center_learning_rate", 1e-2, 2.0)
_GF_SOURCE = (
    "popsize: around the CMA-ES/NES default 41 (Hansen 2016); center_learning_rate: from two decades below NES's 1 "
    "(Wierstra et al. 2014) and ClipUp's step (Toklu et al. 2020) to 2; stdev_init and the GA's mutation: a decade "
    "and more around the registry defaults (no paper gives ranges for 266,610 weights)"
)

SPACES: dict[str, Space] = {
    s.optimizer: s
    for s in (
        Space("sgd", (_SGD_LR,), _CV),
        Space("momentum", (_SGD_LR, _one_minus("one_minus_momentum", "momentum")), f"lr: {_CV}; 1 - momentum: {_CHOI}"),
        Space("rmsprop", (_ADAPTIVE_LR, _one_minus("one_minus_rho", "rho"), _EPS), _DECAY_SOURCE),
        Space("rmsprop-torch", (_ADAPTIVE_LR, _one_minus("one_minus_alpha", "alpha"), _EPS), _DECAY_SOURCE),
        Space("adam", _ADAM, _ADAM_SOURCE),
        Space("adamw", (*_ADAM, _log("weight_decay", 5e-3, 1.0)), f"{_ADAM_SOURCE}; weight_decay: {_ALGOPERF}"),
        Space("nadam", _ADAM, _ADAM_SOURCE),
        Space("adamax", _ADAM, _ADAM_SOURCE),
        Space("radam", _ADAM, _ADAM_SOURCE),
        Space("adagrad", (_SGD_LR,), f"{_CV} (which tunes Adagrad's lr only)"),
        # A decade above CV's lr range: torch's Adadelta takes lr 1 (Zeiler's rule as published) by default.
        Space(
            "adadelta",
            (_log("lr", 1e-4, 10.0), _one_minus("one_minus_rho", "rho"), _EPS),
            f"lr: {_CV}, up to 10; 1 - rho, eps: {_CHOI}",
        ),
        Space("snes", (_popsize(), _STDEV_INIT, _CENTER_LR), _GF_SOURCE),
        Space("pgpe", (_popsize(step=2), _STDEV_INIT, _CENTER_LR), _GF_SOURCE),
        # Elite fraction: de Boer et al. 2005 take 0.01-0.1 of far larger populations; popsize from 20 so
        # that every corner keeps the 2 elites CEM needs (20 x 0.1).
        Space(
            "cem",
            (_popsize(20), _STDEV_INIT, Dimension("parenthood_ratio", "parenthood_ratio", 0.1, 0.7)),
            f"{_GF_SOURCE}; parenthood_ratio: de Boer et al. 2005, widened",
        ),
        Space("cmaes", (_popsize(), _STDEV_INIT), _GF_SOURCE),
        Space(
            "ga",
            (_popsize(), _STDEV_INIT, _log("mutation_stdev", 1e-3, 0.3), _log("mutation_probability", 1e-3, 1.0)),
            _GF_SOURCE,
        ),
    )
}


def get_space(name: str) -> Space:
    """The default space of registry entry ``name``; an entry without one is a one-line error."""
    info = get_info(name)
    if info.name not in SPACES:
        raise OptimizerError(
            f"{info.name} has no search space; add one to fmnist_pl.optim.spaces.SPACES or leave it out of the tuning"
        )
    return SPACES[info.name]


def _place(hparams: dict[str, Any], dim: Dimension, value: float) -> None:
    """Put searched ``value`` into ``hparams`` as ``dim`` says; values its transform or limit forbid raise."""
    transform = TRANSFORMS[dim.transform]
    for rule in (transform.domain, dim.limit):
        if rule is not None and not rule.allows(value):
            raise OptimizerError(f"bad value {value:g} for {dim.name}: must be {rule}")
    mapped = transform.fn(value)
    if dim.index is None:
        hparams[dim.target] = mapped
    else:
        parts = list(hparams[dim.target])
        parts[dim.index] = mapped
        hparams[dim.target] = tuple(parts)


def apply(space: Space | str, params: Mapping[str, float]) -> dict[str, Any]:
    """The final hyperparameters of a sampled point: the registry's defaults with ``params`` (and the
    space's fixed values) mapped in, checked by the registry's rules; ready for ``OptimizerSpec``."""
    space = space if isinstance(space, Space) else get_space(space)
    info = get_info(space.optimizer)
    unknown = sorted(set(params) - {d.name for d in space.dimensions})
    if unknown:
        raise OptimizerError(f"{space.optimizer} has no search dimension {', '.join(unknown)}")
    hparams = dict(info.defaults)
    for dim in space.dimensions:
        if dim.categorical:
            value = dim.choices[0] if dim.fixed else params.get(dim.name)
            if value not in dim.choices:
                raise OptimizerError(
                    f"{space.optimizer}.{dim.name} must be one of {', '.join(dim.choices)}, got {value!r}"
                )
            hparams[dim.target] = check_schedule(info, str(value))
            continue
        if dim.fixed:
            value = dim.low
        elif dim.name in params:
            # Optuna's log sampling (exp of a log) can miss an end by an ulp; the range's rules hold on it.
            value = min(max(params[dim.name], dim.low), dim.high)
        else:
            raise OptimizerError(f"no value for {space.optimizer}.{dim.name}, which the space searches")
        _place(hparams, dim, int(round(value)) if dim.integer else float(value))
    for key in dict.fromkeys(d.target for d in space.dimensions if not d.categorical):
        _check_number(key, hparams[key], f"{info.name}.{key}", info.limits.get(key))
    problem = info.check(hparams) if info.check is not None else None
    if problem:
        raise OptimizerError(f"{info.name}: {problem}")
    return hparams


def _check_space(space: Space, where: str) -> None:
    """Every corner of the box passes the registry's rules: the limits are intervals and the
    transforms monotone, and CEM's popsize x parenthood_ratio rule is worst at a corner."""
    names = [d.name for d in space.dimensions]
    try:
        for corner in itertools.product(*(d.choices or (d.low, d.high) for d in space.dimensions)):
            apply(space, dict(zip(names, corner)))
    except OptimizerError as exc:
        raise OptimizerError(f"{where}: {exc}; narrow the range") from None


_SYNTAX = "write OPTIMIZER.DIMENSION=LOW:HIGH[:log|int|int,log] or =VALUE, e.g. adam.lr=1e-5:1e-1:log"


def _number(text: str, item: str) -> float:
    try:
        value = float(text)
        if math.isfinite(value):
            return value
    except ValueError:
        pass
    raise OptimizerError(f"bad number {text!r} in --space {item!r}; write a finite number, e.g. 1e-5 or 0.9")


def _override(base: Dimension, value: str, item: str) -> Dimension:
    parts = value.split(":")
    if len(parts) > 3 or not all(parts[:2]):
        raise OptimizerError(f"bad --space {item!r}: {_SYNTAX}")
    flags = set(parts[2].replace(" ", "").split(",")) if len(parts) == 3 else set()
    if not flags <= {"log", "int"}:
        bad = ",".join(sorted(flags - {"log", "int"})) or "(empty)"
        raise OptimizerError(f"bad flag {bad!r} in --space {item!r}; use log, int or int,log")
    log, integer = "log" in flags, "int" in flags
    low = _number(parts[0], item)
    high = _number(parts[1], item) if len(parts) > 1 else low
    if integer and not base.integer:
        raise OptimizerError(f"--space {item!r}: {base.name} is not a whole number; drop int")
    if base.integer:  # popsize and the like stay whole numbers, with or without the flag
        if not (low.is_integer() and high.is_integer()):
            raise OptimizerError(f"--space {item!r}: {base.name} takes whole numbers; write e.g. 10:200:int")
        low, high = int(low), int(high)
    if len(parts) > 1 and low >= high:
        raise OptimizerError(f"--space {item!r}: low {low:g} must be below high {high:g}; swap them, or give one value")
    if log and low <= 0:
        raise OptimizerError(f"--space {item!r}: a log range needs low > 0, got {low:g}; raise low or drop log")
    if log and base.step != 1:
        raise OptimizerError(f"--space {item!r}: {base.name} steps by {base.step}, which has no log scale; drop log")
    return replace(base, low=low, high=high, log=log)


def parse_space_overrides(items: Iterable[str], optimizers: Sequence[str]) -> dict[str, Space]:
    """The spaces of ``optimizers`` with ``--space`` items applied: ``adam.lr=1e-5:1e-1:log`` (a range;
    flags ``log``, ``int``, ``int,log``; none: linear) or ``sgd.lr=0.01`` (fixed, not searched)."""
    names = [get_info(n).name for n in optimizers]
    dims = {name: {d.name: d for d in get_space(name).dimensions} for name in names}
    for item in items:
        target, sep, value = item.partition("=")
        name, dot, dim_name = target.strip().partition(".")
        if not sep or not dot or not name or not dim_name or not value.strip():
            raise OptimizerError(f"bad --space {item!r}: {_SYNTAX}")
        name = name.lower()
        if name not in REGISTRY:
            raise OptimizerError(f"--space names unknown optimizer {name!r}; choose from: {', '.join(REGISTRY)}")
        if name not in dims:
            raise OptimizerError(f"--space names {name!r}, which is not among the tuned optimizers {','.join(names)}")
        schedulable = not get_info(name).gradient_free
        if dim_name == SCHEDULE and not schedulable:
            raise OptimizerError(f"--space {item!r}: {name} has no learning rate to schedule; drop it")
        if dim_name == SCHEDULE and dim_name not in dims[name]:
            dims[name][dim_name] = Dimension(SCHEDULE, SCHEDULE, 0, 0, choices=("constant",))
        if dim_name not in dims[name]:
            valid = ", ".join(dict.fromkeys([*dims[name], *([SCHEDULE] if schedulable else [])]))
            raise OptimizerError(f"--space names {name}.{dim_name}, which {name} does not search; it searches: {valid}")
        base = dims[name][dim_name]
        dims[name][dim_name] = (
            _choices(base, value.strip(), item) if base.categorical else _override(base, value.strip(), item)
        )
        _check_space(Space(name, (dims[name][dim_name],)), f"--space {item!r}")
    out = {name: Space(name, tuple(dims[name].values()), get_space(name).source) for name in names}
    for name, space in out.items():
        _check_space(space, f"the search space of {name}")
    return out


def _choices(base: Dimension, value: str, item: str) -> Dimension:
    """``adam.schedule=constant,cosine``: the schedules a tune tries (one: fixed)."""
    from fmnist_pl.optim.schedules import SCHEDULES

    choices = tuple(dict.fromkeys(c.strip() for c in value.split(",") if c.strip()))
    bad = [c for c in choices if c not in SCHEDULES]
    if not choices or bad:
        raise OptimizerError(
            f"--space {item!r}: {', '.join(bad) or 'no schedule'} is not a schedule; list some of {', '.join(SCHEDULES)}"
        )
    return replace(base, choices=choices)


def to_distributions(space: Space) -> dict[str, BaseDistribution]:
    """Optuna distributions of the searched dimensions, in order; fixed ones are constants (:func:`apply`)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    def one(d: Dimension) -> BaseDistribution:
        if d.categorical:
            return CategoricalDistribution(d.choices)
        if d.integer:
            return IntDistribution(int(d.low), int(d.high), log=d.log, step=d.step)
        return FloatDistribution(d.low, d.high, log=d.log)

    return {d.name: one(d) for d in space.dimensions if not d.fixed}


def at_bound(space: Space, params: Mapping[str, float], rel: float = 0.05) -> list[str]:
    """Searched dimensions whose value lies within ``rel`` of an end of the range (on the log scale
    where the dimension is log): the best point there says to extend that range."""
    near = []
    for d in space.dimensions:
        if d.fixed or d.categorical or d.name not in params:
            continue
        scale = math.log if d.log else float
        position = (scale(params[d.name]) - scale(d.low)) / (scale(d.high) - scale(d.low))
        if position <= rel or position >= 1 - rel:
            near.append(d.name)
    return near


def describe(space: Space) -> str:
    """One line per dimension, e.g. ``lr log-uniform [1e-05, 0.1]``, with where a value goes if not by name."""
    lines = []
    for d in space.dimensions:
        if d.categorical:
            lines.append(f"{d.name} {'fixed ' if d.fixed else 'one of '}{', '.join(d.choices)}")
            continue
        kind = "log-uniform" if d.log else "uniform"
        kind = f"integer {kind}" if d.integer else kind
        text = f"{d.name} fixed {d.low:g}" if d.fixed else f"{d.name} {kind} [{d.low:g}, {d.high:g}]"
        text += f" step {d.step}" if d.step != 1 and not d.fixed else ""
        target = d.target if d.index is None else f"{d.target}[{d.index}]"
        if target != d.name or d.transform != "identity":
            text += f" -> {target} = {TRANSFORMS[d.transform].formula}"
        lines.append(text)
    return "\n".join(lines)
