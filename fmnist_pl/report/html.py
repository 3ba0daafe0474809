"""Render results + summary on disk into one self-contained ``report.html`` (Jinja2, autoescape on).

The template receives plain values only; every figure is drawn here from the results and
embedded as a ``data:`` URI (as pytest-html's self-contained report does), so the file opens
from disk or an e-mail with no network, and the report is rebuilt from the results alone.
"""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import jinja2

from fmnist_pl import store
from fmnist_pl.analysis.metrics import classification_report_text
from fmnist_pl.analysis.summary import finished, interval_text, intervals_note, pair_view, ranking_note, summarize
from fmnist_pl.analysis.targets import validation_points
from fmnist_pl.config import CompareConfig
from fmnist_pl.data.idx import CLASS_NAMES
from fmnist_pl.store.load import in_the_way

if TYPE_CHECKING:
    from fmnist_pl.report.figures import Drawer, FigureJob

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


def ranking_view(rankings: dict[str, Any], tests: dict[str, Any] | None) -> dict[str, Any]:
    """The ranking section: the verdict text (the accuracy tests'), what its notation means, and one
    row per setting with its mean test accuracy and macro-F1, each with its 95 % interval."""
    acc, f1 = rankings["accuracy"], rankings["macro-F1"]
    f1_of = {e["name"]: e for e in f1["entries"]}
    group_of = {name: i + 1 for i, group in enumerate(acc["groups"]) for name in group}
    rows = []
    for e in acc["entries"]:
        f = f1_of.get(e["name"])
        rows.append(
            {
                "group": group_of.get(e["name"], "–"),
                "name": e["name"],
                "seeds": e["seeds"],
                "accuracy": f"{e['mean']:.4f}",
                "accuracy_interval": interval_text(e["low"], e["high"]),
                "f1": f"{f['mean']:.4f}" if f else "–",
                "f1_interval": interval_text(f["low"], f["high"]) if f else "–",
            }
        )
    return {
        "by": acc.get("by", "test accuracy"),
        "text": acc["text"],
        "tested": acc["tested"],
        "note": ranking_note(acc, tests),
        "rows": rows,
        "intervals": f"Accuracy: {intervals_note(acc)}. Macro-F1: {intervals_note(f1)}; no test is made on it."
        + (
            " Each interval is one setting's own; the verdicts come from paired tests, which can tell apart"
            " settings whose intervals overlap."
            if acc["tested"]
            else ""
        ),
        "caveat": tests["caveat"] if tests else None,
        "left_out": acc["left_out"],
    }


def verdicts_view(tests: dict[str, Any] | None) -> dict[str, Any] | None:
    """The significance section: a heading that says what the tests can tell (optimizers with seeds,
    two trained networks with one), the one-seed caveat, and every pair in words (:func:`pair_view`)."""
    if tests is None:
        return None
    seeds = tests["seeds"]
    heading = (
        f"Do the optimizers differ? Training runs paired over {seeds} seeds"
        if seeds >= 2
        else "Do these trained networks differ? One seed: networks, not optimizers"
    )
    pairs = [pair_view(p) for p in tests["pairs"]]
    return {
        "heading": heading,
        "test": tests["test"],
        "alpha": tests["alpha"],
        "caveat": tests["caveat"],
        "text": tests["text"],
        "interval_kind": pairs[0]["interval_kind"] if pairs else "",
        "seeded": seeds >= 2,
        "pairs": pairs,
    }


def images_per_epoch(runs: list[dict[str, Any]], setup: dict[str, Any], split: dict[str, int]) -> str:
    """Training images each run saw per epoch: from the runs' running ``images`` totals where recorded,
    else what ``--limit-train-batches`` x ``--batch-size`` allows of the training split."""
    seen: Counter[int] = Counter()
    recorded = any(r["history"] for r in runs)
    for r in runs:
        before = 0
        for row in r["history"]:
            if row.get("images") is None:
                recorded = False
                break
            seen[row["images"] - before] += 1
            before = row["images"]
    if recorded and seen:
        most = seen.most_common(1)[0][0]
        spread = f" ({min(seen):,}-{max(seen):,} across all runs' epochs)" if len(seen) > 1 else ""
        return f"{most:,}{spread}, from the runs' histories"
    limit, batch, train = setup.get("limit_train_batches"), setup.get("batch_size"), split.get("train")
    if limit and batch:
        images = limit * batch if train is None else min(limit * batch, train)
        return f"{images:,} (--limit-train-batches {limit} x --batch-size {batch})"
    return f"{train:,} (every training image)" if train is not None else "not recorded"


def protocol(loaded: dict[str, Any]) -> list[tuple[str, str]]:
    """Every option that changes what was measured, as (what, value) rows of the Setup section; a
    folder written before an option existed shows it as not recorded."""
    config = loaded["config"]
    setup, split = config["config"], config["split"]

    def given(key: str) -> Any:
        return setup.get(key, "not recorded")

    limit, budget, stop = setup.get("limit_train_batches"), setup.get("time_budget"), setup.get("stop_epoch")
    # A tune's successive-halving rung trains the plan's first epochs only.
    epochs = f"{stop} of a {setup['epochs']}-epoch plan (a successive-halving rung)" if stop else str(given("epochs"))
    return [
        ("epochs", epochs),
        ("batch size", str(given("batch_size"))),
        ("seeds", f"{given('seeds')} (first seed {given('seed')}; seed k is seed + k)"),
        ("validation images", f"{split['val']:,} (the first training images)" if "val" in split else "not recorded"),
        ("images seen per epoch", images_per_epoch(loaded["runs"], setup, split)),
        ("--limit-train-batches", f"{limit:,} batches an epoch" if limit else "none (every batch)"),
        ("--time-budget", f"{budget:g} s of training per run" if budget is not None else "none"),
        ("--budget", f"{setup['budget']} per run" if setup.get("budget") else "none"),
        ("--eval-points", f"{given('eval_points')} validations per run between epoch ends, where it has fewer epochs"),
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


CURVES = [
    ("val_loss", "validation loss", "epoch"),
    ("val_acc", "validation accuracy", "epoch"),
    ("train_loss", "training loss", "epoch"),
    # The same race on the axes of compute: wall time, and images seen (a population scores each
    # image P times; the budget sentences say how many forward evaluations that was).
    ("val_acc", "validation accuracy", "seconds"),
    ("val_acc", "validation accuracy", "images"),
    ("val_acc", "validation accuracy", "evaluations"),
]


def curve_rows(run: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """A run's points for a curve of ``key``: its epoch rows, a budget's partial last epoch at its true
    position (epoch 2.4, not 3), and for validation metrics its anytime points between epoch ends
    (``anytime.json``), in order (:func:`~fmnist_pl.analysis.targets.validation_points`); each row's
    ``seconds`` is its own (the plots accumulate them)."""
    rows = validation_points(run, anytime=key.startswith("val_"))
    previous = 0.0
    for row in rows:
        row["seconds"], previous = row["seconds"] - previous, row["seconds"]
    return rows


def overlay_jobs(ok_runs: list[dict[str, Any]], jobs: dict[Any, FigureJob]) -> list[str]:
    """Add the overlay figures of :data:`CURVES` to ``jobs`` (on the axes the runs recorded); their titles."""
    from fmnist_pl.report import plots
    from fmnist_pl.report.figures import FigureJob

    titles: list[str] = []
    if not ok_runs:
        return titles
    axes = compute_axes(ok_runs)
    for key, label, axis in CURVES:
        if axis not in axes:
            continue
        # What the figure reads; the family colours a big grid's settings (the optimizer, and the
        # architecture prefix of the setting's name when the study has several).
        runs = [
            {
                "setting": r["setting"],
                "history": curve_rows(r, key),
                "family": r["setting"][: len(r["setting"]) - len(r["variant"])] + r["optimizer"]["name"],
            }
            for r in ok_runs
        ]
        titles.append(label if axis == "epoch" else f"{label} vs {plots.X_AXES[axis]}")
        jobs[("overlay", len(titles) - 1)] = FigureJob("overlay", (runs, key, label, axis))
    return titles


def targets_view(targets: dict[str, Any] | None) -> dict[str, Any] | None:
    """The time-to-target table: per setting and target, the runs that reached it and the median
    images (and seconds) they needed."""
    if not targets:
        return None
    rows = []
    for setting in targets["settings"]:
        cells = []
        for cell in setting["cells"]:
            if not cell["reached"]:
                cells.append(f"not reached (0/{cell['runs']})")
                continue
            where = f"{cell['images']:,.0f} images" if cell["images"] is not None else f"epoch {cell['epoch']:g}"
            seconds = f", {cell['seconds']:.1f} s" if cell["seconds"] is not None else ""
            cells.append(f"{where}{seconds} ({cell['reached']}/{cell['runs']})")
        rows.append({"setting": setting["setting"], "cells": cells})
    return {"targets": [t["label"] for t in targets["targets"]], "rows": rows, "best": targets["best"]}


def summary_targets(loaded: dict[str, Any]) -> dict[str, Any] | None:
    """Time-to-target of the loaded folder (:func:`fmnist_pl.analysis.summary.time_to_targets`)."""
    from fmnist_pl.analysis.targets import time_to_targets

    return time_to_targets(loaded["runs"], loaded["config"]["config"].get("target"))


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
    jobs: dict[Any, FigureJob] = {}
    titles = overlay_jobs([r for r in loaded["runs"] if finished(r)], jobs)
    detailed = detailed_runs(loaded["runs"])
    for r in loaded["runs"]:
        if r["run"] in detailed and r["history"]:
            jobs[("curves", r["run"])] = FigureJob(
                "learning_curves", (curve_rows(r, "train_loss"),), {"title": r["run"]}
            )
    targets = summary_targets(loaded)
    if targets:
        jobs[("profile", None)] = FigureJob("target_profile", (targets["levels"], targets["profile"]))
    sweep = loaded["config"].get("sweep")
    if sweep:
        jobs[("sweep", None)] = FigureJob("lr_sweep", (sweep,))
    tuning = loaded["config"].get("tuning")
    if tuning:
        jobs[("tuning", None)] = FigureJob("tuning_curves", (tuning,))
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
            "tuning_plot": drawn.get(("tuning", None)),
            "profile_plot": drawn.get(("profile", None)),
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
        "ranking": ranking_view(summary["rankings"], summary["significance"]),
        "aggregates": summary["settings"],
        "budget": summary.get("budget"),
        "targets": targets_view(summary.get("targets")),
        "per_class": _per_class(summary["settings"]),
        "significance": verdicts_view(summary["significance"]),
        "protocol": protocol(loaded),
        "target": summary["target"],
        "sweep": {"table": config["sweep"], "plot": figures["sweep_plot"]} if config.get("sweep") else None,
        "tuning": tuning_view(config["tuning"], figures.get("tuning_plot")) if config.get("tuning") else None,
        "architectures": summary["architectures"],
        "runs": runs,
        "missing": summary["missing"],
        "observations": summary["observations"],
        "run_observations": bool(run_observations),
        "train_images": figures["train_images"],
        "profile_plot": figures.get("profile_plot"),
        "detailed": figures["detailed"] if figures["detailed"] < len(loaded["runs"]) else None,
    }


def saved_summary(loaded: dict[str, Any]) -> dict[str, Any]:
    """The folder's ``summary.json`` (validated: :class:`~fmnist_pl.store.schema.SummaryFile`), or,
    where there is none, the summary computed from the results. A damaged one is a one-line
    :class:`~fmnist_pl.errors.ResultsError` whose fix rebuilds it (``fmnist-pl report DIR``); one
    written before the rankings carried intervals is computed again (the report never shows "=" ties)."""
    from fmnist_pl.store.schema import SummaryFile

    folder = Path(loaded["folder"])
    path = folder / store.SUMMARY_FILE
    if not path.exists():
        return summarize(loaded)
    fix = f"rebuild it from the runs' files: {shlex.join(['fmnist-pl', 'report', str(folder)])}"
    saved = store.read_checked(path, SummaryFile, fix).model_dump()
    if any("entries" not in ranked for ranked in saved["rankings"].values()):
        return summarize(loaded)  # written before rankings carried intervals and the tests' groups
    return saved


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


def tuning_view(tuning: dict[str, Any], plot: str | None) -> dict[str, Any]:
    """A tune's section: the curves, the rankings by budget and their sentence, and per method its
    choice, tunability and importance (``tuning.json``, as computed)."""
    from fmnist_pl.analysis.tuning import flip_sentence, show

    ks = [r["k"] for r in tuning["rankings"]]
    methods = []
    for name, m in tuning["methods"].items():
        chosen = m.get("chosen") or {}
        imp = m["importance"]
        methods.append(
            {
                "name": name,
                "at_k": [m["curve"][k - 1] for k in ks],
                "defaults": m.get("defaults"),
                "chosen": chosen,
                "params": ", ".join(f"{k}={show(v)}" for k, v in (chosen.get("params") or {}).items()),
                "tunability": m["tunability"],
                "importance": ", ".join(f"{k} {v:.2f}" for k, v in imp["importances"].items()) or imp.get("reason"),
                "space": m["space"].splitlines(),
                "source": m["source"],
                "diverged": m["diverged"],
                "pruned": m.get("pruned", 0),
                "trials": len(m["values"]),
            }
        )
    scores = [
        {
            "name": name,
            "score": tuning["methods"][name]["studies"]["score"],
            "per_study": tuning["methods"][name]["studies"]["per_study"],
        }
        for name in tuning.get("score_ranking") or []
    ]
    return {
        "setup": tuning["setup"],
        "scores": scores,
        "ks": ks,
        "methods": methods,
        "rankings": tuning["rankings"],
        "sentence": flip_sentence(tuning["flips"]),
        "plot": plot,
    }
