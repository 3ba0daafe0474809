"""Which runs count, and how they group: the helpers every analysis of a compare folder shares."""

from __future__ import annotations

from typing import Any


def finished(run: dict[str, Any]) -> bool:
    """Trained to the end without diverging: what tables, curves and tests are made of."""
    return run["status"] == "ok" and bool(run["history"])


def best_val_acc(run: dict[str, Any]) -> float:
    """The best validation accuracy of a run's epochs: what a sweep and a tune select by (early stopping's epoch)."""
    return max(row["val_acc"] for row in run["history"])


def group_runs(runs: list[dict[str, Any]], key: str = "setting") -> dict[str, list[dict[str, Any]]]:
    """Runs per value of their structured ``key`` (``setting`` or ``variant``), in plan order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r[key], []).append(r)
    return groups
