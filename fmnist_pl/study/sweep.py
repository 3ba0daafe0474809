"""Tune each optimizer's learning rate on the validation set, then compare at the tuned rates.

Two ways to choose: a grid (``--lrs``: every optimizer × rate trains in one lockstep group,
chosen by best validation accuracy, mean over seeds) or Lightning's learning-rate finder
(``--lr-find``: ``Tuner.lr_find`` on the textbook module, the rate where the training loss
falls fastest - cheaper and rougher, since it never looks at the validation set).
"""

from __future__ import annotations

import math
import os
import shlex
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from fmnist_pl import store
from fmnist_pl.config import CompareConfig
from fmnist_pl.data import idx
from fmnist_pl.errors import ConfigError, Interrupted
from fmnist_pl.execution.backend import Backend, InProcess
from fmnist_pl.optim import registry
from fmnist_pl.plan import check_gradient_only
from fmnist_pl.store.layout import MARKER_FILE
from fmnist_pl.store.lock import LOCK_FILE, check_owned, exclusive, remove_failed_start
from fmnist_pl.study.compare import compare
from fmnist_pl.study.setup import output_folder, prepare

if TYPE_CHECKING:
    from fmnist_pl.report.figures import Drawer


def grid_selection(folder: Path) -> dict[str, Any]:
    """Per optimizer: validation accuracy (best epoch, mean over seeds) at each learning rate, and the
    chosen rate. Chosen on the validation set only; the test set plays no part."""
    loaded = store.load_compare(folder)
    table: dict[str, dict[float, list[float]]] = {}
    diverged: dict[str, set[float]] = {}
    for run in loaded["runs"]:
        name, lr = run["optimizer"]["name"], run["optimizer"]["hparams"]["lr"]
        if run.get("status") == "diverged":
            diverged.setdefault(name, set()).add(lr)
            continue
        table.setdefault(name, {}).setdefault(lr, []).append(max(r["val_acc"] for r in run["history"]))
    out = {}
    for name in dict.fromkeys(r["optimizer"]["name"] for r in loaded["config"]["runs"]):
        bad = diverged.get(name, set())
        scores = {lr: sum(v) / len(v) for lr, v in table.get(name, {}).items() if lr not in bad}
        out[name] = {
            "lrs": sorted(scores),
            "val_acc": [scores[lr] for lr in sorted(scores)],
            "diverged": sorted(bad),
            "chosen": max(scores, key=scores.get) if scores else None,
            "method": "grid",
        }
    return out


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


def lr_find_selection(config: CompareConfig) -> dict[str, Any]:
    """The finder's suggestion per optimizer, on the config's data, seed and first architecture."""
    from fmnist_pl.data.datamodule import FashionMNISTDataModule

    folder = idx.locate(config.data_dir, allow_download=config.download)
    datamodule = FashionMNISTDataModule(
        arrays=idx.load_arrays(folder),
        batch_size=config.batch_size,
        seeds=[config.seed],
        stack_seeds=False,
        val_size=config.val_size,
    )
    specs = registry.resolve(config.optimizers, None, registry.parse_overrides(config.overrides))
    found = find_lrs(specs, datamodule, config.hidden, config.seed, config.accelerator)
    return {name: row | {"lrs": [], "val_acc": [], "diverged": [], "method": "lr_find"} for name, row in found.items()}


def sweep(
    config: CompareConfig,
    final_epochs: int | None = None,
    echo: Callable[[str], None] = print,
    lr_find: bool = False,
    backend: Backend | None = None,
    drawer: Drawer | None = None,
) -> Path:
    """Choose each optimizer's learning rate, then compare them at the chosen rates.

    Writes ``<output>/<name>/sweep/`` (every optimizer × rate, one lockstep group),
    ``sweep.json`` (the choice) and ``final/`` (a normal compare at the chosen rates, whose
    report shows the sweep). Returns the final compare's folder. ``backend``: where both
    compares train (as in :func:`~fmnist_pl.study.compare.compare`; one Ray connection serves
    both); lr-find runs here. ``drawer``: the report figures' worker processes. The top folder
    is a marked "sweep" folder, held by this process for the whole sweep (:mod:`fmnist_pl.store.lock`).
    """
    if not config.lrs and not lr_find:
        raise ConfigError("sweep needs --lrs (e.g. --lrs 1e-4:1e0:7) or --lr-find")
    check_gradient_only(config.optimizers, "sweep")
    if final_epochs is not None and (isinstance(final_epochs, bool) or final_epochs < 1):
        raise ConfigError(f"--final-epochs must be a whole number >= 1, got {final_epochs}")
    backend = backend or InProcess()
    top = output_folder(config)
    check_owned(top, "sweep")
    _, _, runs = prepare(replace(config, lrs=(), output_dir=str(top), name="final"))  # names, data, output first
    backend.check(runs, config)
    how = "the same `fmnist-pl sweep` command with " + shlex.join(
        ["--output-dir", str(top.parent), "--name", top.name, *backend.resume_options()]
    )
    with exclusive(top, "sweep") as claim:
        try:
            chosen = _choose(config, top, lr_find, echo, backend, drawer)
            return _final(config, top, chosen, final_epochs, echo, backend, drawer)
        except Interrupted as exc:
            raise Interrupted(exc.folder, exc.signum, how, exc.started) from None
        finally:
            if _only_marked(top):
                remove_failed_start(claim)  # nothing of the sweep was written: the name is free again


def _only_marked(top: Path) -> bool:
    """Whether ``top`` holds nothing but the marker and lock (a sweep that failed to start)."""
    try:
        return {e.name for e in os.scandir(top)} <= {MARKER_FILE, LOCK_FILE}
    except OSError:
        return False


def _choose(
    config: CompareConfig,
    top: Path,
    lr_find: bool,
    echo: Callable[[str], None],
    backend: Backend,
    drawer: Drawer | None,
) -> dict[str, Any]:
    """The learning rate of every optimizer (``sweep.json``): the grid's compare in ``top/sweep``,
    or Lightning's finder."""
    if lr_find:
        echo(f"lr-find: Lightning's learning-rate finder for {', '.join(config.optimizers)}")
        chosen = lr_find_selection(config)
    else:
        sweep_config = replace(config, output_dir=str(top), name="sweep")
        echo(f"sweep: {len(config.optimizers)} optimizers x {len(config.lrs)} learning rates, {config.epochs} epochs")
        resume = (top / "sweep" / store.CONFIG_FILE).exists()
        chosen = grid_selection(compare(sweep_config, resume=resume, echo=echo, backend=backend, drawer=drawer))
    store.write_json(top / "sweep.json", chosen)
    missing = [n for n, c in chosen.items() if c["chosen"] is None]
    if missing:
        raise ConfigError(f"every learning rate diverged for {', '.join(missing)}; try smaller --lrs")
    for name, c in chosen.items():
        how_chosen = "lr-find suggestion" if lr_find else f"tuned on validation, val acc {max(c['val_acc']):.4f}"
        echo(f"{name}: lr={c['chosen']:g} ({how_chosen})")
    return chosen


def _final(
    config: CompareConfig,
    top: Path,
    chosen: dict[str, Any],
    final_epochs: int | None,
    echo: Callable[[str], None],
    backend: Backend,
    drawer: Drawer | None,
) -> Path:
    """The compare at the chosen rates, in ``top/final`` (its report shows the sweep)."""
    overrides = tuple(f"{n}.lr={c['chosen']!r}" for n, c in chosen.items())
    final_config = replace(
        config,
        lrs=(),
        lr=None,
        overrides=config.overrides + overrides,
        output_dir=str(top),
        name="final",
        epochs=final_epochs or config.epochs,
    )
    resume = (top / "final" / store.CONFIG_FILE).exists()
    return compare(final_config, resume=resume, echo=echo, extra={"sweep": chosen}, backend=backend, drawer=drawer)
