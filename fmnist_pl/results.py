"""Results on disk: atomic writes, and reading a compare folder back as plain data.

Every file is written to a temporary sibling and renamed into place (``os.replace`` is
atomic on POSIX), so a process killed at any moment leaves each results file complete or
absent, never half-written, with the permissions a plain ``open()`` would give it. The
summary and the report are always rebuilt from these files alone.

A compare folder::

    config.json        the config, the planned runs (structured keys), split, model, environment, "format"
    samples.json       the first 40 training and test images (the report's image grids)
    runs/<run>/        metrics.json (its presence marks the run finished), history.json/.csv,
                       predictions.json, classification_report.txt, checkpoints/{best,last}.pt
    summary.json       rankings, significance, observations (fmnist_pl.analysis.summary)
    report.html        the self-contained report (fmnist_pl.report)
    tensorboard/<run>/ and checkpoints/group-*/last.ckpt (resume)
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Sequence

if TYPE_CHECKING:
    from fmnist_pl.config import RunPlan

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
PREDICTIONS_FILE = "predictions.json"
SUMMARY_FILE = "summary.json"
SAMPLES_FILE = "samples.json"
FORMAT_VERSION = 2  # 1: fmnist-pl 0.1 (runs keyed by name only, figures drawn at training time)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask



def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """``write(file)`` fills a temporary sibling of ``path``, which then replaces ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            # mkstemp creates 0600; give the file what open() would (0666 less the umask), so a
            # report copied to a shared folder or served by a web server stays readable.
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileWriter:
    """Writes files atomically on a few threads while the caller goes on to its next run.

    A study writes 1,440 runs' files, ~3 MB a run with the checkpoints, each flushed to disk:
    one after another the disk's latency adds up (10 ms a run here), while the writes and the
    ``fsync`` release the GIL. :meth:`write` takes a run's files as encoded bytes and writes them
    in their order on one thread - so a run's ``metrics.json``, given last, still appears only
    once its other files are in place. Leaving the ``with`` block waits for every write and
    raises the first error (a full disk, say) in the caller's thread.
    """

    def __init__(self, threads: int = 4, queued: int = 16) -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fmnist-write")
        self._pending: deque[Any] = deque()
        self._queued = queued  # runs' bytes held at most: a slow disk holds up the caller, not memory

    def write(self, files: Sequence[tuple[Path, bytes]]) -> None:
        """Write ``files`` ((path, bytes), in this order) on one of the threads."""
        while self._pending and (self._pending[0].done() or len(self._pending) >= self._queued):
            self._pending.popleft().result()  # waits for the oldest; raises its error here, early
        self._pending.append(self._pool.submit(write_files, list(files)))

    def __enter__(self) -> "FileWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)  # on an error too: no write is left running behind the caller
        pending, self._pending = self._pending, type(self._pending)()
        if exc[0] is None:
            for future in pending:
                future.result()  # the first failure, raised here


def write_files(files: Sequence[tuple[Path, bytes]]) -> None:
    """Write ``files`` ((path, bytes)) atomically, one after another, in their order."""
    for path, data in files:
        atomic_write_bytes(path, data)


def json_bytes(data: Any, indent: int | None = 2) -> bytes:
    return (json.dumps(data, indent=indent, allow_nan=True) + "\n").encode("utf-8")


def torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any, indent: int | None = 2) -> None:
    atomic_write_bytes(path, json_bytes(data, indent))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def history_files(run_dir: Path, history: list[dict[str, float]]) -> list[tuple[Path, bytes]]:
    """A run's epoch history as history.json and history.csv (encoded, for :class:`FileWriter`)."""
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    return [(run_dir / HISTORY_JSON, json_bytes(history)), (run_dir / HISTORY_CSV, buf.getvalue().encode("utf-8"))]


def atomic_torch_save(path: Path, obj: Any) -> None:
    """``torch.save`` straight into the temporary file: a study's epoch checkpoint is ~4 GiB, which
    an in-memory copy first would hold twice and copy once more."""
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh))


class ResultsError(ValueError):
    """A results folder or file that cannot be used; the message names the file, the field and what to do."""


def restart_fix(checkpoint: Path) -> str:
    return f"delete it to restart that group from scratch: rm {checkpoint}"


def load_checkpoint(path: Path) -> Any:
    """A group checkpoint, loaded as data only (``weights_only``): garbage bytes, a refused pickle or
    a truncated file are one line saying what to do, not a traceback.

    Memory-mapped: what is checked (the runs, the tensors' shapes) is read; the weights are read
    only where used. A resume checks each checkpoint twice before Lightning loads it (the driver,
    then the worker); read whole, a 1 GiB one took 0.73 s each time, and a study's is 4.3 GiB."""
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing a file
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - garbage bytes, a refused pickle, a truncated zip: all one answer
        raise ResultsError(f"{path} is not a valid checkpoint ({type(exc).__name__}); {restart_fix(path)}") from None


def group_checkpoint(folder: Path, group: "Sequence[RunPlan]") -> Path:
    """Where a training group keeps its last-epoch Trainer checkpoint (what ``--resume`` continues).

    Named after the group's first run, so the folder is the same in whichever process trains it.
    """
    return folder / "checkpoints" / f"group-{group[0].name.replace('/', '_')}" / "last.ckpt"


def run_dir(folder: Path, run: str) -> Path:
    """A run's folder. Names come from the planner; one read from a file must stay inside ``folder/runs``."""
    from fmnist_pl.schema import check_run_name

    try:
        check_run_name(run)
    except ValueError as exc:
        raise ResultsError(f"{folder}: {exc}; results name runs by plain relative paths") from None
    base = (Path(folder) / "runs").resolve()
    path = (base / run).resolve()
    if base not in path.parents:
        raise ResultsError(f"{folder}: run {run!r} resolves outside {base} (a link?); refused")
    return Path(folder) / "runs" / run


def read_checked(path: Path, model: Any) -> Any:
    """Read a JSON file and validate it against a schema model (:mod:`fmnist_pl.schema`); one-line errors."""
    try:
        data = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path} is not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]}); "
                           "it was damaged: restore it, or delete it and re-run") from None
    return check(path, data, model)


def check(path: Path, data: Any, model: Any) -> Any:
    """Validate ``data`` read from ``path`` against a schema model; one-line errors naming file and field."""
    from pydantic import TypeAdapter, ValidationError

    from fmnist_pl.schema import one_line

    adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
    try:
        adapter.validate_python(data)
    except ValidationError as exc:
        raise ResultsError(f"{path}: {one_line(exc)}; the file does not have fmnist-pl's results format "
                           f"{FORMAT_VERSION} (damaged or edited?): restore it, or delete it and re-run") from None
    return data


def load_compare(folder: Path) -> dict[str, Any]:
    """Read a compare folder: its config, and every finished run's metrics and history, all validated.

    Runs listed in the config whose files are missing (interrupted, or deleted) are returned
    under ``"missing"`` so the report can say so instead of failing.
    """
    from fmnist_pl import schema

    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise ResultsError(f"{folder} holds no fmnist-pl results ({CONFIG_FILE} missing); "
                           "pass a folder made by `fmnist-pl compare`, e.g. outputs/<run>")
    try:
        raw = read_json(config_path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{config_path} is not valid JSON ({exc}); re-run the compare") from None
    # fmnist-pl 0.1 wrote no "format" (its folders have "runs"): that is format 1.
    found = raw.get("format", 1 if "runs" in raw else None) if isinstance(raw, dict) else None
    if isinstance(found, int) and not isinstance(found, bool) and found < FORMAT_VERSION:
        raise ResultsError(f"{folder} holds results format {found} (fmnist-pl 0.1); this version reads format "
                           f"{FORMAT_VERSION}: re-run the compare with this version (its folder is left as is)")
    config = check(config_path, raw, schema.ConfigFile)
    runs, missing = [], []
    for planned in config["runs"]:
        folder_of_run = run_dir(folder, planned["run"])
        if not (folder_of_run / METRICS_FILE).is_file():
            missing.append(planned["run"])
            continue
        metrics = read_checked(folder_of_run / METRICS_FILE, schema.MetricsFile)
        if metrics["run"] != planned["run"]:
            raise ResultsError(f"{folder_of_run / METRICS_FILE}: run is {metrics['run']!r}, but {CONFIG_FILE} "
                               f"files it as {planned['run']!r}: restore it, or delete the run's folder and resume")
        history = read_checked(folder_of_run / HISTORY_JSON, schema.History)
        runs.append(metrics | {"history": history, "dir": str(folder_of_run)})
    return {"folder": str(folder), "config": config, "runs": runs, "missing": missing}
