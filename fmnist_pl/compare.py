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
import os
import platform
from pathlib import Path
from typing import Any, Callable

from fmnist_pl import idx, optimizers, results
from fmnist_pl.config import CompareConfig, ConfigError


class Interrupted(Exception):
    """Training was stopped (Ctrl-C, SIGTERM); finished results and the last checkpoint are kept."""

    def __init__(self, folder: Path) -> None:
        super().__init__(f"interrupted; finished results are in {folder}. "
                         f"Continue with: fmnist-pl compare --resume {folder}")
        self.folder = folder


def run_name(optimizer: str, seed: int, config: CompareConfig) -> str:
    return optimizer if config.seeds == 1 else f"{optimizer}/seed-{seed}"


def plan(config: CompareConfig) -> list[dict[str, Any]]:
    """The runs of a compare, seed-major (the lockstep engine's member order)."""
    specs = optimizers.resolve(config.optimizers, config.lr, optimizers.parse_overrides(config.overrides))
    return [{"run": run_name(s.name, seed, config), "optimizer": s.to_dict(), "seed": seed}
            for seed in config.seed_list for s in specs]


def output_folder(config: CompareConfig) -> Path:
    name = config.name or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.output_dir) / name


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


def compare(config: CompareConfig, resume: bool = False, echo: Callable[[str], None] = print) -> Path:
    """Run the comparison described by ``config``; return the output folder (report.html inside)."""
    out, data_folder, runs = prepare(config, resume)
    import torch

    from fmnist_pl import plots, report
    from fmnist_pl.data import FashionMNISTDataModule
    from fmnist_pl.model import model_summary, parameter_count
    from fmnist_pl.train import GRID_IMAGES, train_group

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
                      "summary": model_summary(config.hidden)},
            "environment": environment(device_name), "created": _dt.datetime.now().isoformat(timespec="seconds"),
        })
        plots.save(plots.image_grid(arrays.train_images[:GRID_IMAGES], arrays.train_labels[:GRID_IMAGES].tolist(),
                                    None, idx.CLASS_NAMES, title=f"First {GRID_IMAGES} training images"),
                   out / "train_images.png")
    # The runs train as one lockstep group: if any of them lacks results, the group runs (from
    # its last epoch checkpoint when there is one) and rewrites every run's files identically.
    unfinished = [r["run"] for r in runs if not (out / "runs" / r["run"] / results.METRICS_FILE).exists()]
    if unfinished:
        from fmnist_pl.train import TrainingInterrupted, group_checkpoint

        ckpt = group_checkpoint(out, runs)
        start = f"resuming from {ckpt}" if ckpt.exists() else "in lockstep"
        echo(f"runs 1-{len(runs)} of {len(runs)}: {', '.join(r['run'] for r in runs)} - {start} on {device_name}, "
             f"{config.epochs} epochs, batch {config.batch_size}")
        echo(f"watch live: tensorboard --logdir {out / 'tensorboard'}")
        try:
            train_group(runs, config.hidden, datamodule, out, config.epochs, config.accelerator, config.progress,
                        config.limit_train_batches, resume=ckpt if ckpt.exists() else None)
        except TrainingInterrupted:
            report.render(out)  # what finished, with the missing runs named
            raise Interrupted(out) from None
    else:
        echo(f"all {len(runs)} runs already finished in {out}; re-rendering the report")
    report.render(out)
    return out
