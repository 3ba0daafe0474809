"""Tune each optimizer's step size on the validation set, then compare them at the tuned values on fresh seeds.

Two ways to choose: a grid (``--lrs``: every optimizer × value trains on the tuning seeds,
chosen by best validation accuracy, mean over those seeds) or Lightning's learning-rate finder
(``--lr-find``: ``Tuner.lr_find`` on the textbook module, the rate where the training loss
falls fastest - cheaper and rougher, since it never looks at the validation set).

The grid sets a gradient optimizer's ``lr``; a gradient-free method has no learning rate, so
the grid sets its ``stdev_init``, the spread its search starts with (the size of its first
steps; every gradient-free entry of the registry has one). The final comparison trains on
fresh seeds after the tuning seeds: on the tuning seeds it would repeat the grid's runs bit for
bit, and the luck that made a value win the selection would be carried into the verdict.
"""

from __future__ import annotations

import math
import shlex
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from fmnist_pl import store
from fmnist_pl.analysis.runs import best_val_acc
from fmnist_pl.config import MAX_SEED, CompareConfig
from fmnist_pl.data import idx
from fmnist_pl.errors import ConfigError
from fmnist_pl.execution.backend import Backend, InProcess
from fmnist_pl.optim import registry
from fmnist_pl.plan import check_gradient_only
from fmnist_pl.store.lock import check_owned, exclusive
from fmnist_pl.study.compare import compare
from fmnist_pl.study.setup import holding, output_folder, prepare

if TYPE_CHECKING:
    from fmnist_pl.report.figures import Drawer

FINAL_SEEDS = 2  # fresh seeds of the final comparison: the fewest that give a spread and a paired test
SEARCH_PARAM = "stdev_init"  # what the grid sets for a gradient-free method (it has no learning rate)


def step_param(name: str) -> str:
    """The hyperparameter a sweep tunes for optimizer ``name``: ``lr``, or a gradient-free method's ``stdev_init``."""
    info = registry.get_info(name)
    param = SEARCH_PARAM if info.gradient_free else "lr"
    if param not in info.defaults:
        raise ConfigError(
            f"a sweep tunes {name}'s {param}, which it does not have; compare it with `fmnist-pl compare`"
        )
    return param


def seed_range(seeds: Sequence[int]) -> str:
    """``seeds 42-43`` or ``seed 42``: how the terminal and the report name a block of seeds."""
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"


def final_seed_list(config: CompareConfig, final_seeds: int) -> list[int]:
    """The final comparison's seeds: ``final_seeds`` of them, right after the tuning seeds."""
    first = config.seed + config.seeds
    return list(range(first, first + final_seeds))


def check_final(config: CompareConfig, final_epochs: int | None = None, final_seeds: int = FINAL_SEEDS) -> None:
    """The final comparison's own options, each a one-line error before anything starts (the CLI calls it too)."""
    if final_epochs is not None and (
        isinstance(final_epochs, bool) or not isinstance(final_epochs, int) or final_epochs < 1
    ):
        raise ConfigError(f"--final-epochs must be a whole number >= 1, got {final_epochs!r}")
    if isinstance(final_seeds, bool) or not isinstance(final_seeds, int) or final_seeds < 1:
        raise ConfigError(f"--final-seeds must be a whole number >= 1, got {final_seeds!r}")
    last = config.seed + config.seeds + final_seeds - 1
    if last > MAX_SEED:
        raise ConfigError(
            f"--seed {config.seed} with --seeds {config.seeds} and --final-seeds {final_seeds} needs seeds up to "
            f"{last:,}, more than fit in 63 bits ({MAX_SEED:,}): use a smaller --seed"
        )


def grid_configs(config: CompareConfig, top: Path) -> list[CompareConfig]:
    """The grid's compares in ``top``: the gradient optimizers × ``--lrs`` in ``sweep/`` (one lockstep
    group), and the gradient-free methods at each value's ``stdev_init`` in ``sweep-stdev_init-<value>/``.

    The planner's grid sets ``lr``, which a search has not; a compare per value costs nothing, as
    each search trains alone anyway. Each compare gets only its own methods' ``--set`` items.
    """
    names = [n.lower() for n in config.optimizers]
    searches = tuple(n for n in names if registry.get_info(n).gradient_free)
    gradient = tuple(n for n in names if n not in searches)
    base = replace(config, output_dir=str(top))
    out = []
    if gradient:
        out.append(replace(base, optimizers=gradient, overrides=_own(config.overrides, gradient), name="sweep"))
    if searches:
        labels = Counter(f"{v:g}" for v in config.lrs)
        twice = [label for label, n in labels.items() if n > 1]
        if twice:
            raise ConfigError(f"--lrs lists {', '.join(twice)} more than once (at six digits); list each value once")
        for value in config.lrs:
            tuned = tuple(f"{n}.{step_param(n)}={value!r}" for n in searches)
            out.append(
                replace(
                    base,
                    optimizers=searches,
                    overrides=_own(config.overrides, searches) + tuned,
                    lrs=(),
                    name=f"sweep-{SEARCH_PARAM}-{value:g}",
                )
            )
    return out


def _own(overrides: Sequence[str], names: Sequence[str]) -> tuple[str, ...]:
    """The ``--set`` items of ``names`` (a compare refuses an item for an optimizer it does not train)."""
    return tuple(o for o in overrides if o.partition(".")[0].lower() in names)


def grid_selection(folders: Sequence[Path]) -> dict[str, Any]:
    """Per optimizer: validation accuracy (best epoch, mean over seeds) at each grid value, the chosen
    value, and whether it lies at an edge of the grid. Chosen on the validation set only; the test
    set plays no part. ``folders``: the grid's compares (:func:`grid_configs`)."""
    table: dict[str, dict[float, list[float]]] = {}
    diverged: dict[str, set[float]] = {}
    grid: dict[str, set[float]] = {}
    seeds: dict[str, set[int]] = {}
    for folder in folders:
        loaded = store.load_compare(folder)
        for planned in loaded["config"]["runs"]:
            name = planned["optimizer"]["name"]
            grid.setdefault(name, set()).add(planned["optimizer"]["hparams"][step_param(name)])
            seeds.setdefault(name, set()).add(planned["seed"])
        for run in loaded["runs"]:
            name = run["optimizer"]["name"]
            value = run["optimizer"]["hparams"][step_param(name)]
            if run.get("status") == "diverged":
                diverged.setdefault(name, set()).add(value)
                continue
            table.setdefault(name, {}).setdefault(value, []).append(best_val_acc(run))
    out = {}
    for name, values in grid.items():
        bad = diverged.get(name, set())
        scores = {v: sum(a) / len(a) for v, a in sorted(table.get(name, {}).items()) if v not in bad}
        chosen = max(scores, key=scores.get) if scores else None
        param, tried, tuned_on = step_param(name), sorted(values), sorted(seeds[name])
        out[name] = {
            "method": "grid",
            "param": param,
            "lrs": list(scores),
            "val_acc": list(scores.values()),
            "diverged": sorted(bad),
            "chosen": chosen,
            "at_edge": grid_edge(chosen, tried),
            "by_validation": [{"value": v, "val_acc": a} for v, a in sorted(scores.items(), key=lambda item: -item[1])],
            "seeds": tuned_on,
            "tuning": f"{param}: grid of {len(tried)} values, best validation accuracy "
            f"({'mean over ' if len(tuned_on) > 1 else ''}{seed_range(tuned_on)})",
        }
    return out


def grid_edge(chosen: float | None, grid: Sequence[float]) -> str | None:
    """``smallest``/``largest`` when ``chosen`` is the end of the sorted ``grid`` (the best may lie beyond it),
    ``only`` for a grid of one value; else None."""
    if chosen is None or not grid:
        return None
    if len(grid) == 1:
        return "only"
    return "smallest" if chosen == grid[0] else "largest" if chosen == grid[-1] else None


def edge_warning(name: str, row: dict[str, Any]) -> str | None:
    """The terminal's line for a choice at an edge of the grid (None for one inside it)."""
    edge, what = row.get("at_edge"), f"{name} chose {row.get('param', 'lr')} {row['chosen']:g}"
    if edge == "only":
        return f"{what}, the only value of --lrs: the best may lie on either side; give --lrs several values"
    if edge in ("smallest", "largest"):
        return f"{what}, the {edge} of --lrs: the best may lie beyond; extend --lrs"
    return None


def find_lrs(
    specs: Sequence[registry.OptimizerSpec],
    datamodule: Any,
    hidden: Sequence[int],
    seed: int,
    accelerator: str = "auto",
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
) -> dict[str, dict[str, Any]]:
    """Lightning's ``Tuner.lr_find`` per optimizer: the finder's curve (rates, losses) and its suggestion."""
    from fmnist_pl.runtime.imports import import_engine

    import_engine()  # Lightning, with the collector paused
    import lightning.pytorch as pl
    from lightning.pytorch.tuner import Tuner

    from fmnist_pl.engine.classifier import LitClassifier
    from fmnist_pl.engine.mlp import seeded_mlp

    out = {}
    for spec in specs:
        model = LitClassifier(seeded_mlp(hidden, seed), spec)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = pl.Trainer(
                accelerator=accelerator,
                devices=1,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                default_root_dir=tmp,
                max_epochs=1,
            )
            finder = Tuner(trainer).lr_find(
                model,
                datamodule=datamodule,
                min_lr=min_lr,
                max_lr=max_lr,
                num_training=steps,
                update_attr=False,
                attr_name="lr",
            )
        suggestion = finder.suggestion()
        out[spec.name] = {
            "finder_lrs": [float(v) for v in finder.results["lr"]],
            "finder_losses": [float(v) if math.isfinite(v) else None for v in finder.results["loss"]],
            "chosen": float(suggestion) if suggestion else None,
        }
    return out


def lr_find_selection(config: CompareConfig, arrays: idx.FashionMNISTArrays | None = None) -> dict[str, Any]:
    """The finder's suggestion per optimizer, on the config's data (or ``arrays``), first seed and architecture."""
    from fmnist_pl.data.datamodule import FashionMNISTDataModule

    if arrays is None:
        arrays = idx.load_arrays(idx.locate(config.data_dir, allow_download=config.download))
    datamodule = FashionMNISTDataModule(
        arrays=arrays,
        batch_size=config.batch_size,
        seeds=[config.seed],
        stack_seeds=False,
        val_size=config.val_size,
    )
    specs = registry.resolve(config.optimizers, None, registry.parse_overrides(config.overrides))
    found = find_lrs(specs, datamodule, config.hidden, config.seed, config.accelerator)
    how = f"lr: Lightning's learning-rate finder (steepest fall of the training loss, {seed_range([config.seed])})"
    extra = {"lrs": [], "val_acc": [], "diverged": [], "method": "lr_find", "param": "lr", "at_edge": None}
    return {
        name: row | extra | {"by_validation": [], "seeds": [config.seed], "tuning": how} for name, row in found.items()
    }


def sweep(
    config: CompareConfig,
    final_epochs: int | None = None,
    echo: Callable[[str], None] = print,
    lr_find: bool = False,
    backend: Backend | None = None,
    drawer: Drawer | None = None,
    final_seeds: int = FINAL_SEEDS,
    arrays: idx.FashionMNISTArrays | None = None,
) -> Path:
    """Choose each optimizer's step size on the tuning seeds, then compare them at the chosen values on fresh seeds.

    Writes ``<output>/<name>/sweep/`` (every gradient optimizer × rate, one lockstep group; a
    gradient-free method's grid in ``sweep-stdev_init-<value>/``), ``sweep.json`` (the choice) and
    ``final/`` (a normal compare at the chosen values on ``final_seeds`` seeds after the tuning
    ones, whose report shows the sweep). Returns the final compare's folder. ``backend``: where
    the compares train (as in :func:`~fmnist_pl.study.compare.compare`; one Ray connection
    serves all); lr-find runs here. ``drawer``: the report figures' worker processes. ``arrays``:
    train on these in-memory arrays instead of the dataset files (tests, notebooks). The top
    folder is a marked "sweep" folder, held by this process for the whole sweep (:mod:`fmnist_pl.store.lock`).
    """
    if not config.lrs and not lr_find:
        raise ConfigError("sweep needs --lrs (e.g. --lrs 1e-4:1e0:7) or --lr-find")
    if lr_find:
        check_gradient_only(config.optimizers, "sweep --lr-find")
    check_final(config, final_epochs, final_seeds)
    backend = backend or InProcess()
    top = output_folder(config)
    check_owned(top, "sweep")
    # Names, data and output, first: the final compare's, then the grid's (nothing is written yet).
    final = final_config(config, top, final_epochs, final_seeds)
    _check_same_final(top, final)
    _check_same_points(top, config)
    _, _, runs = prepare(final, arrays)
    backend.check(runs, config)
    for grid_config in [] if lr_find else grid_configs(config, top):
        backend.check(prepare(grid_config, arrays)[2], grid_config)
    how = "the same `fmnist-pl sweep` command with " + shlex.join(
        ["--output-dir", str(top.parent), "--name", top.name, *backend.resume_options()]
    )
    with holding(top, "sweep", how):
        chosen = _choose(config, top, lr_find, echo, backend, drawer, final_seed_list(config, final_seeds), arrays)
        return _final(config, top, chosen, final_epochs, final_seeds, echo, backend, drawer, arrays)


def _choose(
    config: CompareConfig,
    top: Path,
    lr_find: bool,
    echo: Callable[[str], None],
    backend: Backend,
    drawer: Drawer | None,
    final_seeds: list[int],
    arrays: idx.FashionMNISTArrays | None,
) -> dict[str, Any]:
    """The value of every optimizer (``sweep.json``): the grid's compares in ``top``, or Lightning's finder."""
    if lr_find:
        echo(f"lr-find: Lightning's learning-rate finder for {', '.join(config.optimizers)}")
        chosen = lr_find_selection(config, arrays)
        folders = []
    else:
        echo(f"sweep: {len(config.optimizers)} optimizers x {len(config.lrs)} values, {config.epochs} epochs")
        folders = []
        for grid_config in grid_configs(config, top):
            resume = (top / str(grid_config.name) / store.CONFIG_FILE).exists()
            folders.append(
                compare(grid_config, resume=resume, echo=echo, backend=backend, drawer=drawer, arrays=arrays)
            )
        chosen = grid_selection(folders)
        chosen = {name: chosen[name] for name in (n.lower() for n in config.optimizers)}  # in the order asked for
    basis = "training loss, lr finder" if lr_find else "validation"
    seeds_text = (
        f"tuned on {seed_range(next(iter(chosen.values()))['seeds'])} ({basis}), "
        f"compared on fresh {seed_range(final_seeds)}"
    )
    chosen = {name: row | {"final_seeds": final_seeds, "seeds_text": seeds_text} for name, row in chosen.items()}
    store.write_json(top / "sweep.json", chosen)
    missing = [n for n, c in chosen.items() if c["chosen"] is None]
    if missing:
        raise ConfigError(f"every value of --lrs diverged for {', '.join(missing)}; try smaller --lrs")
    for folder in folders:
        _show_selection(folder, chosen, drawer)
    for name, c in chosen.items():
        how_chosen = "lr-find suggestion" if lr_find else f"tuned on validation, val acc {max(c['val_acc']):.4f}"
        echo(f"{name}: {c['param']}={c['chosen']:g} ({how_chosen})")
    for name, c in chosen.items():
        warning = edge_warning(name, c)
        if warning:
            echo(warning)
    echo(seeds_text)
    return chosen


def _show_selection(folder: Path, chosen: dict[str, Any], drawer: Drawer | None) -> None:
    """Give a grid compare's report the selection made from it: its ``config.json`` gets the ``sweep``
    table of its methods (``"stage": "tuning"``), and the report is drawn again, so that it ranks the
    values by validation accuracy and says that its test numbers are not for choosing."""
    from fmnist_pl.report import render

    with exclusive(folder, "compare"):
        setup = store.read_json(folder / store.CONFIG_FILE)
        names = dict.fromkeys(r["optimizer"]["name"] for r in setup["runs"])
        table = {name: chosen[name] | {"stage": "tuning"} for name in names}
        if setup.get("sweep") != table:
            store.write_json(folder / store.CONFIG_FILE, setup | {"sweep": table})
            render(folder, drawer=drawer)


def final_config(config: CompareConfig, top: Path, final_epochs: int | None, final_seeds: int) -> CompareConfig:
    """The final comparison's settings, before the choice: fresh seeds after the tuning ones, no grid."""
    return replace(
        config,
        lrs=(),
        lr=None,
        output_dir=str(top),
        name="final",
        epochs=final_epochs or config.epochs,
        seed=config.seed + config.seeds,
        seeds=final_seeds,
    )


def _check_same_points(top: Path, config: CompareConfig) -> None:
    """A rerun validates as the sweep started (``--eval-points``): a grid or final run's curves must
    not be drawn from two schedules."""
    for path in sorted(top.glob(f"*/{store.CONFIG_FILE}")):
        try:
            saved = store.read_json(path)["config"].get("eval_points", config.eval_points)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # damaged: that compare's own checks say so
        if saved != config.eval_points:
            raise ConfigError(
                f"{top} was started with --eval-points {saved}, and this command asks for {config.eval_points}: "
                "rerun it with the options it was started with, or choose another --name"
            )


def _check_same_final(top: Path, final: CompareConfig) -> None:
    """A resumed sweep's final comparison must be the one it started (its seeds and epochs), or its runs
    would not be the ones its folder lists."""
    path = top / "final" / store.CONFIG_FILE
    try:
        saved = CompareConfig.from_dict(store.read_json(path)["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # none yet (or damaged: the final compare's own checks say so)
    started, asked = (
        f"{', '.join(c.optimizers)} on {seed_range(c.seed_list)} for {c.epochs} epoch{'s' if c.epochs != 1 else ''}"
        for c in (saved, final)
    )
    if started != asked:
        raise ConfigError(
            f"{top} was started with a final comparison of {started}, and this command asks for {asked}: rerun it "
            "with the options it was started with (--seed, --seeds, --final-seeds, --final-epochs), or choose "
            "another --name"
        )


def _final(
    config: CompareConfig,
    top: Path,
    chosen: dict[str, Any],
    final_epochs: int | None,
    final_seeds: int,
    echo: Callable[[str], None],
    backend: Backend,
    drawer: Drawer | None,
    arrays: idx.FashionMNISTArrays | None,
) -> Path:
    """The compare at the chosen values on fresh seeds, in ``top/final`` (its report shows the sweep)."""
    overrides = tuple(f"{n}.{c['param']}={c['chosen']!r}" for n, c in chosen.items())
    final = replace(final_config(config, top, final_epochs, final_seeds), overrides=config.overrides + overrides)
    resume = (top / "final" / store.CONFIG_FILE).exists()
    extra = {"sweep": {name: row | {"stage": "final"} for name, row in chosen.items()}}
    return compare(final, resume=resume, echo=echo, extra=extra, backend=backend, drawer=drawer, arrays=arrays)
