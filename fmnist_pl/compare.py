"""Many runs -> results on disk -> report: the plain Python API behind ``fmnist-pl compare``.

    from fmnist_pl.compare import compare
    from fmnist_pl.config import CompareConfig
    out = compare(CompareConfig(epochs=30))   # -> outputs/<timestamp>/report.html

Everything a user can get wrong (names, values, data folder, output folder) is checked
before any training starts. Results are written per run as they finish; a rerun with the
same folder (``resume``) skips finished runs and continues an interrupted one from its
last epoch checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from fmnist_pl import idx, optimizers, results
from fmnist_pl.config import CompareConfig, ConfigError, arch_name


class Interrupted(Exception):
    """Training was stopped (Ctrl-C, SIGTERM); finished results and the last checkpoint are kept."""

    def __init__(self, folder: Path, how: str | None = None) -> None:
        how = how or f"fmnist-pl compare --resume {folder}"
        super().__init__(f"interrupted; finished results are in {folder}. Continue with: {how}")
        self.folder = folder


def run_name(optimizer: str, seed: int, config: CompareConfig, lr: float | None = None,
             hidden: tuple[int, ...] | None = None) -> str:
    """``adam``; with a learning-rate grid ``adam/lr-1e-03``; with several seeds ``.../seed-43``;
    with several architectures ``h512-256-128/adam``."""
    parts = [arch_name(hidden)] if hidden is not None and len(config.architecture_list) > 1 else []
    parts.append(optimizer)
    if lr is not None:
        parts.append(f"lr-{lr:.0e}")
    if config.seeds > 1:
        parts.append(f"seed-{seed}")
    return "/".join(parts)


def plan(config: CompareConfig) -> list[dict[str, Any]]:
    """The runs of a compare, seed-major (the lockstep engine's member order).

    With ``config.lrs`` (a sweep), every optimizer runs once per learning rate; all of them
    still train in one lockstep group, a param group each.
    """
    specs = optimizers.resolve(config.optimizers, config.lr, optimizers.parse_overrides(config.overrides))
    runs = []
    for hidden in config.architecture_list:
        for seed in config.seed_list:
            for s in specs:
                for lr in config.lrs or (None,):
                    spec = s if lr is None else optimizers.OptimizerSpec(s.name, dict(s.hparams) | {"lr": lr})
                    runs.append({"run": run_name(s.name, seed, config, lr, hidden), "optimizer": spec.to_dict(),
                                 "seed": seed, "lr": spec.hparams["lr"], "hidden": list(hidden)})
    return runs


def parse_lrs(text: str) -> tuple[float, ...]:
    """``"1e-4:1e0:7"`` (log grid: start, stop, count) or ``"0.001,0.01"`` -> learning rates."""
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            lo, hi, n = math.log10(float(start)), math.log10(float(stop)), int(count)
            if n < 2:
                raise ValueError
            lrs = tuple(float(f"{10 ** (lo + (hi - lo) * i / (n - 1)):.3g}") for i in range(n))
        else:
            lrs = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--lrs must be START:STOP:COUNT (log grid, COUNT >= 2) like 1e-4:1e0:7, "
                          f"or a list like 0.001,0.01; got {text!r}") from None
    if any(not math.isfinite(lr) or lr <= 0 for lr in lrs):
        raise ConfigError(f"--lrs must be learning rates > 0, got {text!r}")
    return lrs


def sweep_selection(folder: Path) -> dict[str, Any]:
    """Per optimizer: validation accuracy (best epoch, mean over seeds) at each learning rate, and the
    chosen rate. Chosen on the validation set only; the test set plays no part."""
    loaded = results.load_compare(folder)
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
        scores = {lr: sum(v) / len(v) for lr, v in table.get(name, {}).items() if lr not in diverged.get(name, set())}
        out[name] = {
            "lrs": sorted(scores), "val_acc": [scores[lr] for lr in sorted(scores)],
            "diverged": sorted(diverged.get(name, set())),
            "chosen": max(scores, key=scores.get) if scores else None, "method": "grid",
        }
    return out


def lr_find_selection(config: CompareConfig) -> dict[str, Any]:
    """Lightning's learning-rate finder per optimizer (see :mod:`fmnist_pl.lrfind`)."""
    from fmnist_pl.data import FashionMNISTDataModule
    from fmnist_pl.lrfind import find_lrs

    folder = idx.locate(config.data_dir, allow_download=config.download)
    datamodule = FashionMNISTDataModule(arrays=idx.load_arrays(folder), batch_size=config.batch_size,
                                        seeds=[config.seed])
    specs = optimizers.resolve(config.optimizers, None, optimizers.parse_overrides(config.overrides))
    found = find_lrs(specs, datamodule, config.hidden, config.seed, config.accelerator)
    return {name: row | {"lrs": [], "val_acc": [], "diverged": [], "method": "lr_find"} for name, row in found.items()}


def sweep(config: CompareConfig, final_epochs: int | None = None, echo: Callable[[str], None] = print,
          lr_find: bool = False) -> Path:
    """Tune each optimizer's learning rate on the validation set, then compare at the tuned rates.

    Writes ``<output>/<name>/sweep/`` (every optimizer × rate, one lockstep group),
    ``sweep.json`` (the choice) and ``final/`` (a normal compare at the chosen rates, whose
    report shows the sweep). Returns the final compare's folder.
    """
    if not config.lrs and not lr_find:
        raise ConfigError("sweep needs --lrs (e.g. --lrs 1e-4:1e0:7) or --lr-find")
    top = output_folder(config)
    how = f"the same `fmnist-pl sweep` command with --output-dir {top.parent} --name {top.name}"
    if lr_find:
        prepare(replace(config, lrs=()), resume=True)  # validate names, data and output first
        echo(f"lr-find: Lightning's learning-rate finder for {', '.join(config.optimizers)}")
        chosen = lr_find_selection(config)
    else:
        sweep_config = replace(config, output_dir=str(top), name="sweep")
        echo(f"sweep: {len(config.optimizers)} optimizers x {len(config.lrs)} learning rates, {config.epochs} epochs")
        try:
            sweep_dir = compare(sweep_config, resume=(top / "sweep" / results.CONFIG_FILE).exists(), echo=echo)
        except Interrupted as exc:
            raise Interrupted(exc.folder, how) from None
        chosen = sweep_selection(sweep_dir)
    results.write_json(top / "sweep.json", chosen)
    missing = [n for n, c in chosen.items() if c["chosen"] is None]
    if missing:
        raise ConfigError(f"every learning rate diverged for {', '.join(missing)}; try smaller --lrs")
    for name, c in chosen.items():
        how_chosen = "lr-find suggestion" if lr_find else f"tuned on validation, val acc {max(c['val_acc']):.4f}"
        echo(f"{name}: lr={c['chosen']:g} ({how_chosen})")
    overrides = tuple(f"{n}.lr={c['chosen']!r}" for n, c in chosen.items())
    final_config = replace(config, lrs=(), lr=None, overrides=config.overrides + overrides, output_dir=str(top),
                           name="final", epochs=final_epochs or config.epochs)
    try:
        return compare(final_config, resume=(top / "final" / results.CONFIG_FILE).exists(), echo=echo,
                       extra={"sweep": chosen})
    except Interrupted as exc:
        raise Interrupted(exc.folder, how) from None


def output_folder(config: CompareConfig) -> Path:
    name = config.name or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.output_dir) / name


def format_summary(hidden: tuple[int, ...]) -> str:
    """The model summary, Keras style (the reference printed ``model.summary()``)."""
    from fmnist_pl.model import model_summary, parameter_count

    lines = [f"{'Layer':34} {'Output shape':14} {'Param #':>9}"]
    lines += [f"{r['layer']:34} {r['output']:14} {r['params']:>9,}" for r in model_summary(hidden)]
    lines.append(f"Total params: {parameter_count(hidden):,}")
    return "\n".join(lines)


def check_writable(folder: Path, create: bool = True) -> None:
    """Fail before training, not after 30 epochs, when results could not be written.

    With ``create=False`` it only looks (the nearest existing ancestor must be a writable
    folder), so that a run refused for another reason leaves nothing behind.
    """
    if not create:
        existing = next(p for p in [folder, *folder.absolute().parents] if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write to output folder {folder} ({existing} is not a writable folder); "
                              "pass a writable --output-dir")
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to output folder {folder} ({exc.strerror}); "
                          "pass a writable --output-dir") from None


def environment(accelerator_device: str) -> dict[str, Any]:
    import lightning
    import torch
    import torchmetrics
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
            "torchmetrics": torchmetrics.__version__, "torchvision": torchvision.__version__,
            "platform": platform.platform(), "device": accelerator_device,
            "cpu_threads": torch.get_num_threads()}


def prepare(config: CompareConfig, resume: bool = False) -> tuple[Path, Path, list[dict[str, Any]]]:
    """Validate everything and return (output folder, data folder, planned runs). Writes nothing."""
    runs = plan(config)
    data_folder = idx.locate(config.data_dir, allow_download=config.download)
    idx.check_data_dir(data_folder)
    out = output_folder(config)
    check_writable(out, create=False)
    if (out / results.CONFIG_FILE).exists() and not resume:
        raise ConfigError(f"{out} already holds a compare; continue it with `fmnist-pl compare --resume {out}` "
                          "or choose another --name")
    return out, data_folder, runs


def compare(config: CompareConfig, resume: bool = False, echo: Callable[[str], None] = print,
            extra: dict[str, Any] | None = None) -> Path:
    """Run the comparison described by ``config``; return the output folder (report.html inside)."""
    out, data_folder, runs = prepare(config, resume)
    import torch

    from fmnist_pl import plots, report
    from fmnist_pl.data import FashionMNISTDataModule
    from fmnist_pl.model import model_summary, parameter_count
    from fmnist_pl.train import GRID_IMAGES, TrainingInterrupted, group_checkpoint, train_group

    # Data errors (corrupt/truncated files) surface here, before anything is trained.
    arrays = idx.load_arrays(data_folder)
    check_writable(out)
    datamodule = FashionMNISTDataModule(arrays=arrays, batch_size=config.batch_size, seeds=config.seed_list,
                                        limit_train_batches=config.limit_train_batches)
    datamodule.prepare()
    device = "cuda" if (config.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()) else "cpu"
    device_name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    if not (out / results.CONFIG_FILE).exists():
        results.write_json(out / results.CONFIG_FILE, {
            "config": config.to_dict(), "runs": runs, "data_dir": str(data_folder),
            "split": {k: len(v[1]) for k, v in datamodule.splits.items()},
            "model": {"hidden": list(config.hidden), "parameters": parameter_count(config.hidden),
                      "summary": model_summary(config.hidden),
                      "architectures": [{"hidden": list(a), "parameters": parameter_count(a)}
                                        for a in config.architecture_list]},
            "environment": environment(device_name), "created": _dt.datetime.now().isoformat(timespec="seconds"),
            **(extra or {}),
        })
        plots.save(plots.image_grid(arrays.train_images[:GRID_IMAGES], arrays.train_labels[:GRID_IMAGES].tolist(),
                                    None, idx.CLASS_NAMES, title=f"First {GRID_IMAGES} training images"),
                   out / "train_images.png")
    for arch in config.architecture_list:
        echo(format_summary(arch))
    # Each architecture's runs train as one lockstep group: if any of them lacks results, the
    # group runs (from its last epoch checkpoint when there is one) and rewrites every run's
    # files identically.
    if config.separate:
        # One run at a time: slower, but each run's seconds per epoch are its optimizer's own cost.
        groups = [[r] for r in runs]
    else:
        groups = [[r for r in runs if tuple(r["hidden"]) == arch] for arch in config.architecture_list]
    done = 0
    for group in groups:
        first, done = done + 1, done + len(group)
        if all((out / "runs" / r["run"] / results.METRICS_FILE).exists() for r in group):
            echo(f"runs {first}-{done} of {len(runs)} already finished")
            continue
        ckpt = group_checkpoint(out, group)
        start = f"resuming from {ckpt}" if ckpt.exists() else "in lockstep"
        echo(f"runs {first}-{done} of {len(runs)}: {', '.join(r['run'] for r in group)} - {start} on "
             f"{device_name}, {config.epochs} epochs, batch {config.batch_size}")
        echo(f"watch live: tensorboard --logdir {out / 'tensorboard'}")
        try:
            train_group(group, group[0]["hidden"], datamodule, out, config.epochs, config.accelerator,
                        config.progress, config.limit_train_batches, resume=ckpt if ckpt.exists() else None)
        except TrainingInterrupted:
            report.render(out)  # what finished, with the missing runs named
            raise Interrupted(out) from None
    report.render(out)
    return out
