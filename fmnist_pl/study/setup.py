"""A compare's checks before it starts, and the setup files it writes first.

Everything a user can get wrong (names, values, data folder, output folder) is checked here
before any training starts, and nothing is written until it all holds. ``config.json`` records
what runs, on what; ``samples.json`` the images the report's grids show.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any, Iterator, Sequence

from fmnist_pl import store
from fmnist_pl.architecture import model_summary, parameter_count
from fmnist_pl.config import CompareConfig, RunPlan
from fmnist_pl.data import idx
from fmnist_pl.errors import ConfigError, Interrupted
from fmnist_pl.plan import plan
from fmnist_pl.store.lock import Claim, check_free, check_owned, exclusive, only_marked, remove_failed_start


def output_folder(config: CompareConfig) -> Path:
    """``--output-dir/--name`` (a timestamp when no name is given)."""
    name = config.name or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.output_dir) / name


@contextlib.contextmanager
def holding(top: Path, kind: str, how: str) -> Iterator[Claim]:
    """Hold a study's top folder (a sweep's, a tune's: its compares inside) for the whole study: a stop
    says to continue with ``how``, and a start that wrote nothing but the marker leaves nothing."""
    with exclusive(top, kind) as claim:
        try:
            yield claim
        except Interrupted as exc:
            raise Interrupted(exc.folder, exc.signum, how, exc.started) from None
        finally:
            if only_marked(top):
                remove_failed_start(claim)  # nothing of the study was written: the name is free again


def nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists."""
    return next(p for p in [folder, *folder.absolute().parents] if p.exists())


def _name_max(folder: Path) -> int:
    """The longest file name the file system of ``folder`` takes (255 where it cannot say)."""
    try:
        return os.pathconf(nearest_existing(folder), "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_writable(folder: Path) -> None:
    """Fail before training, not after 30 epochs, when results could not be written.

    It only looks (the nearest existing ancestor must be a writable folder), so that a run
    refused for another reason leaves nothing behind; the folder is made under its lock.
    """
    existing = nearest_existing(folder)
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write to output folder {folder} ({existing} is not a writable folder); "
            "pass a writable --output-dir"
        )


def check_output_folder(config: CompareConfig, kind: str = "compare") -> Path:
    """The output folder may be written by a ``kind`` command and no other process holds it: checked
    by the command line before it starts any worker process (and again, under the lock, later)."""
    out = output_folder(config)
    check_owned(out, kind)
    check_free(out)
    return out


def prepare(
    config: CompareConfig, arrays: idx.FashionMNISTArrays | None = None
) -> tuple[Path, Path | None, list[RunPlan]]:
    """Validate the config, the data folder and the output folder; return (output folder, data
    folder or None for in-memory ``arrays``, planned runs). Writes nothing."""
    runs = plan(config)
    data_folder = None
    if arrays is None:
        data_folder = idx.locate(config.data_dir, allow_download=config.download)
        idx.check_data_dir(data_folder)
    out = output_folder(config)
    check_owned(out, "compare")
    check_writable(out)
    store.check_path_lengths(out, runs, _name_max(out))
    return out, data_folder, runs


def environment(device_name: str, training_processes: int = 1) -> dict[str, Any]:
    """Versions, the device and the command line, recorded with every compare.

    The libraries' versions come from their installed metadata: a compare whose runs train in
    worker processes never imports Lightning in this one (nor EvoTorch or Ray, which may be absent).
    ``command`` is ``sys.argv`` as the shell passed it; from the Python API that is the calling
    program's command line, recorded all the same (it says what started the compare).
    """
    import shlex
    import sys
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from fmnist_pl.version import __version__

    def _installed(distribution: str) -> str:
        try:
            return version(distribution)
        except PackageNotFoundError:
            return "not installed"

    fmnist_pl = _installed("fmnist-pl")
    return {
        "fmnist-pl": __version__ if fmnist_pl == "not installed" else fmnist_pl,  # run from a source tree
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": _installed("lightning"),
        "torchmetrics": _installed("torchmetrics"),
        "torchvision": _installed("torchvision"),
        "evotorch": _installed("evotorch"),
        "ray": _installed("ray"),
        "platform": platform.platform(),
        "device": device_name,
        "cpu_threads": torch.get_num_threads(),
        "training_processes": training_processes,
        "command": shlex.join(sys.argv),
    }


def numerics() -> dict[str, str]:
    """What of the training process's settings changes numbers (:mod:`fmnist_pl.runtime.training`)."""
    import torch

    from fmnist_pl.runtime.training import numerics as process_numerics

    # "highest": full float32 matrix multiplies (no TF32), so CPU and GPU results differ only by rounding.
    return {**process_numerics(), "float32_matmul_precision": torch.get_float32_matmul_precision()}


def write_setup(
    out: Path,
    config: CompareConfig,
    runs: Sequence[RunPlan],
    data_folder: Path | None,
    arrays: idx.FashionMNISTArrays,
    device_name: str,
    extra: dict[str, Any] | None,
    training_processes: int = 1,
) -> None:
    """config.json (what runs, on what) and samples.json (the images the report's grids show)."""
    n_train = len(arrays.train_labels)
    # samples.json first, config.json last: config.json's presence marks a finished setup (a stop in
    # between leaves a folder that the next start completes, or removes if it created it).
    if not (out / store.SAMPLES_FILE).exists():
        from fmnist_pl.store.schema import SamplesFile

        n = store.GRID_IMAGES
        # Built through the schema the report reads it back with (up to GRID_IMAGES of each set).
        samples = SamplesFile(
            train_images=arrays.train_images[:n].reshape(-1, 28 * 28).tolist(),
            train_labels=arrays.train_labels[:n].tolist(),
            test_images=arrays.test_images[:n].reshape(-1, 28 * 28).tolist(),
        )
        store.write_json(out / store.SAMPLES_FILE, samples.model_dump(), indent=None)
    if (out / store.CONFIG_FILE).exists():
        return
    store.write_json(
        out / store.CONFIG_FILE,
        {
            "format": store.FORMAT_VERSION,
            "config": config.to_dict(),
            "runs": [r.to_dict() for r in runs],
            "data_dir": str(data_folder) if data_folder else "(in-memory arrays)",
            "split": {"train": n_train - config.val_size, "val": config.val_size, "test": len(arrays.test_labels)},
            "model": {
                "hidden": list(config.hidden),
                "parameters": parameter_count(config.hidden),
                "summary": model_summary(config.hidden),
                "architectures": [
                    {"hidden": list(a), "parameters": parameter_count(a)} for a in config.architecture_list
                ],
            },
            "environment": environment(device_name, training_processes),
            "numerics": numerics(),
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
            **(extra or {}),
        },
    )
