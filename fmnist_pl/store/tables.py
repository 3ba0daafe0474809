"""A compare folder as two tables, for notebooks and spreadsheets: ``runs`` and ``history``.

Computed once, from the validated results (:func:`fmnist_pl.store.load_compare`), into plain rows
(:class:`Table`); ``runs.csv`` / ``history.csv`` beside ``summary.json`` and the pandas DataFrames
of :func:`load` (``fmnist_pl.load(folder)``) are two views of the same rows.

The CSV files are written with the csv module, so that writing a summary never pays pandas'
import (a large share of a short compare's fixed cost); pandas is imported only by :func:`load`,
for the DataFrames.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_pl.architecture import arch_name
from fmnist_pl.store.layout import HISTORY_TABLE, RUNS_TABLE
from fmnist_pl.store.load import load_compare

if TYPE_CHECKING:
    import os

    import pandas as pd

HP_PREFIX = "hp."  # runs table: one column per optimizer hyperparameter, "hp.lr", "hp.momentum", ...
# The runs table's columns, in order; the hyperparameters' columns come after "hidden".
RUN_KEYS = ("run", "setting", "variant", "optimizer", "seed", "hidden")
RUN_RESULTS = (
    "status",
    "diverged_epoch",
    "epochs",
    "best_epoch",
    "best_val_acc",
    "last_val_acc",
    "test_acc",
    "test_f1",
    "test_loss",
    "best_test_acc",
    "best_test_f1",
    "best_test_loss",
    "seconds_per_epoch",
    "fit_seconds",
    "images",
    "evaluations",
)


@dataclass(frozen=True)
class Table:
    """Plain rows (scalars only: numbers, text, booleans, ``None`` for missing) under named columns."""

    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]

    def csv_bytes(self) -> bytes:
        """The table as CSV (UTF-8, a header row): ``None`` is an empty cell, floats are written
        exactly (``repr``), ``nan``/``inf`` as Python writes them (pandas reads them back as such)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue().encode("utf-8")

    def frame(self) -> pd.DataFrame:
        """The table as a pandas DataFrame (pandas is imported here). Missing values are NaN, as
        pandas reads the CSV's empty cells: a column without any value (totals a folder did not
        record) is numeric, not a column of ``None`` objects."""
        import pandas as pd

        rows = [{k: math.nan if v is None else v for k, v in row.items()} for row in self.rows]
        return pd.DataFrame(rows, columns=list(self.columns))


def _cell(value: Any) -> Any:
    """A hyperparameter as one cell: scalars as they are, anything else (Adam's betas) as JSON text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def runs_table(loaded: dict[str, Any]) -> Table:
    """One row per run with results (finished or diverged; see ``loaded["missing"]`` for the rest).

    ``hidden`` as text (``h300-100``, the architecture's name), every hyperparameter as a column
    ``hp.<name>`` (empty where a run's optimizer has no such hyperparameter), then the results:
    ``best_val_acc`` is the highest validation accuracy of any epoch (what a sweep chooses on),
    ``last_val_acc`` the last epoch's; ``test_*`` are the last weights' test metrics and
    ``best_test_*`` those of the best epoch's weights (lowest validation loss, ``best_epoch``);
    ``images``/``evaluations`` the running totals of the last epoch, where recorded.
    """
    runs = loaded["runs"]
    hp_names = list(dict.fromkeys(name for r in runs for name in r["optimizer"]["hparams"]))
    rows = []
    for r in runs:
        history, test = r["history"], r["test"]
        last = history[-1] if history else {}
        val_accs = [row["val_acc"] for row in history]
        rows.append(
            {
                "run": r["run"],
                "setting": r["setting"],
                "variant": r["variant"],
                "optimizer": r["optimizer"]["name"],
                "seed": r["seed"],
                "hidden": arch_name(r["hidden"]),
                **{HP_PREFIX + name: _cell(r["optimizer"]["hparams"].get(name)) for name in hp_names},
                "status": r["status"],
                "diverged_epoch": r["diverged_epoch"],
                "epochs": r["epochs"],
                "best_epoch": r["best_epoch"],
                "best_val_acc": max(val_accs) if val_accs else None,
                "last_val_acc": last.get("val_acc"),
                "test_acc": test["last"]["accuracy"],
                "test_f1": test["last"]["macro_f1"],
                "test_loss": test["last"]["loss"],
                "best_test_acc": test["best"]["accuracy"],
                "best_test_f1": test["best"]["macro_f1"],
                "best_test_loss": test["best"]["loss"],
                "seconds_per_epoch": r["timing"]["seconds_per_epoch"],
                "fit_seconds": r["timing"]["fit_seconds"],
                "images": last.get("images"),
                "evaluations": last.get("evaluations"),
            }
        )
    return Table((*RUN_KEYS, *(HP_PREFIX + n for n in hp_names), *RUN_RESULTS), tuple(rows))


def history_table(loaded: dict[str, Any]) -> Table:
    """Long (tidy) form: one row per run and epoch, ``run`` then every column of the runs' histories."""
    names = list(dict.fromkeys(key for r in loaded["runs"] for row in r["history"] for key in row))
    rows = tuple(
        {"run": r["run"], **{k: _cell(row.get(k)) for k in names}} for r in loaded["runs"] for row in r["history"]
    )
    return Table(("run", *names), rows)


def table_files(folder: Path, loaded: dict[str, Any]) -> list[tuple[Path, bytes]]:
    """``runs.csv`` and ``history.csv`` of the folder, encoded (for :func:`fmnist_pl.store.write_files`)."""
    folder = Path(folder)
    return [
        (folder / RUNS_TABLE, runs_table(loaded).csv_bytes()),
        (folder / HISTORY_TABLE, history_table(loaded).csv_bytes()),
    ]


@dataclass(frozen=True, eq=False)
class Results:
    """A compare folder read back as pandas tables (:func:`load`).

    ``runs``: one row per run with results (columns: :func:`runs_table`); ``history``: one row per
    run and epoch (:func:`history_table`); ``config``: ``config.json`` as a dict (the settings under
    ``"config"``, the planned runs under ``"runs"``); ``missing``: planned runs without results.
    """

    folder: Path
    runs: pd.DataFrame = field(repr=False)
    history: pd.DataFrame = field(repr=False)
    config: dict[str, Any] = field(repr=False)
    missing: tuple[str, ...] = ()


def load(folder: str | os.PathLike[str]) -> Results:
    """Read a compare folder (every file validated) into :class:`Results`: pandas DataFrames for notebooks.

    >>> results = fmnist_pl.load("outputs/my-compare")                      # doctest: +SKIP
    >>> results.runs.groupby("optimizer")["test_acc"].agg(["mean", "std"])  # doctest: +SKIP

    Raises :class:`~fmnist_pl.errors.ResultsError` (one line naming the file and the fix) for a
    folder without results or with a damaged file. Needs pandas.
    """
    loaded = load_compare(Path(folder))
    return Results(
        folder=Path(folder),
        runs=runs_table(loaded).frame(),
        history=history_table(loaded).frame(),
        config=loaded["config"],
        missing=tuple(loaded["missing"]),
    )
