"""The plain Python API behind ``fmnist-pl compare``: plan -> lockstep groups -> backend -> store -> summary -> report.

    from fmnist_pl.study.compare import compare
    from fmnist_pl.config import CompareConfig
    out = compare(CompareConfig(epochs=30))   # -> outputs/<timestamp>/report.html

Everything a user can get wrong is checked before any training starts (:mod:`.setup`).
Results are written per run as they finish; a rerun with the same folder (``resume``) skips
finished runs and continues an interrupted group from its last epoch checkpoint. Where the
groups train is the backend's business (:mod:`fmnist_pl.execution`); ``arrays`` runs the
whole API on in-memory data (tests, notebooks).
"""

from __future__ import annotations

import errno
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from fmnist_pl import store
from fmnist_pl.architecture import format_summary
from fmnist_pl.config import Budget, CompareConfig, RunPlan, absolute_path
from fmnist_pl.data import idx
from fmnist_pl.errors import ConfigError, Interrupted, ResultsError, resume_command
from fmnist_pl.execution.backend import Backend, InProcess
from fmnist_pl.plan import groups
from fmnist_pl.runtime import stops
from fmnist_pl.runtime.imports import import_in_background
from fmnist_pl.store.groups import all_written, training_groups
from fmnist_pl.store.lock import exclusive, folder_kind, remove_failed_start
from fmnist_pl.study.setup import nearest_existing, prepare, write_setup

if TYPE_CHECKING:
    from fmnist_pl.report.figures import Drawer

GROUP_LINES = 20  # groups announced one line each; a study of more gets one line for all


@dataclass(frozen=True)
class CompareJob:
    """One compare once everything is checked: what :func:`compare` hands down instead of ten arguments."""

    out: Path
    config: CompareConfig
    runs: list[RunPlan]
    data_folder: Path | None
    arrays: idx.FashionMNISTArrays | None
    echo: Callable[[str], None]
    extra: dict[str, Any] | None
    backend: Backend
    drawer: Drawer | None
    write_report: bool = True
    carry_from: tuple[Path, ...] = ()  # compare folders whose checkpoints this one's runs go on from

    @property
    def resume_hint(self) -> str:
        return resume_command(self.out, *self.backend.resume_options())

    def wrap_up(self) -> None:
        """The summary and, unless this compare is a step of a larger study, the report (also one an
        earlier version left in such a step's folder: it is ours, and would show other results)."""
        if self.write_report or (self.out / "report.html").exists():
            finish(self.out, self.drawer)
        else:
            from fmnist_pl.analysis.summary import write_summary

            write_summary(self.out)


def finish(out: Path, drawer: Drawer | None = None) -> Path:
    """Results on disk -> summary.json -> report.html (also what an interrupted compare renders).

    The figures are submitted first: ``drawer``'s workers draw them while the summary is computed.
    """
    from fmnist_pl.analysis.summary import write_summary
    from fmnist_pl.report import render

    return render(out, lambda loaded: write_summary(out, loaded), drawer)


def report(folder: str | Path) -> Path:
    """``fmnist-pl report``: rebuild a compare folder's summary and report from its results (no
    training); a file system that refuses the writes (read-only, full) is one line, as in a compare."""
    folder = Path(absolute_path(folder, "FOLDER"))
    if folder.is_dir() and folder_kind(folder) == "sweep":
        final = folder / "final"
        raise ResultsError(
            f"{folder} is a sweep's folder; its comparison at the chosen rates is {final}: "
            + shlex.join(["fmnist-pl", "report", str(final)])
        )
    try:
        return finish(folder)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise ResultsError(
            f"cannot write the report into {folder} ({exc.strerror}); free some space or make it writable, "
            "then run: " + shlex.join(["fmnist-pl", "report", str(folder)])
        ) from None


def compare(
    config: CompareConfig,
    resume: bool = False,
    echo: Callable[[str], None] = print,
    extra: dict[str, Any] | None = None,
    arrays: idx.FashionMNISTArrays | None = None,
    backend: Backend | None = None,
    drawer: Drawer | None = None,
    write_report: bool = True,
    carry_from: Sequence[Path] = (),
) -> Path:
    """Run the comparison described by ``config``; return the output folder (report.html inside,
    unless ``write_report`` is False).

    ``arrays``: train on these in-memory arrays instead of the dataset files (``config.val_size``
    of their training images validate). The folder is held by this process alone while it runs
    (:mod:`fmnist_pl.store.lock`); a start that fails before its setup is written leaves nothing.
    ``backend``: where the groups train (:mod:`fmnist_pl.execution`): this process (the default),
    a :class:`~fmnist_pl.execution.pool.TrainingPool` of this machine's cores, or a
    :class:`~fmnist_pl.execution.ray_backend.RayCluster` - the same folder, files and numbers.
    ``drawer``: worker processes that draw the report's figures
    (:class:`~fmnist_pl.report.figures.Drawer`; the command line starts one); without, they are
    drawn in this process.
    ``write_report``: False writes the summary (and its tables) but no report.html: a tune's rounds, whose
    report is the tune's own (``fmnist-pl report`` renders one's on demand).
    ``carry_from``: earlier compare folders (a tune's successive-halving rungs) whose runs' checkpoints
    this compare's groups go on from, where all of a group's runs have one there
    (:mod:`fmnist_pl.engine.carry`); the rest train from the start.
    """
    backend = (backend or InProcess()).for_config(config)
    out, data_folder, runs = prepare(config, arrays)
    backend.check(runs, config)  # a cluster is connected to only now, once the rest has been checked
    job = CompareJob(
        out, config, runs, data_folder, arrays, echo, extra, backend, drawer, write_report, tuple(carry_from)
    )
    return _hold_and_run(job, resume)


def _check_fresh(out: Path, resume: bool) -> None:
    """Under the folder's lock: a new compare never writes into another's results."""
    if (out / store.CONFIG_FILE).exists() and not resume:
        raise ConfigError(
            f"{out} already holds a compare; continue it with `{resume_command(out)}` or choose another --name"
        )


def _hold_and_run(job: CompareJob, resume: bool) -> Path:
    """Hold the folder, run, and answer stops and failures."""
    out = job.out
    with exclusive(out, "compare") as claim:
        try:
            with stops.stops_as_exceptions():
                _check_fresh(out, resume)
                return _run(job)
        except BaseException as exc:
            signum = exc.signum if isinstance(exc, stops.Stopped) else stops.requested()
            setup_written = (out / store.CONFIG_FILE).exists()
            if signum is not None:
                if not setup_written:
                    remove_failed_start(claim)
                    raise Interrupted(out, signum, started=False) from None
                try:
                    job.wrap_up()  # what finished, with the missing runs named
                except (ResultsError, OSError):
                    pass  # the results stay as they are; `report` can render them later
                raise Interrupted(out, signum, job.resume_hint) from None
            if not setup_written:
                remove_failed_start(claim)  # a failed start leaves no folder behind to block the name
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ResultsError(
                    f"no space left on the disk of {out} while writing {exc.filename or 'results'} "
                    f"({shutil.disk_usage(nearest_existing(out)).free / 2**20:,.0f} MiB free); free "
                    + (
                        f"some, then continue with: {job.resume_hint}"
                        if setup_written
                        else "some and run the compare again"
                    )
                ) from None
            raise


def _run(job: CompareJob) -> Path:
    """Setup, every training group not yet finished (on the job's backend), summary and report."""
    config, echo, backend, out = job.config, job.echo, job.backend, job.out
    # Data errors (corrupt/truncated files) surface here, before anything is trained.
    arrays = job.arrays if job.arrays is not None else idx.load_arrays(job.data_folder)
    if config.val_size >= len(arrays.train_labels):
        raise ConfigError(
            f"val_size {config.val_size} leaves no training images (the data has "
            f"{len(arrays.train_labels)}); use a smaller val_size"
        )
    device_name = backend.describe(config)
    write_setup(out, config, job.runs, job.data_folder, arrays, device_name, job.extra, backend.workers)
    by_plan = groups(job.runs, config.trains_alone)
    planned = training_groups(out, job.runs, lambda: backend.split(by_plan, config))
    carried: dict[str, str] = {}
    if job.carry_from:
        from fmnist_pl.engine.carry import carry

        carried = carry(out, config, planned, job.carry_from)
    _check_checkpoints(out, config, planned)  # a damaged or foreign one: one line before anything is printed
    for arch in config.architecture_list:
        echo(format_summary(arch))
    if backend.uses_gpu(config):
        echo(
            "float32 matrix multiplies at full precision (no TF32), on purpose: GPU and CPU results then "
            "differ only by rounding"
        )
    spec = config.budget_spec
    if spec is not None:
        echo(f"every run stops at {_describe_budget(spec)} (or after {config.epochs} epochs)")
    if backend.here and backend.workers == 1 and len(planned) > len(by_plan):
        echo(
            f"the runs do not fit in this device's memory at once: {len(planned)} lockstep groups of "
            f"{min(map(len, planned))}-{max(map(len, planned))} runs, one after another"
        )
    todo = _announce(out, config, planned, echo, carried)
    if todo:
        epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
        echo(
            f"on {device_name}, {epochs}; watch live: "
            f"{shlex.join(['tensorboard', '--logdir', str(out / 'tensorboard')])}"
        )
        if backend.workers > 1 and job.write_report:
            # The report draws some figures in this process; where training runs here, Lightning's
            # imports bring matplotlib along. Import it while the workers train.
            import_in_background("fmnist_pl.report.plots")
        backend.train(out, config, todo, arrays, echo)
    job.wrap_up()
    return out


def _describe_budget(spec: Budget) -> str:
    """The budget, as the terminal says it."""
    if spec.kind == "seconds":
        return (
            f"{spec.amount:g} s of training, its clock started after a warm-up step (on a CPU the "
            "training thread's CPU time, runs taking turns on the machine; on a GPU wall time, one run after another)"
        )
    return (
        f"{spec.amount:,.0f} training {spec.kind}"
        if spec.kind == "images"
        else f"{spec.amount:,.0f} forward evaluations"
    )


def _check_checkpoints(out: Path, config: CompareConfig, planned: Sequence[Sequence[RunPlan]]) -> None:
    """Every unfinished group's checkpoint must load and be this compare's (its identity)."""
    for group in planned:
        ckpt = store.group_checkpoint(out, group)
        if ckpt.exists() and not all_written(out, group):
            store.check_group_checkpoint(ckpt, store.group_identity(config, group))


def _announce(
    out: Path,
    config: CompareConfig,
    planned: Sequence[Sequence[RunPlan]],
    echo: Callable[[str], None],
    carried: dict[str, str],
) -> list[list[RunPlan]]:
    """Say which groups train (and how: ``carried`` names those that go on from another folder's
    checkpoints) and which are already finished; return those to train."""
    todo = [list(g) for g in planned if not all_written(out, g)]
    if len(planned) > GROUP_LINES:
        echo(
            f"{len(planned)} groups of {min(map(len, planned))}-{max(map(len, planned))} runs"
            + (f", {len(planned) - len(todo)} already finished" if len(todo) < len(planned) else "")
        )
        if carried:
            echo(f"{len(carried)} of them {'; '.join(sorted(set(carried.values())))}")
        return todo
    done, total = 0, sum(len(g) for g in planned)
    for group in planned:
        first, done = done + 1, done + len(group)
        if all_written(out, group):
            echo(f"runs {first}-{done} of {total} already finished")
        else:
            how = carried.get(group[0].name) or _describe(group, config, out)
            echo(f"runs {first}-{done} of {total}: {', '.join(r.name for r in group)} - {how}")
    return todo


def _describe(group: Sequence[RunPlan], config: CompareConfig, out: Path) -> str:
    """How a group trains (or that it resumes), for the line announcing it."""
    ckpt = store.group_checkpoint(out, group)
    if ckpt.exists():
        return f"resuming from {ckpt}"
    hp = group[0].optimizer.hparams
    if group[0].optimizer.info.gradient_free:
        return f"population {hp['popsize']}, fitness batch {hp['batch_size']}"
    return f"{'alone' if len(group) == 1 else 'in lockstep'}, batch {config.batch_size}"
