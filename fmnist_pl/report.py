"""Render results on disk into one self-contained ``report.html`` (Jinja2, autoescape on).

The template receives plain values only; every image is a ``data:`` URI (as pytest-html's
self-contained report does), so the file opens from disk or an e-mail with no network.
"""

from __future__ import annotations

import base64
import math
import statistics
from pathlib import Path
from typing import Any

import jinja2

from fmnist_pl import metrics, results
from fmnist_pl.idx import CLASS_NAMES

TEMPLATE = "report.html.j2"
_TEMPLATE_DIRS = [Path(__file__).parent / "templates", Path(__file__).parent.parent / "templates"]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader([str(p) for p in _TEMPLATE_DIRS]),
                              autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                              undefined=jinja2.StrictUndefined)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _file_uri(path: Path) -> str | None:
    return data_uri(path.read_bytes()) if path.is_file() else None


def _heat(value: float, lo: float, hi: float) -> str:
    """Background colour for a per-class F1 cell: white (worst) to green (best) within the table."""
    t = 0.0 if hi <= lo else (value - lo) / (hi - lo)
    r, g, b = int(255 - 155 * t), int(255 - 55 * t), int(255 - 155 * t)
    return f"rgb({r},{g},{b})"


def _mean_std(values: list[float]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals), "n": len(vals)}


def build_context(loaded: dict[str, Any]) -> dict[str, Any]:
    """Everything the template shows, as plain data computed from the results on disk."""
    from fmnist_pl import plots

    config, runs = loaded["config"], loaded["runs"]
    folder = Path(loaded["folder"])
    for run in runs:
        run["label"] = run["optimizer"]["name"]
    ok_runs = [r for r in runs if r.get("status", "ok") == "ok" and r.get("history")]
    overlays = []
    if ok_runs:
        for key, label in (("val_loss", "validation loss"), ("val_acc", "validation accuracy"),
                           ("train_loss", "training loss")):
            overlays.append({"title": label, "src": data_uri(plots.png_bytes(plots.overlay(ok_runs, key, label)))})
    rows = [metrics.summary_row(r) for r in runs]
    f1_values = [v for r in ok_runs for v in r["test"]["last"]["per_class"]["f1"]]
    lo, hi = (min(f1_values), max(f1_values)) if f1_values else (0.0, 1.0)
    per_class = []
    for r in ok_runs:
        f1 = r["test"]["last"]["per_class"]["f1"]
        per_class.append({"run": r["run"], "cells": [{"value": v, "color": _heat(v, lo, hi)} for v in f1]})
    by_optimizer: dict[str, list[dict[str, Any]]] = {}
    for r in ok_runs:
        by_optimizer.setdefault(r["label"], []).append(r)
    aggregates = []
    for name, group in by_optimizer.items():
        aggregates.append({
            "optimizer": name, "n": len(group),
            "test_acc": _mean_std([g["test"]["last"]["accuracy"] for g in group]),
            "test_f1": _mean_std([g["test"]["last"]["macro_f1"] for g in group]),
            "best_epoch": _mean_std([g.get("best_epoch") for g in group]),
        })
    run_details = []
    for r in runs:
        run_dir = Path(r["dir"])
        run_details.append({
            "run": r["run"], "status": r.get("status", "ok"),
            "report_text": metrics.classification_report_text(r["test"]["last"]["report"]) if r.get("test") else "",
            "curves": _file_uri(run_dir / "learning_curves.png"),
            "confusion": _file_uri(run_dir / "confusion_matrix.png"),
            "predictions": _file_uri(run_dir / "predictions.png"),
            "observations": metrics.observations(r),
        })
    setup = config.get("config", {})
    return {
        "title": f"fmnist-pl: optimizer comparison {folder.name}",
        "folder": str(folder), "created": config.get("created"), "setup": setup,
        "split": config.get("split", {}), "model": config.get("model", {}),
        "environment": config.get("environment", {}),
        "optimizers": [r["optimizer"] for r in config.get("runs", []) if r["seed"] == setup.get("seed", r["seed"])],
        "class_names": list(CLASS_NAMES), "overlays": overlays, "rows": rows,
        "rankings": metrics.rankings(runs), "aggregates": aggregates, "per_class": per_class,
        "runs": run_details, "missing": loaded["missing"],
        "observations": [n for r in runs for n in metrics.observations(r)],
        "train_images": _file_uri(folder / "train_images.png"),
    }


def render(folder: Path) -> Path:
    """(Re)write ``folder/report.html`` from the results in ``folder``; returns its path."""
    loaded = results.load_compare(Path(folder))
    html = _environment().get_template(TEMPLATE).render(**build_context(loaded))
    path = Path(folder) / "report.html"
    results.atomic_write_text(path, html)
    return path
