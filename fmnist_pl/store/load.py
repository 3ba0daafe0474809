"""Reading a results folder back: every file through its schema (:mod:`fmnist_pl.store.schema`).

What is read comes back validated, with the schema's defaults filled in: a reader indexes what
the schema promises and never re-creates a default of its own.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from fmnist_pl.errors import ResultsError, resume_command
from fmnist_pl.store.io import read_json
from fmnist_pl.store.layout import (
    CONFIG_FILE,
    FORMAT_VERSION,
    HISTORY_JSON,
    METRICS_FILE,
    POINTS_FILE,
    PREDICTIONS_FILE,
    SAMPLES_FILE,
    run_dir,
)

DEFAULT_FIX = "restore it, or delete it and re-run"


def rerun_fix(folder: Path, run_folder: Path) -> str:
    """The fix for a missing or damaged file of one run: delete the run's folder, then resume the
    compare, which writes the run's files again (a run without ``metrics.json`` is unfinished)."""
    return (
        f"delete the run's folder, then resume: "
        f"{shlex.join(['rm', '-r', '--', str(run_folder)])} && {resume_command(folder)}"
    )


def in_the_way(path: Path, folder: Path) -> str:
    """The one line for a folder where fmnist-pl writes one of its files: it is not deleted (fmnist-pl
    removes nothing it did not write), the user moves it."""
    return (
        f"{path} is a folder, where fmnist-pl writes its {path.name}; fmnist-pl deletes nothing it did not "
        f"write: move it elsewhere, then run: {shlex.join(['fmnist-pl', 'report', str(folder)])}"
    )


def read_checked(path: Path, model: Any, fix: str = DEFAULT_FIX) -> Any:
    """Read a JSON file and validate it against a schema model (:mod:`fmnist_pl.store.schema`).

    Returns the validated value: a model instance (defaults filled in), or, for a ``TypeAdapter``,
    what it validates to. A missing, unreadable, non-JSON or invalid file is one
    :class:`ResultsError` naming the file (and the field) and ending with ``fix``.
    """
    from pydantic import TypeAdapter, ValidationError

    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"{path} is missing; {fix}") from None
    except OSError as exc:
        raise ResultsError(f"{path} cannot be read ({exc.strerror or type(exc).__name__}); {fix}") from None
    adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
    try:
        # pydantic parses the JSON itself: faster than json.loads then validating the objects (a
        # study's 1,440 predictions files of 30,000 labels each are read for its summary).
        return adapter.validate_json(raw)
    except ValidationError:
        pass  # parsed again below, to word the problem as for any data (JSON mode says "an object", not "a dictionary")
    try:
        data = json.loads(raw)
    except RecursionError:  # json's parser recurses: a file nested thousands of levels deep
        raise ResultsError(
            f"{path} is not valid JSON (nested too deeply to be results); it was damaged: {fix}"
        ) from None
    except ValueError as exc:  # not JSON, not UTF-8, an integer of over 4,300 digits
        raise ResultsError(
            f"{path} is not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]}); it was damaged: {fix}"
        ) from None
    return check(path, data, adapter, fix)


def check(path: Path, data: Any, model: Any, fix: str = DEFAULT_FIX) -> Any:
    """Validate ``data`` read from ``path`` against a schema model; returns the validated value
    (as :func:`read_checked`); one-line errors naming file and field."""
    from pydantic import TypeAdapter, ValidationError

    from fmnist_pl.store.schema import one_line

    adapter = model if isinstance(model, TypeAdapter) else TypeAdapter(model)
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise ResultsError(_invalid(path, one_line(exc), fix)) from None


def _invalid(path: Path, problem: str, fix: str) -> str:
    return (
        f"{path}: {problem}; the file does not have fmnist-pl's results format {FORMAT_VERSION} "
        f"(damaged or edited?): {fix}"
    )


def _shown(number: int) -> str:
    """A number for a one-line message: an edited file's 10**400 is not printed in full."""
    text = str(number)
    return text if len(text) <= 20 else f"{text[:6]}... ({len(text)} digits)"


def _check_run(
    folder_of_run: Path, metrics: dict[str, Any], history: list[dict[str, Any]], config: dict[str, Any], fix: str
) -> None:
    """What no file shows alone, checked across a run's files and ``config.json``: its epochs are
    within the configured ones, ``history.json`` has one row per epoch trained, in order, and both
    test evaluations counted the whole test set. A :class:`ResultsError` names the file and the fix."""
    configured, epochs = config["config"]["epochs"], metrics["epochs"]
    problem = None
    if epochs > configured:
        problem = f"epochs: the run trained {_shown(epochs)} epochs, but {CONFIG_FILE} sets {configured}"
    for key in ("best_epoch", "diverged_epoch"):
        value = metrics[key]
        if problem is None and value is not None and value > epochs:
            problem = f"{key}: epoch {_shown(value)} is not one of the run's epochs (1 to {epochs})"
    for which in ("last", "best"):
        counted, test_images = sum(metrics["test"][which]["support"]), config["split"]["test"]
        if problem is None and counted != test_images:
            problem = (
                f"test.{which}.support: counts {_shown(counted)} test images, but {CONFIG_FILE}'s split has "
                f"{test_images:,} (every run is tested on the whole test set)"
            )
    if problem is not None:
        raise ResultsError(_invalid(folder_of_run / METRICS_FILE, problem, fix))
    for i, row in enumerate(history):
        if row["epoch"] != i + 1:
            problem = (
                f"{i}.epoch: epoch {_shown(row['epoch'])} where epoch {i + 1} was expected (a row per epoch, in order)"
            )
            break
    else:
        if len(history) != epochs:
            problem = f"(the whole file): {len(history)} epochs, but {METRICS_FILE} says the run trained {epochs}"
    if problem is not None:
        raise ResultsError(_invalid(folder_of_run / HISTORY_JSON, problem, fix))


def read_predictions(folder: Path, run: str) -> Any:
    """A finished run's ``predictions.json`` (:class:`~fmnist_pl.store.schema.PredictionsFile`)."""
    from fmnist_pl.store.schema import PredictionsFile

    where = run_dir(folder, run)
    return read_checked(where / PREDICTIONS_FILE, PredictionsFile, rerun_fix(folder, where))


def read_samples(folder: Path) -> Any:
    """The folder's ``samples.json`` (:class:`~fmnist_pl.store.schema.SamplesFile`); a resume writes it again."""
    from fmnist_pl.store.schema import SamplesFile

    path = Path(folder) / SAMPLES_FILE
    return read_checked(
        path,
        SamplesFile,
        f"a resume writes it again: {shlex.join(['rm', '-f', '--', str(path)])} && {resume_command(folder)}",
    )


def load_compare(folder: Path) -> dict[str, Any]:
    """Read a compare folder: its config, and every finished run's metrics and history, all validated.

    Plain data (dicts and lists), as the schemas validate it, defaults filled in: ``{"folder",
    "config": config.json, "runs": [metrics.json + {"history": [...], "dir": its folder}],
    "missing": [run names]}``. Runs listed in the config whose ``metrics.json`` is missing
    (interrupted, or deleted) are listed under ``"missing"`` so the report can say so instead of
    failing; a finished run's missing history is an error.
    """
    from fmnist_pl.store import schema

    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.exists():
        raise ResultsError(
            f"{folder} holds no fmnist-pl results ({CONFIG_FILE} missing); "
            "pass a folder made by `fmnist-pl compare`, e.g. outputs/<run>"
        )
    try:
        raw = read_json(config_path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        # read_json's own refusals (nested too deeply, ...) have no position in the file to show.
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) and not exc.pos else str(exc)[:80]
        raise ResultsError(f"{config_path} is not valid JSON ({detail}); re-run the compare") from None
    except OSError as exc:  # a folder in its place, say
        raise ResultsError(
            f"{config_path} cannot be read ({exc.strerror or type(exc).__name__}); restore it, or re-run the compare"
        ) from None
    # fmnist-pl 0.1 wrote no "format" (its folders have "runs"): that is format 1.
    found = raw.get("format", 1 if "runs" in raw else None) if isinstance(raw, dict) else None
    if isinstance(found, int) and not isinstance(found, bool) and found < FORMAT_VERSION:
        raise ResultsError(
            f"{folder} holds results format {found} (fmnist-pl 0.1); this version reads format "
            f"{FORMAT_VERSION}: re-run the compare with this version (its folder is left as is)"
        )
    config = check(config_path, raw, schema.ConfigFile).model_dump()
    runs, missing = [], []
    for planned in config["runs"]:
        folder_of_run = run_dir(folder, planned["run"])
        if not (folder_of_run / METRICS_FILE).exists():  # a folder in its place is damage, read as such below
            missing.append(planned["run"])
            continue
        fix = rerun_fix(folder, folder_of_run)
        metrics = read_checked(folder_of_run / METRICS_FILE, schema.MetricsFile, fix).model_dump()
        if metrics["run"] != planned["run"]:
            raise ResultsError(
                f"{folder_of_run / METRICS_FILE}: run is {metrics['run']!r}, but {CONFIG_FILE} "
                f"files it as {planned['run']!r}: restore it, or {fix}"
            )
        history = schema.History.dump_python(read_checked(folder_of_run / HISTORY_JSON, schema.History, fix))
        _check_run(folder_of_run, metrics, history, config, fix)
        points: list[dict[str, Any]] = []
        if (folder_of_run / POINTS_FILE).exists():
            points = schema.Points.dump_python(read_checked(folder_of_run / POINTS_FILE, schema.Points, fix))
        runs.append(metrics | {"history": history, "points": points, "dir": str(folder_of_run)})
    return {"folder": str(folder), "config": config, "runs": runs, "missing": missing}
