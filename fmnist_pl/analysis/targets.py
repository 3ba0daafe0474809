"""Time to result: when a run's validation accuracy first reached a target, at one or several targets.

AlgoPerf's measure is the time to a fixed validation target; one target favours whichever method
happens to cross it first, and short or gradient-free runs often never reach a fixed one. So the
report also uses targets relative to the best accuracy any run reached, and a profile over all
levels from half the best to all of it.
"""

from __future__ import annotations

from typing import Any

from fmnist_pl.analysis.runs import finished, group_runs


def time_to_target(history: list[dict[str, float]], target: float | None) -> dict[str, Any]:
    """AlgoPerf-style time-to-result: the first epoch whose validation accuracy reaches ``target``."""
    elapsed = 0.0
    for row in history if target is not None else []:
        elapsed += row["seconds"]
        if row["val_acc"] >= target:
            return {"epoch": row["epoch"], "seconds": elapsed}
    return {"epoch": None, "seconds": None}


RELATIVE_TARGETS = (0.9, 0.95, 0.99)  # of the best validation accuracy any run reached
PROFILE_LEVELS = 51  # points of the target profile, from half the best accuracy to all of it


def validation_points(run: dict[str, Any], anytime: bool = True) -> list[dict[str, float]]:
    """Every validation of a run in training order - its epoch rows (a budget's partial last epoch at
    its true position: 2.4, not 3) and, with ``anytime``, its points between epoch ends - each with
    the images, evaluations and seconds spent by then (the report's curves read the same rows)."""
    rows, clock = [], 0.0
    for row in run["history"]:
        clock += row["seconds"]
        position = row["epoch"] - 1 + row["fraction"] if row.get("fraction") else row["epoch"]
        rows.append({**row, "epoch": position, "seconds": clock})
    if anytime:
        rows += [dict(point) for point in run.get("points") or []]
    return sorted(rows, key=lambda r: r["epoch"])


def first_reached(points: list[dict[str, float]], target: float) -> dict[str, float] | None:
    """Where a run's validation accuracy first reached ``target``: epoch, images, evaluations, seconds."""
    for p in points:
        if p["val_acc"] == p["val_acc"] and p["val_acc"] >= target:
            return {k: p.get(k) for k in ("epoch", "images", "evaluations", "seconds")}
    return None


def time_to_targets(runs: list[dict[str, Any]], target: float | None) -> dict[str, Any] | None:
    """Time-to-result at several targets (AlgoPerf's measure, made robust to the choice of one):
    the configured absolute ``target`` and 90 / 95 / 99 % of the best validation accuracy any run
    reached. Per setting and target: how many of its runs reached it, and the median images,
    evaluations and seconds they needed. ``profile``: per optimizer, the share of its runs (over
    seeds and architectures) that reached each level of the best accuracy, from half of it to all
    of it - a performance profile, which one target cannot show."""
    import statistics as st

    done = [r for r in runs if finished(r)]
    curves = {r["run"]: validation_points(r) for r in done}
    best = max((p["val_acc"] for c in curves.values() for p in c if p["val_acc"] == p["val_acc"]), default=None)
    if not done or best is None:
        return None
    targets = [{"label": f"{target:g} (--target)", "value": target}] if target is not None else []
    targets += [
        {"label": f"{share:.0%} of the best ({share * best:.4f})", "value": share * best} for share in RELATIVE_TARGETS
    ]
    settings = []
    for setting, group in group_runs(done).items():
        cells = []
        for t in targets:
            hits = [h for h in (first_reached(curves[r["run"]], t["value"]) for r in group) if h is not None]
            cell: dict[str, Any] = {"reached": len(hits), "runs": len(group)}
            for unit in ("epoch", "images", "evaluations", "seconds"):
                values = [h[unit] for h in hits if h.get(unit) is not None]
                cell[unit] = st.median(values) if values else None
            cells.append(cell)
        settings.append({"setting": setting, "cells": cells})
    levels = [0.5 + 0.5 * i / (PROFILE_LEVELS - 1) for i in range(PROFILE_LEVELS)]
    by_optimizer: dict[str, list[list[dict[str, float]]]] = {}
    for r in done:
        by_optimizer.setdefault(r["optimizer"]["name"], []).append(curves[r["run"]])
    profile = {
        name: [sum(first_reached(c, level * best) is not None for c in cs) / len(cs) for level in levels]
        for name, cs in by_optimizer.items()
    }
    return {"best": best, "targets": targets, "settings": settings, "levels": levels, "profile": profile}
