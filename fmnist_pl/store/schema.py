"""The results format, as pydantic models: every file fmnist-pl reads back is checked against them.

A results folder is data that can be damaged, edited by hand, or written by another version:
each read is validated here, and a problem becomes one line naming the file and the field
(:class:`fmnist_pl.store.ResultsError`), never a ``KeyError`` deep inside the report. Run
names are checked to be plain relative paths: a folder's files name runs, they never choose
which paths are read.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from fmnist_pl.config import CompareConfig
from fmnist_pl.store.layout import GRID_IMAGES, check_run_name

CLASSES = 10  # Fashion-MNIST's labels are 0..9
PIXELS = 28 * 28

Label = Annotated[int, Field(ge=0, lt=CLASSES)]
Pixel = Annotated[int, Field(ge=0, le=255)]
Image = Annotated[list[Pixel], Field(min_length=PIXELS, max_length=PIXELS)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0)]
ConfusionRow = Annotated[list[Count], Field(min_length=CLASSES, max_length=CLASSES)]  # columns: predicted class


def _fraction_or_nan(value: float) -> float:
    # An epoch's accuracy is NaN where it was not measured (no validation batch ran).
    if not (math.isnan(value) or 0.0 <= value <= 1.0):
        raise ValueError("an accuracy must be between 0 and 1")
    return value


EpochAccuracy = Annotated[float, AfterValidator(_fraction_or_nan)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class OptimizerEntry(_Model):
    name: str
    hparams: dict[str, Any]
    kind: Literal["gradient", "gradient-free"] = "gradient"


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
    train_acc: EpochAccuracy
    val_loss: float
    val_acc: EpochAccuracy
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
    accuracy: Fraction
    macro_f1: float
    loss: float
    per_class: Scores
    macro: Averages
    weighted: Averages
    support: list[Count] = Field(min_length=CLASSES, max_length=CLASSES)
    confusion_matrix: list[ConfusionRow] = Field(min_length=CLASSES, max_length=CLASSES)  # rows: true class
    report: dict[str, Any]

    @model_validator(mode="after")
    def _rows_count_the_support(self) -> TestMetrics:
        # Both count the test images of each true class: a matrix that disagrees is not this run's.
        sums = [sum(row) for row in self.confusion_matrix]
        if sums != self.support:
            raise ValueError(f"the confusion matrix's rows count {sums} images per class, the support {self.support}")
        return self


class Timing(_Model):
    seconds_per_epoch: float | None
    fit_seconds: float | None
    lockstep_runs: int = Field(default=1, ge=1)  # runs that shared fit_seconds (folders before lockstep: 1)


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


class GroupsFile(_Model):
    groups: list[list[str]] = Field(min_length=1)


class PredictionsFile(_Model):
    """A run's test predictions (``runs/<run>/predictions.json``): one label per test image."""

    targets: list[Label]
    last: list[Label]
    best: list[Label]

    @model_validator(mode="after")
    def _one_per_image(self) -> PredictionsFile:
        if not len(self.targets) == len(self.last) == len(self.best):
            raise ValueError(
                f"targets, last and best must have one label per test image; they have "
                f"{len(self.targets)}, {len(self.last)} and {len(self.best)}"
            )
        return self


class SamplesFile(_Model):
    """``samples.json``: the first training images (with labels) and test images, for the report's grids.

    Up to :data:`GRID_IMAGES` each (fewer where a small data set has fewer)."""

    train_images: list[Image] = Field(max_length=GRID_IMAGES)
    train_labels: list[Label] = Field(max_length=GRID_IMAGES)
    test_images: list[Image] = Field(max_length=GRID_IMAGES)

    @model_validator(mode="after")
    def _a_label_per_image(self) -> SamplesFile:
        if len(self.train_images) != len(self.train_labels):
            raise ValueError(f"{len(self.train_images)} train_images but {len(self.train_labels)} train_labels")
        return self


class Ranking(_Model):
    groups: list[list[str]]
    text: str
    values: dict[str, float]
    left_out: list[str]


class SummaryRow(_Model):
    """A row of the summary table: what the report and ``fmnist-pl compare``'s table show."""

    run: str
    status: Literal["ok", "diverged"]
    test_acc: Fraction | None
    test_f1: float | None
    best_test_acc: Fraction | None
    best_epoch: int | None
    gap: float | None
    seconds_per_epoch: float | None
    fit_seconds: float | None
    target: dict[str, Any]


class Significance(_Model):
    test: str
    alpha: float
    text: str
    pairs: list[dict[str, Any]]


class SummaryFile(_Model):
    """``summary.json`` (:func:`fmnist_pl.analysis.summary.summarize`): the keys its readers use,
    typed; the settings' and architectures' entries are checked as lists of objects only."""

    format: Literal[2]
    rows: list[SummaryRow]
    settings: list[dict[str, Any]]
    rankings: dict[str, Ranking]
    significance: Significance | None
    architectures: list[dict[str, Any]]
    observations: list[str]
    run_observations: dict[str, list[str]]
    target: float | None
    missing: list[str]


def one_line(error: ValidationError) -> str:
    """The first problem pydantic found, as ``field.path: message``."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(the whole file)"
    message = first["msg"]
    # The value found, where short enough to tell something (not a whole object a check across fields refused).
    if first.get("input") is not None and first["type"] not in ("missing",) and not isinstance(first["input"], dict):
        shown = repr(first["input"])
        message += f" (found {shown[:40] + '...' if len(shown) > 40 else shown})"
    return f"{where}: {message}"
