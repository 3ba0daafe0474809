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
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only from Python 3.12

from fmnist_pl.architecture import parameter_count
from fmnist_pl.config import MAX_SEED, CompareConfig
from fmnist_pl.data.idx import CLASS_NAMES
from fmnist_pl.store.layout import GRID_IMAGES, check_run_name

CLASSES = 10  # Fashion-MNIST's labels are 0..9
PIXELS = 28 * 28
# The largest count read back: what every JSON reader holds exactly (JavaScript's doubles). A bound, so
# that an edited 10**400 is refused here rather than overflowing a float in a mean later.
MAX_COUNT = 2**53


def _null_is_nan(value: Any) -> Any:
    # JSON has no NaN: json_bytes writes a NaN or infinity as null, and it is NaN again here, so
    # that what tests math.isnan (a diverged run's loss, an unmeasured accuracy) sees what was recorded.
    return math.nan if value is None else value


def _fraction_or_nan(value: float) -> float:
    # An epoch's accuracy is NaN where it was not measured (no validation batch ran).
    if not (math.isnan(value) or 0.0 <= value <= 1.0):
        raise ValueError("an accuracy must be between 0 and 1")
    return value


# Scores are torchmetrics' float32 averages: ten classes' 0.1 weights of a perfect F1 sum to 1.0000001.
SCORE_SLACK = 1e-6


def _score_or_nan(value: float) -> float:
    if not (math.isnan(value) or 0.0 <= value <= 1.0 + SCORE_SLACK):
        raise ValueError("a precision, recall or F1 score must be between 0 and 1")
    return value


def _loss_or_nan(value: float) -> float:
    # A cross-entropy is never negative; a diverged run's is NaN or infinite.
    if value < 0:
        raise ValueError("a loss (cross-entropy) cannot be negative")
    return value


Label = Annotated[int, Field(ge=0, lt=CLASSES)]
Pixel = Annotated[int, Field(ge=0, le=255)]
Image = Annotated[list[Pixel], Field(min_length=PIXELS, max_length=PIXELS)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Width = Annotated[int, Field(ge=1, le=MAX_COUNT)]  # a hidden layer's units; also a count that cannot be 0
Epoch = Annotated[int, Field(ge=1)]  # at most the configured epochs: checked across files (fmnist_pl.store.load)
Seconds = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
ConfusionRow = Annotated[list[Count], Field(min_length=CLASSES, max_length=CLASSES)]  # columns: predicted class
# Fractions that may be NaN (an unmeasured epoch, or a score a run could not have) and may be written as null.
EpochAccuracy = Annotated[float, BeforeValidator(_null_is_nan), AfterValidator(_fraction_or_nan)]
Score = Annotated[float, BeforeValidator(_null_is_nan), AfterValidator(_score_or_nan)]
Loss = Annotated[float, BeforeValidator(_null_is_nan), AfterValidator(_loss_or_nan)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class OptimizerEntry(_Model):
    name: str
    hparams: dict[str, Any]
    kind: Literal["gradient", "gradient-free"] = "gradient"

    @model_validator(mode="before")
    @classmethod
    def _names_its_class(cls, data: Any) -> Any:
        # "class" (a Python keyword: kept as an extra field, dumped as written) is what the report's
        # optimizer table shows.
        if isinstance(data, dict) and not isinstance(data.get("class"), str):
            raise ValueError('an optimizer entry names its torch or EvoTorch class under "class", e.g. "SGD"')
        return data


class RunEntry(_Model):
    run: str
    setting: str
    variant: str
    optimizer: OptimizerEntry
    seed: int = Field(ge=0, le=MAX_SEED)
    hidden: list[Width] = Field(min_length=1)

    @field_validator("run")
    @classmethod
    def _plain(cls, value: str) -> str:
        return check_run_name(value)


class Split(_Model):
    """``config.json``'s ``split``: images in each set (the report prints every entry as a number)."""

    __pydantic_extra__: dict[str, Count] = Field(init=False)
    train: Count
    val: Width
    test: Width


class Layer(_Model):
    layer: str
    output: str
    params: Count


class ModelInfo(_Model):
    """``config.json``'s ``model``: the network the report's setup section describes."""

    hidden: list[Width] = Field(min_length=1)
    parameters: Count
    summary: list[Layer] = Field(min_length=1)

    @model_validator(mode="after")
    def _parameters_of_hidden(self) -> ModelInfo:
        expected = parameter_count(self.hidden)
        if self.parameters != expected:
            raise ValueError(
                f"parameters is {self.parameters:,}, but hidden layers {self.hidden} have {expected:,} parameters"
            )
        return self


class ConfigFile(_Model):
    format: Literal[2]
    config: dict[str, Any]
    runs: list[RunEntry]
    split: Split
    model: ModelInfo
    environment: dict[str, Any] = {}
    created: str | None = None

    @field_validator("config")
    @classmethod
    def _compare_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The saved CompareConfig: types checked by pydantic, values by the config's own checks;
        # a setting the file lacks is the default the compare ran with, filled in for the readers.
        from dataclasses import asdict

        known = {k: v for k, v in value.items() if k in CompareConfig.__dataclass_fields__}
        validated = asdict(TypeAdapter(CompareConfig).validate_python(known))
        return {**{k: v for k, v in validated.items() if k not in value}, **value}


class HistoryRow(_Model):
    """One epoch of ``history.json``: NaN (written as null) where a loss diverged or nothing was measured."""

    epoch: Epoch
    train_loss: Loss
    train_acc: EpochAccuracy
    val_loss: Loss
    val_acc: EpochAccuracy
    seconds: Seconds
    # Running totals (format 2 folders written before gradient-free methods lack them).
    images: Count | None = None
    evaluations: Count | None = None
    # Only in the epoch a budget ended mid-way: the share of the epoch's batches it trained.
    fraction: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None


History = TypeAdapter(list[HistoryRow])


class AnytimePoint(_Model):
    """One validation between epoch ends (``anytime.json``): where the run was, and what it scored."""

    epoch: Annotated[float, Field(gt=0.0)]
    images: Count
    evaluations: Count
    seconds: Seconds
    val_loss: Loss
    val_acc: EpochAccuracy


Points = TypeAdapter(list[AnytimePoint])


class Scores(_Model):
    precision: list[Score] = Field(min_length=CLASSES, max_length=CLASSES)
    recall: list[Score] = Field(min_length=CLASSES, max_length=CLASSES)
    f1: list[Score] = Field(min_length=CLASSES, max_length=CLASSES)


class Averages(_Model):
    precision: Score
    recall: Score
    f1: Score


ReportRow = TypedDict("ReportRow", {"precision": Score, "recall": Score, "f1-score": Score, "support": Count})
REPORT_ROWS = (*CLASS_NAMES, "accuracy", "macro avg", "weighted avg")


def _report_rows(value: Any) -> Any:
    # Say which rows are missing (the text report prints every one), rather than a first "Field required".
    if isinstance(value, dict) and not set(REPORT_ROWS) <= set(value):
        missing = [k for k in REPORT_ROWS if k not in value]
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ValueError(
            f"a classification report has a row for each of the {CLASSES} classes, accuracy, macro avg and "
            f"weighted avg; {shown} missing"
        )
    return value


# scikit-learn's output_dict layout (fmnist_pl.analysis.metrics.classification_report_dict), in its order.
ClassificationReport = Annotated[
    TypedDict(
        "ClassificationReport",
        {
            **{name: ReportRow for name in CLASS_NAMES},
            "accuracy": Fraction,
            "macro avg": ReportRow,
            "weighted avg": ReportRow,
        },
    ),
    BeforeValidator(_report_rows),
]


class TestMetrics(_Model):
    accuracy: Fraction
    macro_f1: Score
    loss: Loss
    per_class: Scores
    macro: Averages
    weighted: Averages
    support: list[Count] = Field(min_length=CLASSES, max_length=CLASSES)
    confusion_matrix: list[ConfusionRow] = Field(min_length=CLASSES, max_length=CLASSES)  # rows: true class
    report: ClassificationReport

    @model_validator(mode="after")
    def _rows_count_the_support(self) -> TestMetrics:
        # Both count the test images of each true class: a matrix that disagrees is not this run's.
        sums = [sum(row) for row in self.confusion_matrix]
        if sums != self.support:
            raise ValueError(f"the confusion matrix's rows count {sums} images per class, the support {self.support}")
        return self


class Timing(_Model):
    seconds_per_epoch: Seconds | None
    fit_seconds: Seconds | None
    lockstep_runs: Width = 1  # runs that shared fit_seconds (folders before lockstep: 1)


class Spent(_Model):
    images: Count
    evaluations: Count
    seconds: Seconds
    clock: Literal["training thread CPU time", "wall time"] | None = None
    waited: Seconds | None = None  # runs that took turns: wall seconds others trained between its steps


class MetricsFile(RunEntry):
    """A run's ``metrics.json``. Its epochs are checked against ``config.json`` and ``history.json``
    where the folder is read (:func:`fmnist_pl.store.load_compare`)."""

    status: Literal["ok", "diverged"]
    diverged_epoch: Epoch | None = None
    epochs: int = Field(ge=0)
    best_epoch: Epoch | None
    best_val_loss: Annotated[float, Field(ge=0.0)] | None = None  # None where no epoch had a finite one
    test: dict[Literal["last", "best"], TestMetrics]
    timing: Timing
    optimizer_state_bytes: Count | None = None
    # Under a budget (--budget, --time-budget): the kind that ended the run (None: its epochs did)
    # and what it spent in every unit.
    stopped_by: Literal["seconds", "images", "evaluations"] | None = None
    spent: Spent | None = None

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

    targets: list[Label] = Field(min_length=1)
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
    test_f1: Annotated[float, Field(ge=0.0, le=1.0 + SCORE_SLACK)] | None
    best_test_acc: Fraction | None
    best_epoch: Epoch | None
    gap: Annotated[float, Field(ge=-1.0, le=1.0)] | None  # None where a run has no finite gap
    seconds_per_epoch: Seconds | None
    fit_seconds: Seconds | None
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
    tuning: dict[str, Any] | None = None  # a tune's final/ folder: tuning.json's content; absent before 2026-12


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
