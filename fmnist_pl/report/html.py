"""Render results + summary on disk into one self-contained ``report.html`` (Jinja2, autoescape on).

The template receives plain values only; every figure is drawn here from the results and
embedded as a ``data:`` URI (as pytest-html's self-contained report does), so the file opens
from disk or an e-mail with no network, and the report is rebuilt from the results alone.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import jinja2

from fmnist_pl import store
from fmnist_pl.analysis.metrics import classification_report_text
from fmnist_pl.analysis.summary import finished, summarize
from fmnist_pl.config import CompareConfig
from fmnist_pl.data.idx import CLASS_NAMES
from fmnist_pl.store.load import in_the_way

if TYPE_CHECKING:
    from fmnist_pl.report.figures import Drawer

TEMPLATE = "report.html.j2"
DETAILED_RUNS = 24  # up to this many runs, every run gets its own figures; beyond, the best of each optimizer
_TEMPLATE_DIRS = [Path(__file__).parents[1] / "templates", Path(__file__).parents[2] / "templates"]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(p) for p in _TEMPLATE_DIRS]),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
    )


def _heat(value: float, lo: float, hi: float) -> str:
    """Background colour for a per-class F1 cell: white (worst) to green (best) within the table."""
    t = 0.0 if hi <= lo else (value - lo) / (hi - lo)
    r, g, b = int(255 - 155 * t), int(255 - 55 * t), int(255 - 155 * t)
    return f"rgb({r},{g},{b})"


def _blue(t: float) -> str:
    """A confusion-matrix cell's colour: white (0) to dark blue (the largest count), matplotlib's "Blues" ends."""
    lo, hi = (247, 251, 255), (8, 48, 107)
    return "rgb({},{},{})".format(*(round(a + (b - a) * t) for a, b in zip(lo, hi)))


def confusion_table(matrix: list[list[int]]) -> list[dict[str, Any]]:
    """The confusion matrix as rows of an HTML heat table (rows: true class, columns: predicted).

    A table rather than a picture: the counts are exact text (searchable, copyable, sharp at any
    zoom), shaded by count as an ``imshow`` would be, and drawing it costs nothing where the
    matplotlib figure with its hundred labels took ~0.2 s a run.
    """
    peak = max(max(row) for row in matrix) or 1
    return [
        {"label": CLASS_NAMES[i], "cells": [{"n": n, "color": _blue(n / peak), "dark": n > peak / 2} for n in row]}
        for i, row in enumerate(matrix)
    ]


def image_grid(uris: list[str], labels: list[int], predictions: list[int] | None = None) -> list[dict[str, Any]]:
    """The cells of an HTML image grid: each image with its label, or with the prediction (and the
    true label, in red, when it is wrong). ``uris``: the images' data URIs, encoded once per report."""
    cells = []
    for i, (uri, label) in enumerate(zip(uris, labels)):
        true = CLASS_NAMES[label]
        predicted = CLASS_NAMES[predictions[i]] if predictions is not None else true
        cells.append({"src": uri, "text": predicted, "true": true, "wrong": predicted != true})
    return cells


def _per_class(settings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-class F1 rows, coloured by the mean within the table."""
    means = [c["mean"] for s in settings for c in s["per_class_f1"] if c["mean"] is not None]
    lo, hi = (min(means), max(means)) if means else (0.0, 1.0)
    return [
        {
            "run": s["setting"],
            "n": s["n"],
            "cells": [
                c | {"color": _heat(c["mean"], lo, hi) if c["mean"] is not None else "white"} for c in s["per_class_f1"]
            ],
        }
        for s in settings
    ]


def detailed_runs(runs: list[dict[str, Any]]) -> set[str]:
    """The runs that get their own figures (learning curves, confusion matrix, predictions).

    All of them up to :data:`DETAILED_RUNS`; in a bigger study (a 36-rate x 10-seed grid is 1,440
    runs, and drawing three figures each took longer than training them on a GPU) the run of each
    optimizer and architecture with the best validation accuracy - chosen on validation, as the
    sweep chooses. Every run's numbers stay in the tables, its files and TensorBoard.
    """
    if len(runs) <= DETAILED_RUNS:
        return {r["run"] for r in runs}
    best: dict[tuple[Any, ...], tuple[float, str]] = {}
    for r in runs:
        if not r["history"]:
            continue
        key = (tuple(r["hidden"]), r["optimizer"]["name"])
        score = max(row["val_acc"] for row in r["history"])
        if key not in best or score > best[key][0]:
            best[key] = (score, r["run"])
    return {name for _, name in best.values()}


def compute_axes(runs: list[dict[str, Any]]) -> set[str]:
    """The x axes that get a validation-accuracy figure: epochs and seconds always; images seen and
    forward evaluations only where they tell something the epoch axis does not.

    Images seen differ from epochs only where runs saw different numbers of images by the same
    epoch (an epoch is one pass over the training images for every method); forward evaluations
    differ from images only where a run scored each image more than once (a population). In a
    comparison of gradient optimizers both would be the epoch figure relabelled. Folders written
    before these totals were recorded have neither.
    """
    axes = {"epoch", "seconds"}
    rows = [row for r in runs for row in r["history"]]
    if not rows or any(row["images"] is None or row["evaluations"] is None for row in rows):
        return axes
    seen: dict[Any, set[int]] = {}  # epoch -> images seen by then (runs may end at different epochs)
    for row in rows:
        seen.setdefault(row["epoch"], set()).add(row["images"])
    if any(len(counts) > 1 for counts in seen.values()):
        axes.add("images")
    if any(row["evaluations"] != row["images"] for row in rows):
        axes.update(("images", "evaluations"))
    return axes


def start_figures(loaded: dict[str, Any], drawer: Drawer | None = None) -> Callable[[], dict[str, Any]]:
    """Start drawing every figure of the report from the results (and samples.json, and the detailed
    runs' predictions.json, read through their schemas); returns a function that waits for them and
    gives the template's figure values.

    The matplotlib figures are jobs for ``drawer``'s worker processes (drawn here, when collected,
    without one); the tables and the 28x28 digit images are built here, as they cost nothing.
    """
    from fmnist_pl.report import plots
    from fmnist_pl.report.figures import FigureJob, draw_all

    folder = Path(loaded["folder"])
    ok_runs = [r for r in loaded["runs"] if finished(r)]
    curves = [
        ("val_loss", "validation loss", "epoch"),
        ("val_acc", "validation accuracy", "epoch"),
        ("train_loss", "training loss", "epoch"),
        # The same race on the axes of compute: wall time, and images seen (a population scores each
        # image P times; the budget sentences say how many forward evaluations that was).
        ("val_acc", "validation accuracy", "seconds"),
        ("val_acc", "validation accuracy", "images"),
        ("val_acc", "validation accuracy", "evaluations"),
    ]
    axes = compute_axes(ok_runs)
    jobs: dict[Any, FigureJob] = {}
    titles = []
    if ok_runs:
        # What the figure reads; the family colours a big grid's settings (the optimizer, and the
        # architecture prefix of the setting's name when the study has several).
        overlay_runs = [
            {
                "setting": r["setting"],
                "history": r["history"],
                "family": r["setting"][: len(r["setting"]) - len(r["variant"])] + r["optimizer"]["name"],
            }
            for r in ok_runs
        ]
        for key, label, axis in curves:
            if axis in axes:
                titles.append(label if axis == "epoch" else f"{label} vs {plots.X_AXES[axis]}")
                jobs[("overlay", len(titles) - 1)] = FigureJob("overlay", (overlay_runs, key, label, axis))
    detailed = detailed_runs(loaded["runs"])
    for r in loaded["runs"]:
        if r["run"] in detailed and r["history"]:
            jobs[("curves", r["run"])] = FigureJob("learning_curves", (r["history"],), {"title": r["run"]})
    sweep = loaded["config"].get("sweep")
    if sweep:
        jobs[("sweep", None)] = FigureJob("lr_sweep", (sweep,))
    pending = draw_all(list(jobs.values()), drawer)
    samples = store.read_samples(folder)
    # The first 40 test images are the same for every run: each is encoded once.
    test_uris = [plots.data_uri(plots.digit_png(im)) for im in samples.test_images]
    per_run = {}
    for r in loaded["runs"]:
        figs: dict[str, Any] = {"curves": None, "confusion": None, "predictions": None}
        per_run[r["run"]] = figs
        if r["run"] not in detailed:
            continue
        figs["confusion"] = confusion_table(r["test"]["last"]["confusion_matrix"])
        predicted = store.read_predictions(folder, r["run"])
        n = len(test_uris)
        figs["predictions"] = image_grid(test_uris, predicted.targets[:n], predicted.last[:n])
    train_grid = image_grid([plots.data_uri(plots.digit_png(im)) for im in samples.train_images], samples.train_labels)

    def collect() -> dict[str, Any]:
        drawn = dict(zip(jobs, pending()))
        for (what, key), uri in drawn.items():
            if what == "curves":
                per_run[key]["curves"] = uri
        return {
            "overlays": [{"title": t, "src": drawn[("overlay", i)]} for i, t in enumerate(titles)],
            "per_run": per_run,
            "train_images": train_grid,
            "detailed": len(detailed),
            "sweep_plot": drawn.get(("sweep", None)),
        }

    return collect


def build_context(loaded: dict[str, Any], summary: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    """Everything the template shows, as plain data: the summary, the results, the figures
    (as :func:`start_figures`' collector returns them)."""
    config = loaded["config"]
    setup = config["config"]
    folder = Path(loaded["folder"])
    run_observations = summary["run_observations"]
    runs = [
        {
            "run": r["run"],
            "status": r["status"],
            "report_text": classification_report_text(r["test"]["last"]["report"]),
            **figures["per_run"][r["run"]],
            "observations": run_observations.get(r["run"], []),
        }
        for r in loaded["runs"]
    ]
    return {
        "title": f"fmnist-pl: optimizer comparison {folder.name}",
        "folder": str(folder),
        "created": config["created"],
        "setup": setup,
        "trains_alone": CompareConfig.from_dict(setup).trains_alone,
        "split": config["split"],
        "model": config["model"],
        "environment": config["environment"],
        "optimizers": [r["optimizer"] for r in config["runs"] if r["seed"] == setup.get("seed")],
        "class_names": list(CLASS_NAMES),
        "overlays": figures["overlays"],
        "rows": summary["rows"],
        "rankings": summary["rankings"],
        "aggregates": summary["settings"],
        "per_class": _per_class(summary["settings"]),
        "significance": summary["significance"],
        "target": summary["target"],
        "sweep": {"table": config["sweep"], "plot": figures["sweep_plot"]} if config.get("sweep") else None,
        "architectures": summary["architectures"],
        "runs": runs,
        "missing": summary["missing"],
        "observations": summary["observations"],
        "run_observations": bool(run_observations),
        "train_images": figures["train_images"],
        "detailed": figures["detailed"] if figures["detailed"] < len(loaded["runs"]) else None,
    }


def saved_summary(loaded: dict[str, Any]) -> dict[str, Any]:
    """The folder's ``summary.json`` (validated: :class:`~fmnist_pl.store.schema.SummaryFile`), or,
    where there is none, the summary computed from the results. A damaged one is a one-line
    :class:`~fmnist_pl.errors.ResultsError` whose fix rebuilds it (``fmnist-pl report DIR``)."""
    from fmnist_pl.store.schema import SummaryFile

    folder = Path(loaded["folder"])
    path = folder / store.SUMMARY_FILE
    if not path.exists():
        return summarize(loaded)
    fix = f"rebuild it from the runs' files: {shlex.join(['fmnist-pl', 'report', str(folder)])}"
    return store.read_checked(path, SummaryFile, fix).model_dump()


def render(
    folder: Path, summary: Callable[[dict[str, Any]], dict[str, Any]] = saved_summary, drawer: Drawer | None = None
) -> Path:
    """(Re)write ``folder/report.html`` from the results in ``folder`` and their summary; returns its path.

    ``summary``: how the loaded results give their summary (as :func:`~fmnist_pl.analysis.summary.summarize`
    returns it); by default :func:`saved_summary`. It is called after the figures are submitted, so
    that ``drawer``'s workers, if given, draw them meanwhile.
    """
    loaded = store.load_compare(Path(folder))
    figures = start_figures(loaded, drawer)
    context = build_context(loaded, summary(loaded), figures())
    path = Path(loaded["folder"]) / "report.html"
    try:
        store.atomic_write_text(path, _environment().get_template(TEMPLATE).render(**context))
    except IsADirectoryError:
        raise store.ResultsError(in_the_way(path, path.parent)) from None
    return path
