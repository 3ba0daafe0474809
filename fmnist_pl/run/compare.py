"""The plain Python API behind ``fmnist-pl compare``: plan -> lockstep groups -> results on disk -> summary -> report.

    from fmnist_pl.run.compare import compare
    from fmnist_pl.config import CompareConfig
    out = compare(CompareConfig(epochs=30))   # -> outputs/<timestamp>/report.html

Everything a user can get wrong (names, values, data folder, output folder) is checked
before any training starts. Results are written per run as they finish; a rerun with the
same folder (``resume``) skips finished runs and continues an interrupted group from its
last epoch checkpoint. ``arrays`` runs the whole API on in-memory data (tests, notebooks).
"""

from __future__ import annotations

import datetime as _dt
import errno
import importlib
import os
import platform
import shutil
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from fmnist_pl import results, stops
from fmnist_pl.architecture import format_summary, model_summary, parameter_count
from fmnist_pl.config import CompareConfig, ConfigError, RunPlan
from fmnist_pl.data import idx
from fmnist_pl.results import group_checkpoint
from fmnist_pl.run.cluster import RaySession, connected
from fmnist_pl.run.folder import exclusive, remove_failed_start
from fmnist_pl.run.plan import check_fits, group_need, groups, plan, split
from fmnist_pl.stops import Stopped, stops_as_exceptions

if TYPE_CHECKING:
    from fmnist_pl.report.figures import Drawer
    from fmnist_pl.run.pool import TrainingPool

GRID_IMAGES = 40  # the reference showed the first 40 test images


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the compare; finished results and the last epoch checkpoint are kept."""

    def __init__(self, folder: Path, signum: int = signal.SIGINT, how: str | None = None,
                 started: bool = True) -> None:
        how = how or f"fmnist-pl compare --resume {folder}"
        text = (f"interrupted; finished results are in {folder}. Continue with: {how}" if started else
                f"interrupted before the compare started; nothing was kept in {folder}")
        super().__init__(text)
        self.folder, self.signum, self.started = folder, signum, started

    @property
    def exit_code(self) -> int:
        """130 for SIGINT (Ctrl-C), 143 for SIGTERM: what a shell reports for a process those signals end."""
        return 128 + self.signum


def output_folder(config: CompareConfig) -> Path:
    name = config.name or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(config.output_dir) / name


def _nearest_existing(folder: Path) -> Path:
    return next(p for p in [folder, *folder.absolute().parents] if p.exists())


def check_writable(folder: Path) -> None:
    """Fail before training, not after 30 epochs, when results could not be written.

    It only looks (the nearest existing ancestor must be a writable folder), so that a run
    refused for another reason leaves nothing behind; the folder is made under its lock.
    """
    existing = _nearest_existing(folder)
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to output folder {folder} ({existing} is not a writable folder); "
                          "pass a writable --output-dir")


def environment(device_name: str, training_processes: int = 1) -> dict[str, Any]:
    """Versions and the device, recorded with every compare.

    The libraries' versions come from their installed metadata: a compare whose runs train in
    worker processes never imports Lightning in this one.
    """
    from importlib.metadata import version

    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": version("lightning"),
            "torchmetrics": version("torchmetrics"), "torchvision": version("torchvision"),
            "platform": platform.platform(), "device": device_name, "cpu_threads": torch.get_num_threads(),
            "training_processes": training_processes}


def check_device(config: CompareConfig, runs: list[RunPlan]) -> None:
    """The accelerator asked for exists, and every run fits in its memory (groups that do not are
    cut: :func:`local_groups`)."""
    import torch

    from fmnist_pl.engine.memory import available_bytes

    if config.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--accelerator {config.accelerator}, but torch {torch.__version__} sees no CUDA GPU "
                          "here; use --accelerator cpu (or auto: the GPU when there is one)")
    if config.accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--accelerator mps, but this machine has no Apple GPU (MPS); use --accelerator cpu or auto")
    device, _ = _device(config.accelerator)

    free, where = available_bytes(device)
    if free is not None:
        check_fits(runs, config.batch_size, free, f"the {where}")


def local_groups(config: CompareConfig, planned: list[list[RunPlan]], slots: int = 1) -> list[list[RunPlan]]:
    """The planner's groups, each cut (:func:`~fmnist_pl.run.plan.halves`) until it fits this machine's
    device memory: a big study trains in several lockstep groups instead of running out of memory.

    ``slots``: processes that train at once (:class:`~fmnist_pl.run.pool.TrainingPool`); the groups
    are cut until each has one, and each must fit its share of the memory.
    """
    from fmnist_pl.engine.memory import available_bytes

    free, _ = available_bytes(_device(config.accelerator)[0])
    if free is None and slots == 1:
        return planned
    return split(planned, slots, lambda unit: free is None or group_need(unit, config.batch_size) <= free / slots)


def prepare(config: CompareConfig, resume: bool = False, arrays: "idx.FashionMNISTArrays | None" = None,
            here: bool = True) -> tuple[Path, Path | None, list[RunPlan]]:
    """Validate everything and return (output folder, data folder or None, planned runs). Writes nothing.

    ``here``: the runs train in this process, so this machine's device must hold them (on a Ray
    cluster the backend sizes units to the workers instead).
    """
    runs = plan(config)
    if here:
        check_device(config, runs)
    data_folder = None
    if arrays is None:
        data_folder = idx.locate(config.data_dir, allow_download=config.download)
        idx.check_data_dir(data_folder)
    out = output_folder(config)
    check_writable(out)
    return out, data_folder, runs


def _check_fresh(out: Path, resume: bool) -> None:
    """Under the folder's lock: a new compare never writes into another's results."""
    if (out / results.CONFIG_FILE).exists() and not resume:
        raise ConfigError(f"{out} already holds a compare; continue it with `fmnist-pl compare --resume {out}` "
                          "or choose another --name")


def _device(accelerator: str) -> tuple[str, str]:
    import torch

    cuda = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return ("cuda", torch.cuda.get_device_name(0)) if cuda else ("cpu", f"CPU ({os.cpu_count()} cores)")


def _write_setup(out: Path, config: CompareConfig, runs: list[RunPlan], data_folder: Path | None,
                 arrays: "idx.FashionMNISTArrays", device_name: str, extra: dict[str, Any] | None,
                 training_processes: int = 1) -> None:
    """config.json (what runs, on what) and samples.json (the images the report's grids show)."""
    n_train = len(arrays.train_labels)
    # samples.json first, config.json last: config.json's presence marks a finished setup (a stop in
    # between leaves a folder that the next start completes, or removes if it created it).
    if not (out / results.SAMPLES_FILE).exists():
        results.write_json(out / results.SAMPLES_FILE, {
            "train_images": arrays.train_images[:GRID_IMAGES].reshape(-1, 28 * 28).tolist(),
            "train_labels": arrays.train_labels[:GRID_IMAGES].tolist(),
            "test_images": arrays.test_images[:GRID_IMAGES].reshape(-1, 28 * 28).tolist(),
        }, indent=None)
    if (out / results.CONFIG_FILE).exists():
        return
    results.write_json(out / results.CONFIG_FILE, {
        "format": results.FORMAT_VERSION,
        "config": config.to_dict(), "runs": [r.to_dict() for r in runs],
        "data_dir": str(data_folder) if data_folder else "(in-memory arrays)",
        "split": {"train": n_train - config.val_size, "val": config.val_size, "test": len(arrays.test_labels)},
        "model": {"hidden": list(config.hidden), "parameters": parameter_count(config.hidden),
                  "summary": model_summary(config.hidden),
                  "architectures": [{"hidden": list(a), "parameters": parameter_count(a)}
                                    for a in config.architecture_list]},
        "environment": environment(device_name, training_processes),
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        **(extra or {}),
    })


def finish(out: Path, drawer: "Drawer | None" = None) -> Path:
    """Results on disk -> summary.json -> report.html (also what an interrupted compare renders).

    The figures are submitted first: ``drawer``'s workers draw them while the summary is computed.
    """
    from fmnist_pl.analysis.summary import write_summary
    from fmnist_pl.report import render

    return render(out, lambda loaded: write_summary(out, loaded), drawer)


def compare(config: CompareConfig, resume: bool = False, echo: Callable[[str], None] = print,
            extra: dict[str, Any] | None = None, arrays: "idx.FashionMNISTArrays | None" = None,
            ray: "str | RaySession | None" = None, drawer: "Drawer | None" = None,
            pool: "TrainingPool | None" = None) -> Path:
    """Run the comparison described by ``config``; return the output folder (report.html inside).

    ``arrays``: train on these in-memory arrays instead of the dataset files (``config.val_size``
    of their training images validate). The folder is held by this process alone while it runs
    (:mod:`fmnist_pl.run.folder`); a start that fails before its setup is written leaves nothing.
    ``ray``: train on a Ray cluster (a ``--ray`` address, or a session already connected; see
    :mod:`fmnist_pl.run.cluster`) - the same folder, files and numbers as here.
    ``drawer``: worker processes that draw the report's figures
    (:class:`~fmnist_pl.report.figures.Drawer`; the command line starts one); without, they are
    drawn in this process.
    ``pool``: worker processes of this machine that train the groups at the same time, each
    cut in as many units as the pool has workers (:class:`~fmnist_pl.run.pool.TrainingPool`; the
    command line starts one on a CPU) - the same numbers as training here; without, or on a GPU,
    the groups train in this process, one after another.
    """
    out, data_folder, runs = prepare(config, resume, arrays, here=ray is None)
    with connected(ray) as cluster:
        if cluster is not None:
            cluster.check(runs, config)  # on the cluster's workers, before anything is written
        return _hold_and_run(out, config, runs, data_folder, arrays, echo, extra, resume, cluster, drawer, pool)


def _hold_and_run(out: Path, config: CompareConfig, runs: list[RunPlan], data_folder: Path | None,
                  arrays: "idx.FashionMNISTArrays | None", echo: Callable[[str], None], extra: dict[str, Any] | None,
                  resume: bool, cluster: RaySession | None, drawer: "Drawer | None" = None,
                  pool: "TrainingPool | None" = None) -> Path:
    """:func:`compare` once everything is checked: hold the folder, run, and answer stops and failures."""
    with exclusive(out) as created:
        how = f"fmnist-pl compare --resume {out}" + (f" --ray {cluster.target.spec}" if cluster else "")
        try:
            with stops_as_exceptions():
                _check_fresh(out, resume)
                return _run(out, config, runs, data_folder, arrays, echo, extra, cluster, drawer, pool)
        except BaseException as exc:
            signum = exc.signum if isinstance(exc, Stopped) else stops.requested()
            setup_written = (out / results.CONFIG_FILE).exists()
            if signum is not None:
                if not setup_written:
                    remove_failed_start(created)
                    raise Interrupted(out, signum, started=False) from None
                try:
                    finish(out, drawer)  # what finished, with the missing runs named
                except (results.ResultsError, OSError):
                    pass  # the results stay as they are; `report` can render them later
                raise Interrupted(out, signum, how) from None
            if not setup_written:
                remove_failed_start(created)  # a failed start leaves no folder behind to block the name
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise results.ResultsError(
                    f"no space left on the disk of {out} while writing {exc.filename or 'results'} "
                    f"({shutil.disk_usage(_nearest_existing(out)).free / 2**20:,.0f} MiB free); free "
                    + (f"some, then continue with: fmnist-pl compare --resume {out}" if setup_written else
                       "some and run the compare again")) from None
            raise


GROUPS_FILE = "groups.json"  # under checkpoints/: the folder's training groups, fixed at its first start


def training_groups(out: Path, runs: list[RunPlan], fresh: Callable[[], list[list[RunPlan]]]) -> list[list[RunPlan]]:
    """The folder's training groups: ``fresh()`` at its first start, then the saved ones, so that
    ``--resume`` - here or on a cluster that cuts groups differently - continues every group
    from its own checkpoint."""
    path = out / "checkpoints" / GROUPS_FILE
    if not path.exists():
        planned = fresh()
        results.write_json(path, {"groups": [[r.name for r in g] for g in planned]})
        return planned
    by_name = {r.name: r for r in runs}
    saved = results.read_json(path).get("groups", [])
    names = [n for g in saved for n in g]
    if sorted(names) != sorted(by_name):
        raise results.ResultsError(f"{path} does not list the runs of this compare; delete it to regroup them "
                                   f"(groups then restart from scratch): rm {path}")
    return [[by_name[n] for n in g] for g in saved]


def datamodule_for(group: list[RunPlan], config: CompareConfig, arrays: "idx.FashionMNISTArrays") -> Any:
    """The group's data: a search scores its population on its own fitness batch; gradient runs
    step on --batch-size, each seed's batches in its own order (the seeds come from the runs' plans)."""
    from fmnist_pl.data.datamodule import FashionMNISTDataModule

    search = group[0].optimizer.info.gradient_free
    batch_size = int(group[0].optimizer.hparams["batch_size"]) if search else config.batch_size
    seeds = list(dict.fromkeys(r.seed for r in group))
    return FashionMNISTDataModule(arrays=arrays, batch_size=batch_size, seeds=seeds, stack_seeds=not search,
                                  val_size=config.val_size)


def finished(out: Path, group: list[RunPlan]) -> bool:
    return all((results.run_dir(out, r.name) / results.METRICS_FILE).exists() for r in group)


def _run(out: Path, config: CompareConfig, runs: list[RunPlan], data_folder: Path | None,
         arrays: "idx.FashionMNISTArrays | None", echo: Callable[[str], None], extra: dict[str, Any] | None,
         cluster: "RaySession | None" = None, drawer: "Drawer | None" = None,
         pool: "TrainingPool | None" = None) -> Path:
    """Setup, every training group not yet finished (here, in ``pool``'s processes or on ``cluster``),
    summary and report."""
    # Data errors (corrupt/truncated files) surface here, before anything is trained.
    arrays = arrays if arrays is not None else idx.load_arrays(data_folder)
    if config.val_size >= len(arrays.train_labels):
        raise ConfigError(f"val_size {config.val_size} leaves no training images (the data has "
                          f"{len(arrays.train_labels)}); use a smaller val_size")
    device, device_name = _device(config.accelerator) if cluster is None else ("ray", cluster.describe())
    if device != "cpu" or config.trains_alone:
        pool = None  # one GPU is kept busy by one process; runs timed alone must not share the machine
    _write_setup(out, config, runs, data_folder, arrays, device_name, extra, pool.workers if pool else 1)
    for arch in config.architecture_list:
        echo(format_summary(arch))
    if device == "cuda" or (cluster is not None and cluster.uses_gpus(config.accelerator)):
        echo("float32 matrix multiplies at full precision (no TF32), on purpose: GPU and CPU results then "
             "differ only by rounding")
    if config.time_budget is not None:
        echo(f"every run trains alone for at most {config.time_budget:g} s (or {config.epochs} epochs), "
             "so that each has the machine to itself for the same time")
    by_plan = groups(runs, config.trains_alone)
    slots = pool.workers if pool is not None else 1
    planned = training_groups(out, runs, lambda: local_groups(config, by_plan, slots) if cluster is None else
                              cluster.units(by_plan, config))
    if cluster is None and pool is None and len(planned) > len(by_plan):
        echo(f"the runs do not fit in this device's memory at once: {len(planned)} lockstep groups of "
             f"{min(map(len, planned))}-{max(map(len, planned))} runs, one after another")
    if cluster is None:
        _train_here(out, config, planned, arrays, echo, device_name, pool)
    else:
        todo = [g for g in planned if not finished(out, g)]
        if len(todo) < len(planned):
            echo(f"{len(planned) - len(todo)} of {len(planned)} groups already finished")
        cluster.train(out, config, todo, arrays, echo)
    finish(out, drawer)
    return out


def _describe(group: list[RunPlan], config: CompareConfig, out: Path) -> str:
    """How a group trains (or that it resumes), for the line announcing it."""
    ckpt = group_checkpoint(out, group)
    if ckpt.exists():
        return f"resuming from {ckpt}"
    hp = group[0].optimizer.hparams
    if group[0].optimizer.info.gradient_free:
        return f"population {hp['popsize']}, fitness batch {hp['batch_size']}"
    return f"{'alone' if len(group) == 1 else 'in lockstep'}, batch {config.batch_size}"


def _train_here(out: Path, config: CompareConfig, planned: list[list[RunPlan]], arrays: "idx.FashionMNISTArrays",
                echo: Callable[[str], None], device_name: str, pool: "TrainingPool | None" = None) -> None:
    """Train the groups not yet finished: one after another in this process, or at the same time in
    ``pool``'s; each run's files are written as its group ends."""
    todo: list[list[RunPlan]] = []
    done, total = 0, sum(len(g) for g in planned)
    epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
    for group in planned:
        first, done = done + 1, done + len(group)
        if finished(out, group):
            echo(f"runs {first}-{done} of {total} already finished")
            continue
        line = f"runs {first}-{done} of {total}: {', '.join(r.name for r in group)} - {_describe(group, config, out)}"
        if pool is None:
            _train_in_this_process(out, config, group, arrays, echo, f"{line} on {device_name}, {epochs}")
        else:
            echo(line)
            todo.append(group)
    if pool is not None and todo:
        echo(f"on {device_name}, {epochs}; watch live: tensorboard --logdir {out / 'tensorboard'}")
        # The report draws some figures in this process (fmnist_pl.report.figures); Lightning's imports
        # brought matplotlib along when training ran here. Import it while the workers train.
        threading.Thread(target=importlib.import_module, args=("fmnist_pl.report.plots",), daemon=True,
                         name="report-imports").start()
        pool.train(out, config, todo, arrays, echo)


def _train_in_this_process(out: Path, config: CompareConfig, group: list[RunPlan], arrays: "idx.FashionMNISTArrays",
                           echo: Callable[[str], None], line: str) -> None:
    echo(line)
    echo(f"watch live: tensorboard --logdir {out / 'tensorboard'}")
    train_and_write(out, config, group, arrays, config.accelerator, config.progress)


def train_and_write(out: Path, config: CompareConfig, group: Sequence[RunPlan], arrays: "idx.FashionMNISTArrays",
                    accelerator: str, progress: bool, after_checkpoint: Any = None) -> None:
    """Train ``group`` into the folder ``out`` - from its checkpoint there, if it has one - and write
    its runs' files: what every backend runs for a group (this process, a pool's worker, a Ray task
    in its scratch folder). ``after_checkpoint``: see :func:`fmnist_pl.engine.trainer.make_trainer`."""
    from fmnist_pl.imports import import_engine

    import_engine()  # the collector paused, where this process has not imported it yet (a GPU, a Ray task)
    from fmnist_pl.engine.trainer import train_group
    from fmnist_pl.run.artifacts import test_metrics, write_run

    ckpt = group_checkpoint(out, group)
    trained = train_group(group, datamodule_for(group, config, arrays), out, config.epochs, accelerator, progress,
                          config.limit_train_batches, resume=ckpt if ckpt.exists() else None,
                          time_budget=config.time_budget, after_checkpoint=after_checkpoint)
    tests = test_metrics(trained.members)
    with results.FileWriter() as files:
        for k, member in enumerate(trained.members):
            write_run(member, out, trained.fit_seconds, trained.trainer.loggers[k], tests[k], files)
