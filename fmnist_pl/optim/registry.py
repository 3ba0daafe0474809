"""The optimizer registry: a name -> a ``torch.optim`` class (or an EvoTorch algorithm) and its hyperparameters.

Modelled on timm's optimizer factory: each entry is a frozen :class:`OptimizerInfo`, the
registry is a plain dict keyed by lower-case name, and an unknown name raises an error that
lists the valid ones. The four reference entries carry exactly the hyperparameters of the
Keras course report (Géron, *Hands-On ML*, ch. 10); the others use torch's defaults.

Add any ``torch.optim`` class (or your own ``Optimizer`` subclass) with :func:`register`::

    from fmnist_pl.optim import register
    register("radam", torch.optim.RAdam, lr=1e-3, description="RAdam, torch defaults")

Gradient-free entries (``kind="gradient-free"``) name an EvoTorch search algorithm; they train
by scoring a population of weight vectors (:mod:`fmnist_pl.optim.evolution`), and their
``limits`` say which values each hyperparameter may take.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from fmnist_pl.errors import OptimizerError

if TYPE_CHECKING:  # torch is imported only when an optimizer is built: keeps the CLI's errors fast
    from torch.optim import Optimizer

REFERENCE_OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "rmsprop", "adam")


@dataclass(frozen=True)
class OptimizerInfo:
    """One registry entry: the class to build and the hyperparameters it gets by default."""

    name: str
    cls_path: str
    """``"module:Class"``, imported on first use so that listing and validating need no torch."""
    defaults: Mapping[str, Any]
    """Every hyperparameter the optimizer gets; ``--set`` may change exactly these keys."""
    description: str = ""
    kind: str = "gradient"
    """``gradient`` (a ``torch.optim`` optimizer stepping on gradients) or ``gradient-free`` (an EvoTorch searcher)."""
    limits: Mapping[str, Limit] = field(default_factory=dict)
    """Allowed values of some hyperparameters (others: any finite number >= 0, see ``_check_number``)."""
    check: Callable[[Mapping[str, Any]], str | None] | None = None
    """A rule across hyperparameters: the final ones in, a problem (what to change) or None out."""

    @property
    def gradient_free(self) -> bool:
        return self.kind == "gradient-free"

    @property
    def cls(self) -> type[Optimizer]:
        module, _, attr = self.cls_path.partition(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def class_name(self) -> str:
        return self.cls_path.partition(":")[2]


@dataclass(frozen=True)
class OptimizerSpec:
    """A resolved choice: a registry name plus the final hyperparameters (after overrides).

    Plain data so that it can be written to results JSON and logged as TensorBoard hparams.
    """

    name: str
    hparams: Mapping[str, Any] = field(default_factory=dict)

    @property
    def info(self) -> OptimizerInfo:
        return get_info(self.name)

    @property
    def schedule(self) -> str:
        """Its learning-rate schedule (:mod:`fmnist_pl.optim.schedules`); ``constant`` unless one was set."""
        return str(self.hparams.get("schedule", "constant"))

    def kwargs(self) -> dict[str, Any]:
        """The optimizer class's keyword arguments (its hyperparameters, less the schedule)."""
        out = {k: v for k, v in self.hparams.items() if k != "schedule"}
        if "betas" in out:  # JSON round-trips tuples as lists
            out["betas"] = tuple(out["betas"])
        return out

    def setting(self) -> str:
        """Its hyperparameters as one key: specs with equal settings share a param group (``build_shared``)."""
        scheduled = {"schedule": self.schedule} if self.schedule != "constant" else {}  # a group has one schedule
        return repr(sorted((self.kwargs() | scheduled).items()))

    def build(self, params: Iterable[Any]) -> Optimizer:
        """Instantiate the optimizer on ``params``."""
        return build_shared([self], [list(params)])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "class": self.info.class_name, "kind": self.info.kind, "hparams": dict(self.hparams)}


def build_shared(
    specs: list[OptimizerSpec], params: list[list[Any]], capturable: bool = False, fused_kernel: bool = False
) -> Optimizer:
    """One optimizer instance for several models of one optimizer class, a param group per setting.

    Every model keeps its own hyperparameters (its param group's options) and its own state
    (torch keeps state per parameter); the optimizers here are element-wise, so this is
    exactly the update of separate instances, with one Python-side ``step`` for all of them.
    That matters at batch 32, where ``Adam.step``'s Python overhead exceeds its arithmetic
    for this MLP (figures: ``benchmarks/RESULTS.md``).

    ``capturable`` (CUDA only) keeps step counters on the device so that the step can be
    captured in a CUDA graph; classes without the option are graph-safe as they are.
    ``fused_kernel`` lets classes whose fused update is a C kernel of ours (their
    ``fused_is_c_kernel``; :class:`~fmnist_pl.optim.keras_rmsprop.KerasRMSprop`, built with the
    system C compiler on first use) use it; the caller opts in (the lockstep engine does on the CPU).
    """
    if len({s.info.cls_path for s in specs}) != 1:
        raise ValueError("build_shared needs specs of one optimizer class")
    info = specs[0].info
    # Instance-wide options are the first spec's; every group overrides them with its own.
    kwargs = specs[0].kwargs()
    cls = info.cls
    # Models with identical hyperparameters (the seeds of one optimizer) share a param group:
    # torch steps a group with one fused/foreach call, and state stays per parameter.
    by_setting: dict[str, dict[str, Any]] = {}
    for spec, p in zip(specs, params):
        # A scheduled setting's group also carries its schedule and base rate (torch keeps extra keys
        # of a param group, in its state dict too); the engine sets its lr every step.
        scheduled = {"schedule": spec.schedule, "base_lr": spec.hparams["lr"]} if spec.schedule != "constant" else {}
        by_setting.setdefault(spec.setting(), {**spec.kwargs(), **scheduled, "params": []})["params"].extend(p)
    groups = list(by_setting.values())
    # Fastest implementation the class has: fused (one pass over memory per tensor instead of
    # one per op), else foreach (multi-tensor). The algorithm is the same; results differ only
    # by float rounding.
    own_kernel = getattr(cls, "fused_is_c_kernel", False)
    if _accepts(cls, "fused") and (fused_supported(cls) or (own_kernel and fused_kernel)):
        kwargs.setdefault("fused", True)
    elif _accepts(cls, "foreach"):
        kwargs.setdefault("foreach", True)
    if capturable and _accepts(cls, "capturable"):
        kwargs["capturable"] = True
    return cls(groups, **kwargs)


@dataclass(frozen=True)
class Limit:
    """The values one hyperparameter may take: a numeric range (``low_open``/``high_open``: excluding
    that end), whole numbers only (``integer``), ``even`` ones, or one of ``choices`` (a string)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False
    even: bool = False
    choices: tuple[Any, ...] = ()
    high_open: bool = False  # last, so that positional Limit(low, high) keeps its meaning

    def allows(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        if self.integer and (not isinstance(value, int) or isinstance(value, bool)):
            return False
        if self.even and value % 2:
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.choices:
            return f"one of {', '.join(map(str, self.choices))}"
        kind = "an even whole number" if self.even else "a whole number" if self.integer else "a number"
        bounds = [f"{'>' if self.low_open else '>='} {self.low:g}"] if self.low is not None else []
        bounds += [f"{'<' if self.high_open else '<='} {self.high:g}"] if self.high is not None else []
        return f"{kind} {' and '.join(bounds)}".strip()


REGISTRY: dict[str, OptimizerInfo] = {}


def register(
    name: str,
    cls: type[Optimizer] | str,
    description: str = "",
    kind: str = "gradient",
    limits: Mapping[str, Limit] | None = None,
    check: Callable[[Mapping[str, Any]], str | None] | None = None,
    **defaults: Any,
) -> OptimizerInfo:
    """Add ``cls`` (a class or ``"module:Class"``) to the registry under ``name`` (lower case).

    ``defaults`` are the hyperparameters it gets; they are also the keys ``--set`` may change.
    ``kind="gradient-free"``: ``cls`` is an EvoTorch search algorithm (see :mod:`fmnist_pl.optim.evolution`).
    """
    if kind not in ("gradient", "gradient-free"):
        raise ValueError(f"kind must be gradient or gradient-free, got {kind!r}")
    key = name.lower()
    path = cls if isinstance(cls, str) else f"{cls.__module__}:{cls.__qualname__}"
    info = OptimizerInfo(key, path, dict(defaults), description, kind, dict(limits or {}), check)
    REGISTRY[key] = info
    return info


def implementation(optimizer: Optimizer) -> str:
    """Which kernels ``optimizer`` steps with: ``fused``, ``fused (C kernel)``, ``foreach`` or ``for-loop``.

    Recorded with every run: the choice changes float rounding, which a long run can amplify.
    """
    if getattr(optimizer, "fused_is_c_kernel", False):
        return "fused (C kernel)" if getattr(optimizer, "fused_ran", False) else "foreach"
    if optimizer.defaults.get("fused"):
        return "fused"
    return "foreach" if optimizer.defaults.get("foreach") else "for-loop"


def fused_supported(cls: type) -> bool:
    """Torch documents ``fused=True`` for these classes on CPU and CUDA; others raise."""
    return cls.__module__.startswith("torch.optim") and cls.__name__ in {"SGD", "Adam", "AdamW", "Adagrad"}


def _accepts(cls: type, arg: str) -> bool:
    import inspect

    return arg in inspect.signature(cls.__init__).parameters


# The reference's four, with the Keras values (Keras' default eps is 1e-7, torch's 1e-8). Every
# hyperparameter is spelled out, torch's defaults included, so that results and reports show
# exactly what ran and ``--set`` knows which keys exist without importing torch.
_SGD = "torch.optim:SGD"
register(
    "sgd",
    _SGD,
    "plain SGD, lr 0.01 (Keras default; reference)",
    lr=0.01,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    nesterov=False,
)
register(
    "momentum",
    _SGD,
    "SGD with momentum 0.9, lr 0.01 (reference)",
    lr=0.01,
    momentum=0.9,
    dampening=0.0,
    weight_decay=0.0,
    nesterov=False,
)
register(
    "rmsprop",
    "fmnist_pl.optim.keras_rmsprop:KerasRMSprop",
    "RMSprop in Keras' form, eps inside the sqrt: w -= lr*g/sqrt(s+eps) (reference)",
    lr=0.001,
    rho=0.9,
    eps=1e-7,
)
register(
    "adam",
    "torch.optim:Adam",
    "Adam, lr 0.001, betas 0.9/0.999, eps 1e-7 (reference). Keras adds eps to sqrt(v) before "
    "bias correction (the paper's 'epsilon hat'), torch to sqrt(v_hat): the same as torch with "
    "eps/sqrt(1-beta2^t), at most ~3e-6 in the first steps - negligible against sqrt(v_hat)",
    lr=0.001,
    betas=(0.9, 0.999),
    eps=1e-7,
    weight_decay=0.0,
    amsgrad=False,
)
# Torch's own forms and other optimizers, with torch's defaults.
register(
    "rmsprop-torch",
    "torch.optim:RMSprop",
    "torch's RMSprop (eps outside the sqrt) with the reference's lr/rho/eps",
    lr=0.001,
    alpha=0.9,
    eps=1e-7,
    weight_decay=0.0,
    momentum=0.0,
    centered=False,
)
register(
    "adamw",
    "torch.optim:AdamW",
    "AdamW, torch defaults",
    lr=0.001,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.01,
    amsgrad=False,
)
register(
    "nadam",
    "torch.optim:NAdam",
    "NAdam, torch defaults",
    lr=0.002,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    momentum_decay=0.004,
)
register(
    "adagrad",
    "torch.optim:Adagrad",
    "Adagrad, torch defaults",
    lr=0.01,
    lr_decay=0.0,
    weight_decay=0.0,
    initial_accumulator_value=0.0,
    eps=1e-10,
)
register(
    "adamax", "torch.optim:Adamax", "Adamax, torch defaults", lr=0.002, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0
)
register(
    "radam", "torch.optim:RAdam", "RAdam, torch defaults", lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0
)
register("adadelta", "torch.optim:Adadelta", "Adadelta, torch defaults", lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0)


def get_info(name: str) -> OptimizerInfo:
    try:
        return REGISTRY[name.lower()]
    except KeyError:
        raise OptimizerError(f"unknown optimizer {name!r}; choose from: {', '.join(REGISTRY)}") from None


def _coerce(value: str, like: Any, where: str) -> Any:
    """Parse a ``--set`` string into the type of the default it replaces."""
    try:
        if isinstance(like, str):
            return value
        if isinstance(like, bool):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if isinstance(like, (tuple, list)):
            parts = [float(v) for v in value.strip("()[]").split(",")]
            if len(parts) != len(like):
                raise ValueError
            return tuple(parts)
        if isinstance(like, int) and not isinstance(like, bool):
            as_float = float(value)
            return int(as_float) if as_float.is_integer() else as_float
        return float(value)
    except ValueError:
        raise OptimizerError(f"bad value {value!r} for {where}: expected {type(like).__name__} like {like!r}") from None


def _check_number(key: str, value: Any, where: str, limit: Limit | None = None) -> None:
    if limit is not None:
        if not limit.allows(value):
            raise OptimizerError(f"bad value {value!r} for {where}: must be {limit}")
        if limit.choices:
            return
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, bool):
            continue
        if not math.isfinite(v):
            raise OptimizerError(f"bad value {value!r} for {where}: must be a finite number")
        if key in ("lr", "eps") and v <= 0:
            raise OptimizerError(f"bad value {value!r} for {where}: must be > 0")
        if v < 0:
            raise OptimizerError(f"bad value {value!r} for {where}: must be >= 0")


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """Turn ``["adam.lr=3e-4", "momentum.momentum=0.95"]`` into ``{"adam": {"lr": "3e-4"}, ...}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        name, dot, key = target.partition(".")
        if not sep or not dot or not name or not key or not value:
            raise OptimizerError(f"bad --set {item!r}: write OPTIMIZER.PARAM=VALUE, e.g. adam.lr=3e-4")
        get_info(name)
        out.setdefault(name.lower(), {})[key] = value
    return out


def resolve(
    names: Iterable[str], lr: float | None = None, overrides: Mapping[str, Mapping[str, str]] | None = None
) -> list[OptimizerSpec]:
    """Resolve registry names into :class:`OptimizerSpec` s.

    ``lr`` gives every optimizer the same learning rate (the reference's own suggestion);
    ``overrides`` then sets individual hyperparameters, and must name keys the optimizer has.
    """
    overrides = overrides or {}
    names = [n.lower() for n in names]
    if not names:
        raise OptimizerError(f"no optimizer given; choose from: {', '.join(REGISTRY)}")
    if len(set(names)) != len(names):
        raise OptimizerError(f"optimizer listed twice in {','.join(names)}; list each once")
    for name in overrides:
        if name not in names:
            raise OptimizerError(f"--set names {name!r}, which is not among --optimizers {','.join(names)}")
    specs = []
    for name in names:
        info = get_info(name)
        hparams = dict(info.defaults)
        if lr is not None and not info.gradient_free:  # checked once, by the config (config.check_lr)
            hparams["lr"] = float(lr)
        for key, raw in overrides.get(name, {}).items():
            if key == "schedule":
                hparams[key] = check_schedule(info, raw)
                continue
            if key not in hparams:
                raise OptimizerError(f"unknown hyperparameter {name}.{key}; {name} has: {', '.join(hparams)}")
            where = f"{name}.{key}"
            hparams[key] = _coerce(raw, hparams[key], where)
            _check_number(key, hparams[key], where, info.limits.get(key))
        problem = info.check(hparams) if info.check is not None else None
        if problem:
            raise OptimizerError(f"{name}: {problem}")
        specs.append(OptimizerSpec(name, hparams))
    return specs


def check_schedule(info: OptimizerInfo, schedule: str) -> str:
    """A learning-rate schedule for ``info``: a known one, for an optimizer with a learning rate."""
    from fmnist_pl.optim.schedules import SCHEDULES

    if schedule not in SCHEDULES:
        raise OptimizerError(f"bad value {schedule!r} for {info.name}.schedule: must be one of {', '.join(SCHEDULES)}")
    if info.gradient_free or "lr" not in info.defaults:
        raise OptimizerError(f"{info.name} has no learning rate to schedule; drop its schedule")
    return schedule


def check_buildable(specs: Iterable[OptimizerSpec]) -> None:
    """Construct every optimizer on a dummy parameter, so that hyperparameters its class rejects
    (Adam's betas outside [0, 1), SGD's nesterov without momentum, a user-registered class's own
    checks) fail now, in one line, before anything is trained or written.

    A spec left at the defaults of an entry this module registers is not built: those are known
    to build (tests/optim/test_registry.py builds every one), and the first ``torch.optim``
    optimizer a process builds imports ``torch._dynamo`` (``add_param_group`` is wrapped in
    ``torch._disable_dynamo``), a noticeable delay while the command starts, for nothing."""
    for spec in filter(needs_building, specs):
        try:
            if spec.info.gradient_free:
                _build_searcher(spec)
            else:
                import torch

                spec.build([torch.nn.Parameter(torch.zeros(1))])
        except (ValueError, TypeError, RuntimeError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise OptimizerError(
                f"{spec.name} ({spec.info.class_name}) rejects its hyperparameters: {reason}; "
                f"change the --set values for {spec.name}"
            ) from None


def needs_building(spec: OptimizerSpec) -> bool:
    """Whether :func:`check_buildable` builds ``spec``: all but a shipped entry at its defaults."""
    return not (is_shipped(spec) and spec.kwargs() == dict(spec.info.defaults))


def is_shipped(spec: OptimizerSpec) -> bool:
    """Whether ``spec`` is of an entry this module registers (not one a program registered since,
    which a training pool's workers, importing only this module, do not have)."""
    return _SHIPPED.get(spec.name) is spec.info


def _build_searcher(spec: OptimizerSpec) -> None:
    """Build a gradient-free spec's EvoTorch searcher on a small network (never evaluated), so that
    what EvoTorch itself rejects fails before training."""
    import torch

    from fmnist_pl.architecture import parameter_count
    from fmnist_pl.optim.evolution import build_searcher, make_problem

    problem = make_problem(torch.zeros(parameter_count((2,))), 0, spec.hparams, fitness=None)
    build_searcher(spec.info.cls, spec.kwargs(), problem)


# Gradient-free methods: EvoTorch's algorithms on the flat 266,610 weights, each starting from the
# seed's Glorot weights. Shared by all: the population scores a mini-batch of `batch_size`
# training images per generation (an epoch is still one pass over the 55,000 images), by
# `fitness` (cross-entropy, or accuracy). Defaults were chosen by VALIDATION accuracy under a
# fixed CPU time budget (the trials: benchmarks/RESULTS.md).
_POPULATION = {
    "popsize": Limit(2, integer=True),
    "batch_size": Limit(1, integer=True),
    "fitness": Limit(choices=("cross_entropy", "accuracy")),
    "stdev_init": Limit(0, low_open=True),
}
register(
    "snes",
    "evotorch.algorithms:SNES",
    "separable natural evolution strategy (EvoTorch SNES): a diagonal Gaussian, natural-gradient updates",
    kind="gradient-free",
    limits=_POPULATION
    | {"center_learning_rate": Limit(0, low_open=True), "stdev_learning_rate": Limit(0, low_open=True)},
    popsize=100,
    stdev_init=0.02,
    center_learning_rate=0.5,
    stdev_learning_rate=0.006,
    batch_size=256,
    fitness="cross_entropy",
)
register(
    "pgpe",
    "evotorch.algorithms:PGPE",
    "policy gradients with parameter-based exploration, symmetric sampling, ClipUp centre updates (EvoTorch PGPE)",
    kind="gradient-free",
    limits=_POPULATION
    | {
        "popsize": Limit(2, integer=True, even=True),
        "center_learning_rate": Limit(0, low_open=True),
        "stdev_learning_rate": Limit(0, low_open=True),
        "stdev_max_change": Limit(0, low_open=True),
    },
    popsize=50,
    stdev_init=0.01,
    center_learning_rate=0.2,
    stdev_learning_rate=0.1,
    stdev_max_change=0.2,
    batch_size=256,
    fitness="cross_entropy",
)


def _enough_elites(hp: Mapping[str, Any]) -> str | None:
    """CEM fits a Gaussian to its elites: with fewer than two its spread is undefined (NaN)."""
    elites = int(hp["popsize"] * hp["parenthood_ratio"])
    if elites < 2:
        return (
            f"popsize {hp['popsize']} x parenthood_ratio {hp['parenthood_ratio']:g} leaves {elites} elite(s); "
            "CEM needs at least 2: raise cem.popsize or cem.parenthood_ratio"
        )
    return None


register(
    "cem",
    "evotorch.algorithms:CEM",
    "cross-entropy method (EvoTorch CEM): the next Gaussian is fitted to the elite fraction",
    kind="gradient-free",
    limits=_POPULATION | {"parenthood_ratio": Limit(0, 1, low_open=True), "stdev_max_change": Limit(0, low_open=True)},
    check=_enough_elites,
    popsize=50,
    stdev_init=0.05,
    parenthood_ratio=0.5,
    stdev_max_change=0.2,
    batch_size=256,
    fitness="cross_entropy",
)
register(
    "cmaes",
    "evotorch.algorithms:CMAES",
    "separable (diagonal) CMA-ES (EvoTorch CMAES, separable=True): a full covariance over 266,610 "
    "weights would need 284 GB",
    kind="gradient-free",
    limits=_POPULATION | {"popsize": Limit(4, integer=True), "separable": Limit(choices=(True,))},
    popsize=50,
    stdev_init=0.01,
    separable=True,
    batch_size=256,
    fitness="cross_entropy",
)
register(
    "ga",
    "evotorch.algorithms:GeneticAlgorithm",
    "genetic algorithm (EvoTorch): tournament selection, two-point cross-over, Gaussian mutation, elitism",
    kind="gradient-free",
    limits=_POPULATION
    | {
        "tournament_size": Limit(1, integer=True),
        "mutation_stdev": Limit(0, low_open=True),
        "mutation_probability": Limit(0, 1, low_open=True),
    },
    popsize=50,
    tournament_size=4,
    mutation_stdev=0.01,
    mutation_probability=0.1,
    elitist=True,
    stdev_init=0.05,
    batch_size=256,
    fitness="cross_entropy",
)

# The entries registered above, as registered: a spec at one of these defaults needs no trial
# build (check_buildable). An entry a user registers later, or again under the same name, is not one.
_SHIPPED: dict[str, OptimizerInfo] = dict(REGISTRY)
