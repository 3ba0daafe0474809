"""Config -> the runs of a compare (:class:`~fmnist_pl.config.RunPlan`) -> lockstep groups.

A run is identified by a structured key (architecture, optimizer with every hyperparameter,
seed). Its display name - its folder and TensorBoard run - is derived from the parts of the
key that vary in this compare, and every name is checked unique before anything runs.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

from fmnist_pl.architecture import arch_name, parameter_count
from fmnist_pl.config import CompareConfig, ConfigError, RunPlan
from fmnist_pl.optim import registry


def lr_label(lr: float) -> str:
    """``lr-0.000129``: six significant digits, enough to tell any two grid points apart."""
    return f"lr-{lr:g}"


MAX_RUNS = 10_000  # runs in one compare: 7x a DeepOBS-scale study (4 optimizers x 36 rates x 10 seeds)


def plan(config: CompareConfig) -> list[RunPlan]:
    """The runs of a compare, per architecture and seed-major (the lockstep engine's member order).

    Names: ``adam``; with a learning-rate grid ``adam/lr-0.001``; with several seeds
    ``.../seed-43``; with several architectures ``h512-256-128/adam``.

    Whether each optimizer class accepts its hyperparameters is the backend's check
    (:meth:`~fmnist_pl.execution.backend.Backend.check`), which builds them where torch's optimizers
    are imported already.
    """
    count = config.run_count  # one spec per listed optimizer: resolve refuses a name listed twice
    if count > MAX_RUNS:
        raise ConfigError(
            f"this compare plans {count:,} runs (architectures x seeds x optimizers x learning rates); "
            f"at most {MAX_RUNS:,}: split the study into several compares"
        )
    variants = trial_variants(config) if config.trials else grid_variants(config)
    variants = [(variant, with_schedule(spec, config.schedule)) for variant, spec in variants]
    several_archs = len(config.architecture_list) > 1
    runs = []
    for hidden in config.architecture_list:
        for seed in config.seed_list:
            for variant, spec in variants:
                setting = f"{arch_name(hidden)}/{variant}" if several_archs else variant
                name = f"{setting}/seed-{seed}" if config.seeds > 1 else setting
                runs.append(
                    RunPlan(
                        name=name, setting=setting, variant=variant, optimizer=spec, seed=seed, hidden=tuple(hidden)
                    )
                )
    check_unique(runs)
    return runs


def with_schedule(spec: registry.OptimizerSpec, schedule: str) -> registry.OptimizerSpec:
    """``--schedule`` for a gradient run that has none of its own (``--set NAME.schedule=...`` wins);
    a gradient-free run has no learning rate to schedule."""
    if schedule == "constant" or "schedule" in spec.hparams or spec.info.gradient_free:
        return spec
    return registry.OptimizerSpec(spec.name, dict(spec.hparams) | {"schedule": schedule})


def grid_variants(config: CompareConfig) -> list[tuple[str, registry.OptimizerSpec]]:
    """Every optimizer (``adam``), or with a learning-rate grid every optimizer at every rate (``adam/lr-0.001``)."""
    specs = registry.resolve(config.optimizers, config.lr, registry.parse_overrides(config.overrides))
    if config.lrs:
        check_gradient_only(config.optimizers, "a learning-rate grid (--lrs)")
    out = []
    for spec in specs:
        for lr in config.lrs or (None,):
            if lr is None:
                out.append((spec.name, spec))
            else:
                out.append(
                    (f"{spec.name}/{lr_label(lr)}", registry.OptimizerSpec(spec.name, dict(spec.hparams) | {"lr": lr}))
                )
    return out


def trial_variants(config: CompareConfig) -> list[tuple[str, registry.OptimizerSpec]]:
    """A tuning study's settings (``config.trials``: optimizer, label, ``key=value`` items), each
    resolved and checked by the registry like ``--set`` items: ``adam/trial-3``."""
    out = []
    for optimizer, label, *items in config.trials:
        # --set items first (fixed for every trial), then the trial's own
        fixed = [o for o in config.overrides if o.partition(".")[0].lower() == optimizer.lower()]
        overrides = registry.parse_overrides([*fixed, *(f"{optimizer}.{item}" for item in items)])
        (spec,) = registry.resolve([optimizer], None, overrides)
        out.append((f"{spec.name}/{label}", spec))
    return out


def check_gradient_only(names: Sequence[str], what: str) -> None:
    """The planner's learning-rate grid and the lr finder set a gradient optimizer's ``lr``; a search has none
    (a sweep's grid sets its ``stdev_init`` instead, in compares of its own: :mod:`fmnist_pl.study.sweep`)."""
    searches = [n for n in names if registry.get_info(n).gradient_free]
    if searches:
        one = len(searches) == 1
        raise ConfigError(
            f"{what} tunes gradient optimizers' learning rates; {', '.join(searches)} "
            f"{'is' if one else 'are'} gradient-free: tune {'its' if one else 'their'} stdev_init with a grid, "
            f"`fmnist-pl sweep --lrs ...`, or set it with --set"
        )


def check_unique(runs: Sequence[RunPlan]) -> None:
    """Two runs must never share a name: they would write into one folder."""
    twice = [name for name, n in Counter(r.name for r in runs).items() if n > 1]
    if twice:
        raise ConfigError(
            f"runs {', '.join(twice)} are planned more than once (a learning rate or layer size "
            "listed twice?); list each value once"
        )


def groups(runs: Sequence[RunPlan], separate: bool = False) -> list[list[RunPlan]]:
    """Training groups: the gradient runs of one architecture in lockstep (in their seed-major
    order), and every gradient-free run alone (a search is its own batched population).

    A run's numbers do not depend on its group (the engine guarantees it, a test checks it), so
    grouping is a matter of speed and of whose wall time a run's seconds are: ``separate``
    trains each run alone, so that its seconds per epoch are its optimizer's own cost.
    """
    by_arch: dict[tuple[int, ...], list[RunPlan]] = {}
    alone: list[list[RunPlan]] = []
    for r in runs:
        if separate or r.optimizer.info.gradient_free:
            alone.append([r])
        else:
            by_arch.setdefault(r.hidden, []).append(r)
    return [*by_arch.values(), *alone]


def group_need(group: Sequence[RunPlan], batch_size: int) -> int:
    """Bytes a group needs at its peak on its device (:mod:`fmnist_pl.engine.memory`)."""
    from fmnist_pl.engine.memory import group_bytes, search_bytes

    hp = group[0].optimizer.hparams
    if group[0].optimizer.info.gradient_free:
        return search_bytes(group[0].hidden, int(hp["popsize"]), int(hp["batch_size"]))
    return group_bytes(group[0].hidden, len(group), batch_size)


def search_bytes_of(run: RunPlan, batch_size: int) -> int:
    """What a gradient-free run would need scoring batches of ``batch_size``."""
    from fmnist_pl.engine.memory import search_bytes

    return search_bytes(run.hidden, int(run.optimizer.hparams["popsize"]), batch_size)


def check_fits(runs: Sequence[RunPlan], batch_size: int, free: float, holder: str) -> None:
    """Every run fits alone in ``free`` bytes (what ``holder`` has): a group too big is cut
    (:func:`split`), a single run cannot be, so it is refused in one line, before anything runs."""
    from fmnist_pl.engine.memory import gib

    most, biggest = max(((group_need([r], batch_size), r) for r in runs), key=lambda pair: pair[0])
    if most <= free:
        return
    name, hp = biggest.optimizer.name, biggest.optimizer.hparams
    # Name the option that causes it: the batch when one image a step would fit, else the model's size.
    if biggest.optimizer.info.gradient_free:
        subject = f"{biggest.name} (population {hp['popsize']} of {parameter_count(biggest.hidden):,} weights)"
        small_batch = search_bytes_of(biggest, 1)
        fix = (
            f"use a smaller --set {name}.batch_size (now {hp['batch_size']})"
            if small_batch <= free
            else f"use a smaller --set {name}.popsize or smaller --hidden"
        )
    else:
        subject = f"one run of hidden {','.join(map(str, biggest.hidden))} at batch size {batch_size:,}"
        fix = "use a smaller --batch-size" if group_need([biggest], 1) <= free else "use smaller --hidden"
    raise ConfigError(
        f"{subject} alone needs about {gib(most)}, more than {holder} ({gib(free)}); the estimate "
        f"counts weights, gradients, optimizer state and activations: {fix}"
    )


def halves(group: Sequence[RunPlan]) -> tuple[list[RunPlan], list[RunPlan]]:
    """A lockstep group cut in two parts that the engine can still train (seed-major, the same
    settings in every seed): at a seed boundary, or between settings with every seed in both parts,
    whichever is nearer even (the seed boundary when both are). Five seeds of four optimizers: 10 | 10
    runs by optimizer, where the seed boundary gives 8 | 12 and the larger part sets the pace.

    Between settings, every other one goes to each part: the plan lists an optimizer's settings
    together (a tune's trials, a sweep's rates), and their updates differ in cost (Adam reads and
    writes two state tensors, SGD none), so a cut in the middle would give one part the costly ones.
    """
    seeds = list(dict.fromkeys(r.seed for r in group))
    variants = list(dict.fromkeys(r.variant for r in group))
    cuts = []
    for values, first, of in (
        (seeds, set(seeds[: len(seeds) // 2]), lambda r: r.seed),
        (variants, set(variants[::2]), lambda r: r.variant),
    ):
        if len(values) > 1:
            cuts.append(([r for r in group if of(r) in first], [r for r in group if of(r) not in first]))
    if not cuts:  # runs that differ in neither (not planned; kept trainable all the same)
        cut = len(group) // 2
        return list(group[:cut]), list(group[cut:])
    return min(cuts, key=lambda c: abs(len(c[0]) - len(c[1])))


def split(
    planned: Sequence[Sequence[RunPlan]], slots: int, fits: Callable[[Sequence[RunPlan]], bool]
) -> list[list[RunPlan]]:
    """Units of work for several workers: every group that does not ``fits`` one worker is halved
    until it does, then the largest are halved until there are ``slots`` units (or nothing left to cut).

    Deterministic for the same plan and slots. It changes no number: a run's results do not
    depend on its group (see :func:`groups`).
    """
    units: list[list[RunPlan]] = []
    for group in planned:
        pending = [list(group)]
        while pending:
            unit = pending.pop(0)
            if len(unit) > 1 and not fits(unit):
                pending[:0] = halves(unit)
            else:
                units.append(unit)
    while len(units) < slots:
        biggest = max(range(len(units)), key=lambda i: len(units[i]))
        if len(units[biggest]) < 2:
            break
        units[biggest : biggest + 1] = halves(units[biggest])
    return units
