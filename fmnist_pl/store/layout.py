"""Where everything lives in a results folder: file names, a run's folder, a group's checkpoint.

A compare folder::

    .fmnist-pl         the marker: this folder is fmnist-pl's, of kind "compare" (a sweep's top folder: "sweep")
    .lock              held by the one process writing the folder
    config.json        the config, the planned runs (structured keys), split, model, environment, "format"
    samples.json       the first 40 training and test images (the report's image grids)
    runs/<run>/        metrics.json (its presence marks the run finished), history.json/.csv,
                       predictions.json, classification_report.txt, checkpoints/{best,last}.pt
    summary.json       rankings, significance, observations (fmnist_pl.analysis.summary)
    runs.csv           one row per run; history.csv: one row per run and epoch (fmnist_pl.store.tables,
                       written with summary.json; ``fmnist_pl.load(folder)`` gives the same tables)
    report.html        the self-contained report (fmnist_pl.report)
    tensorboard/<run>/ and checkpoints/group-*/last.ckpt (resume)
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from fmnist_pl.errors import ConfigError, ResultsError

if TYPE_CHECKING:
    from fmnist_pl.config import RunPlan

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
PREDICTIONS_FILE = "predictions.json"
POINTS_FILE = "anytime.json"  # a run's validations between epoch ends (fmnist_pl.engine.anytime), when it has any
SUMMARY_FILE = "summary.json"
SAMPLES_FILE = "samples.json"
RUNS_TABLE = "runs.csv"
HISTORY_TABLE = "history.csv"  # the folder's, every run's epochs; a run's own is runs/<run>/history.csv
GRID_IMAGES = 40  # samples.json holds up to this many images of each set: the reference showed the first 40 test images
FORMAT_VERSION = 2  # 1: fmnist-pl 0.1 (runs keyed by name only, figures drawn at training time)
MARKER_FILE = ".fmnist-pl"  # in every folder fmnist-pl made: what kind it is (fmnist_pl.store.lock)
TEMPORARY_SUFFIX = ".fmnist-pl.tmp"  # a file being written (fmnist_pl.store.io): no other program's name
GROUPS_FILE = "groups.json"  # under checkpoints/: the folder's training groups, fixed at its first start


def check_run_name(name: str) -> str:
    """A run name is a relative path of plain segments: no ``..``, no ``.``, no empty segment, no NUL."""
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise ValueError(f"run name {name!r} is not a plain relative path")
    return name


def group_checkpoint(folder: Path, group: Sequence[RunPlan]) -> Path:
    """Where a training group keeps its last-epoch Trainer checkpoint (what ``--resume`` continues).

    Named after the group's first run, so the folder is the same in whichever process trains it.
    """
    return group_checkpoint_of(folder, group[0].name)


def group_checkpoint_of(folder: Path, first_run: str) -> Path:
    """:func:`group_checkpoint` of the group whose first run is named ``first_run``."""
    return folder / "checkpoints" / f"group-{first_run.replace('/', '_')}" / "last.ckpt"


def run_dir(folder: Path, run: str) -> Path:
    """A run's folder. Names come from the planner; one read from a file must stay inside ``folder/runs``."""
    try:
        check_run_name(run)
    except ValueError as exc:
        raise ResultsError(f"{folder}: {exc}; results name runs by plain relative paths") from None
    base = (Path(folder) / "runs").resolve()
    path = (base / run).resolve()
    if base not in path.parents:
        raise ResultsError(f"{folder}: run {run!r} resolves outside {base} (a link?); refused")
    return Path(folder) / "runs" / run


PATH_MAX = 4096  # bytes in a whole path on Linux


def _temporary(name: str) -> str:
    """The longest name :func:`fmnist_pl.store.io.atomic_write` gives the temporary sibling of ``name``."""
    return f".{name}.{'x' * 8}{TEMPORARY_SUFFIX}"


def written_paths(folder: Path, runs: Sequence[RunPlan]) -> list[Path]:
    """The longest paths a compare of ``runs`` writes under ``folder`` (temporary names included),
    so that a name too long is refused before anything is written, not after the setup."""
    host = socket.gethostname()
    paths = [folder / _temporary(SUMMARY_FILE), folder / "checkpoints" / _temporary(GROUPS_FILE)]
    for run in runs:
        base = folder / "runs" / run.name
        paths += [base / _temporary(name) for name in (METRICS_FILE, PREDICTIONS_FILE, "classification_report.txt")]
        paths.append(base / "checkpoints" / _temporary("best.pt"))
        # TensorBoard's event file: events.out.tfevents.<time>.<host>.<pid>.<n>
        paths.append(folder / "tensorboard" / run.name / f"events.out.tfevents.{'9' * 10}.{host}.{'9' * 7}.{'9' * 3}")
        paths.append(group_checkpoint(folder, [run]).parent / _temporary("last.ckpt"))
    return paths


def check_path_lengths(folder: Path, runs: Sequence[RunPlan], name_max: int = 255) -> None:
    """Every file a compare will write must have a name of at most ``name_max`` bytes and a path of at
    most :data:`PATH_MAX`: one line naming what makes it too long, before anything is written."""
    inside = len(folder.parts)
    for path in written_paths(folder, runs):
        if len(str(path).encode()) > PATH_MAX:
            raise ConfigError(
                f"{folder} makes paths of {len(str(path).encode())} bytes, more than a file system allows "
                f"({PATH_MAX}); choose a shorter --output-dir or --name"
            )
        long = next((p for p in path.parts[inside:] if len(p.encode()) > name_max), None)
        if long is not None:
            raise ConfigError(
                f"the run names make a file name of {len(long.encode())} bytes ({long[:40]}...), more than a "
                f"file system allows ({name_max}); use fewer --hidden layers or architectures, or shorter --set values"
            )
