"""The results format, as pydantic models: every file fmnist-pl reads back is checked against them.

A results folder is data that can be damaged, edited by hand, or written by another version:
each read is validated here, and a problem becomes one line naming the file and the field
(:class:`fmnist_pl.results.ResultsError`), never a ``KeyError`` deep inside the report. Run
names are checked to be plain relative paths: a folder's files name runs, they never choose
which paths are read.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from fmnist_pl.config import CompareConfig


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def check_run_name(name: str) -> str:
    """A run name is a relative path of plain segments: no ``..``, no ``.``, no empty segment, no NUL."""
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise ValueError(f"run name {name!r} is not a plain relative path")
    return name


class OptimizerEntry(_Model):
    name: str
    hparams: dict[str, Any]


class RunEntry(_Model):
    run: str
    setting: str
    variant: str
    optimizer: OptimizerEntry
    seed: int = Field(ge=0)
    hidden: list[int] = Field(min_length=1)

    @field_validator("run")
    @classmethod
    def _plain(cls, value: str) -> str:
        return check_run_name(value)


class ConfigFile(_Model):
    format: Literal[2]
    config: dict[str, Any]
    runs: list[RunEntry]
    split: dict[str, int]
    model: dict[str, Any]
    environment: dict[str, Any] = {}
    created: str | None = None

    @field_validator("config")
    @classmethod
    def _compare_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The saved CompareConfig: types checked by pydantic, values by the config's own checks.
        known = {k: v for k, v in value.items() if k in CompareConfig.__dataclass_fields__}
        TypeAdapter(CompareConfig).validate_python(known)
        return value


class HistoryRow(_Model):
    epoch: int = Field(ge=1)
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float
    # Running totals (format 2 folders written before gradient-free methods lack them).
    images: int | None = Field(default=None, ge=0)
    evaluations: int | None = Field(default=None, ge=0)


History = TypeAdapter(list[HistoryRow])


class Scores(_Model):
    precision: list[float] = Field(min_length=10, max_length=10)
    recall: list[float] = Field(min_length=10, max_length=10)
    f1: list[float] = Field(min_length=10, max_length=10)


class Averages(_Model):
    precision: float
    recall: float
    f1: float


class TestMetrics(_Model):
    accuracy: float
    macro_f1: float
    loss: float
    per_class: Scores
    macro: Averages
    weighted: Averages
    support: list[int] = Field(min_length=10, max_length=10)
    confusion_matrix: list[list[int]] = Field(min_length=10, max_length=10)
    report: dict[str, Any]


class Timing(_Model):
    seconds_per_epoch: float | None
    fit_seconds: float | None


class MetricsFile(RunEntry):
    status: Literal["ok", "diverged"]
    diverged_epoch: int | None = None
    epochs: int = Field(ge=0)
    best_epoch: int | None
    best_val_loss: float | None = None
    test: dict[Literal["last", "best"], TestMetrics]
    timing: Timing
    optimizer_state_bytes: int | None = None

    @field_validator("test")
    @classmethod
    def _both(cls, value: dict[str, TestMetrics]) -> dict[str, TestMetrics]:
        if set(value) != {"last", "best"}:
            raise ValueError("needs the test metrics of the 'last' and the 'best' epoch")
        return value


class PredictionsFile(_Model):
    targets: list[int]
    last: list[int]
    best: list[int]


class SamplesFile(_Model):
    train_images: list[list[int]]
    train_labels: list[int]
    test_images: list[list[int]]


def one_line(error: ValidationError) -> str:
    """The first problem pydantic found, as ``field.path: message``."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(the whole file)"
    message = first["msg"]
    if first.get("input") is not None and first["type"] not in ("missing",):
        shown = repr(first["input"])
        message += f" (found {shown[:40] + '...' if len(shown) > 40 else shown})"
    return f"{where}: {message}"
