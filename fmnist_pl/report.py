"""Render results on disk into one self-contained ``report.html`` (Jinja2, autoescape on).

The template receives plain values only; every image is a ``data:`` URI (as pytest-html's
self-contained report does), so the file opens from disk or an e-mail with no network.
"""

from __future__ import annotations

import base64
import math
import statistics
from pathlib import Path
from typing import Any, Callable

import jinja2

from fmnist_pl import metrics, results
from fmnist_pl.metrics import run_label
from fmnist_pl.config import arch_name, parameter_count
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


def _finished(run: dict[str, Any]) -> bool:
    """Trained to the end without diverging: what tables, curves and tests are made of."""
    return run.get("status", "ok") == "ok" and bool(run.get("history"))


def group_by_optimizer(runs: list[dict[str, Any]],
                       key: Callable[[dict[str, Any]], str] = run_label) -> dict[str, list[dict[str, Any]]]:
    """Finished runs per optimizer setting (its seeds); ``key`` names the setting."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in filter(_finished, runs):
        groups.setdefault(key(r), []).append(r)
    return groups


def _per_class_f1(by_optimizer: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-class test F1 per optimizer: mean ± std over its seeds, colour-scaled by the mean."""
    rows = []
    for name, group in by_optimizer.items():
        per_seed = [g["test"]["last"]["per_class"]["f1"] for g in group]
        cells = [_mean_std(list(col)) for col in zip(*per_seed)]
        rows.append({"run": name, "n": len(group), "cells": cells})
    means = [c["mean"] for r in rows for c in r["cells"] if c["mean"] is not None]
    lo, hi = (min(means), max(means)) if means else (0.0, 1.0)
    for r in rows:
        for c in r["cells"]:
            c["color"] = _heat(c["mean"], lo, hi) if c["mean"] is not None else "white"
    return rows


def significance(by_optimizer: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """Paired tests between optimizers (see :mod:`fmnist_pl.stats`) from the saved test predictions."""
    import numpy as np

    from fmnist_pl import stats

    correct: dict[str, Any] = {}
    for name, group in by_optimizer.items():
        rows = []
        for run in sorted(group, key=lambda g: g.get("seed", 0)):
            try:
                saved = results.read_json(Path(run["dir"]) / results.PREDICTIONS_FILE)
            except (OSError, ValueError):
                return None  # predictions lost: the report still renders, without the tests
            rows.append(np.asarray(saved["last"]) == np.asarray(saved["targets"]))
        correct[name] = np.stack(rows)
    seeds = {c.shape[0] for c in correct.values()}
    if len(correct) < 2 or len(seeds) != 1:
        return None  # nothing to compare, or unequal seeds (an unfinished run): no paired design
    return stats.compare_optimizers(correct)


def per_architecture(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rankings and significance within each architecture: does the ranking hold across them?"""
    archs: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        archs.setdefault(arch_name(r["hidden"]), []).append(r)
    out = []
    for name, group in archs.items():
        sig = significance(group_by_optimizer(group, key=lambda r: r["optimizer"]["name"]))
        out.append({"name": name, "parameters": parameter_count(group[0]["hidden"]),
                    "ranking": metrics.rankings(group)["accuracy"]["text"].replace(f"{name}/", ""),
                    "significance": sig["text"] if sig else "–"})
    return out


def build_context(loaded: dict[str, Any]) -> dict[str, Any]:
    """Everything the template shows, as plain data computed from the results on disk."""
    from fmnist_pl import plots

    config, runs = loaded["config"], loaded["runs"]
    folder = Path(loaded["folder"])
    for run in runs:
        run["label"] = run_label(run)
    ok_runs = list(filter(_finished, runs))
    overlays = []
    if ok_runs:
        for key, label in (("val_loss", "validation loss"), ("val_acc", "validation accuracy"),
                           ("train_loss", "training loss")):
            overlays.append({"title": label, "src": data_uri(plots.png_bytes(plots.overlay(ok_runs, key, label)))})
    target = config.get("config", {}).get("target")
    rows = [metrics.summary_row(r, target) for r in runs]
    by_optimizer = group_by_optimizer(runs)
    multi_seed = any(len(g) > 1 for g in by_optimizer.values())
    per_class = _per_class_f1(by_optimizer)
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
    sweep = None
    if config.get("sweep"):
        sweep = {"table": config["sweep"],
                 "plot": data_uri(plots.png_bytes(plots.lr_sweep(config["sweep"])))}
    return {
        "title": f"fmnist-pl: optimizer comparison {folder.name}",
        "folder": str(folder), "created": config.get("created"), "setup": setup,
        "split": config.get("split", {}), "model": config.get("model", {}),
        "environment": config.get("environment", {}),
        "optimizers": [r["optimizer"] for r in config.get("runs", []) if r["seed"] == setup.get("seed", r["seed"])],
        "class_names": list(CLASS_NAMES), "overlays": overlays, "rows": rows,
        "rankings": metrics.rankings(runs), "aggregates": aggregates, "per_class": per_class,
        "significance": significance(by_optimizer), "target": target, "sweep": sweep,
        "architectures": per_architecture(runs) if len(config.get("model", {}).get("architectures", [])) > 1 else [],
        "runs": run_details, "missing": loaded["missing"],
        # With seeds: one line per optimizer (each run's own notes are in its section); diverged runs always.
        "observations": ([metrics.seed_observations(name, g) for name, g in by_optimizer.items()] if multi_seed else [])
                        + [n for r in runs if not multi_seed or r.get("status") == "diverged"
                           for n in metrics.observations(r)],
        "run_observations": multi_seed,
        "train_images": _file_uri(folder / "train_images.png"),
    }


def render(folder: Path) -> Path:
    """(Re)write ``folder/report.html`` from the results in ``folder``; returns its path."""
    loaded = results.load_compare(Path(folder))
    html = _environment().get_template(TEMPLATE).render(**build_context(loaded))
    path = Path(folder) / "report.html"
    results.atomic_write_text(path, html)
    return path
