"""Classification reports, rankings and observations, computed once as plain data.

As in scikit-learn's ``classification_report``: compute into a dict (``output_dict``), then
render text or HTML as views of it. The numbers themselves come from torchmetrics
(:func:`fmnist_pl.model.classification_metrics`); this module only arranges them.
"""

from __future__ import annotations

import math
from itertools import groupby
from typing import Any, Sequence

REPORT_DIGITS = 2  # the reference's reports (and scikit-learn's default) show two decimals
OVERFIT_TOLERANCE = 0.01  # val loss this far (relative) above its minimum at the end = overfitting


def classification_report_dict(test: dict[str, Any], class_names: Sequence[str]) -> dict[str, Any]:
    """scikit-learn's ``output_dict`` layout: per class, accuracy, macro avg, weighted avg."""
    per, support = test["per_class"], test["support"]
    total = sum(support)
    out: dict[str, Any] = {}
    for i, name in enumerate(class_names):
        out[name] = {"precision": per["precision"][i], "recall": per["recall"][i],
                     "f1-score": per["f1"][i], "support": support[i]}
    out["accuracy"] = test["accuracy"]
    for key, label in (("macro", "macro avg"), ("weighted", "weighted avg")):
        out[label] = {"precision": test[key]["precision"], "recall": test[key]["recall"],
                      "f1-score": test[key]["f1"], "support": total}
    return out


def classification_report_text(report: dict[str, Any], digits: int = REPORT_DIGITS) -> str:
    """The text scikit-learn's ``classification_report`` prints, from the dict above."""
    rows = [k for k in report if k not in ("accuracy", "macro avg", "weighted avg")]
    width = max(len(k) for k in [*rows, "weighted avg"])
    head = f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"
    lines = [head, ""]
    fmt = f"{{:>{width}}} {{:>9.{digits}f}} {{:>9.{digits}f}} {{:>9.{digits}f}} {{:>9}}"
    for name in rows:
        r = report[name]
        lines.append(fmt.format(name, r["precision"], r["recall"], r["f1-score"], r["support"]))
    lines.append("")
    total = report["macro avg"]["support"]
    lines.append(f"{'accuracy':>{width}} {'':>9} {'':>9} {report['accuracy']:>9.{digits}f} {total:>9}")
    for label in ("macro avg", "weighted avg"):
        r = report[label]
        lines.append(fmt.format(label, r["precision"], r["recall"], r["f1-score"], r["support"]))
    return "\n".join(lines) + "\n"


def run_label(run: dict[str, Any]) -> str:
    """A run's name without its seed: what its seeds have in common (``adam``, ``h512-256/adam``)."""
    return "/".join(p for p in run["run"].split("/") if not p.startswith("seed-"))


def ranking(values: dict[str, float], digits: int = REPORT_DIGITS) -> dict[str, Any]:
    """Rank names by value, highest first; equal at ``digits`` decimals means tied.

    Returns the groups (best first), the text like ``"adam = sgd > rmsprop"`` and the exact
    values, so that the shown order never claims more precision than the reports have.
    """
    finite = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
    ordered = sorted(finite, key=lambda k: -finite[k])
    groups = [list(g) for _, g in groupby(ordered, key=lambda k: round(finite[k], digits))]
    text = " > ".join(" = ".join(g) for g in groups)
    left_out = [k for k in values if k not in finite]
    return {"groups": groups, "text": text, "values": finite, "left_out": left_out}


def observations(run: dict[str, Any]) -> list[str]:
    """Plain-language facts about one run, derived from its history (never hard-coded)."""
    history = run.get("history") or []
    name = run["run"]
    notes: list[str] = []
    if run.get("status") == "diverged":
        notes.append(f"{name} diverged at epoch {run.get('diverged_epoch')} (loss not finite or above 1e3); "
                     "it was stopped and is left out of the ranking.")
        return notes
    if not history:
        return notes
    val = [row["val_loss"] for row in history]
    best_i = min(range(len(val)), key=val.__getitem__)
    best_epoch, last = history[best_i]["epoch"], history[-1]
    if overfits(run):
        notes.append(f"{name} overfits: validation loss was lowest at epoch {best_epoch} "
                     f"({val[best_i]:.4f}) and rose to {val[-1]:.4f} by epoch {last['epoch']}.")
    else:
        notes.append(f"{name} does not overfit within {last['epoch']} epochs: validation loss is lowest "
                     f"at epoch {best_epoch} ({val[best_i]:.4f}), {val[-1]:.4f} at the end.")
    gap = last["train_acc"] - last["val_acc"]
    notes.append(f"{name}: final train accuracy {last['train_acc']:.4f} vs validation {last['val_acc']:.4f} "
                 f"(gap {gap:+.4f}).")
    return notes


def time_to_target(history: list[dict[str, float]], target: float | None) -> dict[str, Any]:
    """AlgoPerf-style time-to-result: the first epoch whose validation accuracy reaches ``target``."""
    if target is None:
        return {"epoch": None, "seconds": None}
    elapsed = 0.0
    for row in history:
        elapsed += row["seconds"]
        if row["val_acc"] >= target:
            return {"epoch": row["epoch"], "seconds": elapsed}
    return {"epoch": None, "seconds": None}


def summary_row(run: dict[str, Any], target: float | None = None) -> dict[str, Any]:
    """The summary table's row for one run."""
    history = run.get("history") or []
    last = history[-1] if history else {}
    timing = run.get("timing", {})
    test = run.get("test", {})
    return {
        "run": run["run"], "optimizer": run["optimizer"]["name"], "seed": run.get("seed"),
        "status": run.get("status", "ok"),
        "test_acc": test.get("last", {}).get("accuracy"), "test_f1": test.get("last", {}).get("macro_f1"),
        "best_test_acc": test.get("best", {}).get("accuracy"), "best_test_f1": test.get("best", {}).get("macro_f1"),
        "best_epoch": run.get("best_epoch"), "epochs": run.get("epochs"),
        "gap": (last["train_acc"] - last["val_acc"]) if last else None,
        "seconds_per_epoch": timing.get("seconds_per_epoch"), "fit_seconds": timing.get("fit_seconds"),
        "state_bytes": run.get("optimizer_state_bytes"),
        "target": time_to_target(history, target),
    }


def rankings(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rankings by test accuracy and by macro-F1 (last epoch, as the reference reported).

    Runs that differ only by seed are one entry, valued at their mean; a setting with a
    diverged or unfinished seed is left out (its mean would not be comparable).
    """
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_setting.setdefault(run_label(r), []).append(r)
    out = {}
    for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
        values: dict[str, float | None] = {}
        for setting, group in by_setting.items():
            ok = all(r.get("status", "ok") == "ok" and r.get("test") for r in group)
            values[setting] = sum(r["test"]["last"][key] for r in group) / len(group) if ok else None
        out[label] = ranking(values)
    return out


def overfits(run: dict[str, Any]) -> bool:
    """Validation loss at the end above its minimum by more than the tolerance (and not at the last epoch)."""
    val = [row["val_loss"] for row in run.get("history") or []]
    if not val:
        return False
    best = min(range(len(val)), key=val.__getitem__)
    return best < len(val) - 1 and val[-1] > val[best] * (1 + OVERFIT_TOLERANCE)


def seed_observations(label: str, group: list[dict[str, Any]]) -> str:
    """One line for an optimizer's seeds: how many overfit, where they were best, the final gap."""
    epochs = [r["best_epoch"] for r in group if r.get("best_epoch") is not None]
    gaps = [r["history"][-1]["train_acc"] - r["history"][-1]["val_acc"] for r in group if r.get("history")]
    n_over = sum(overfits(r) for r in group)
    return (f"{label}: validation loss rose after its minimum in {n_over} of {len(group)} seeds; best epoch "
            f"{sum(epochs) / len(epochs):.1f} on average ({min(epochs)}-{max(epochs)}); final train-validation "
            f"accuracy gap {sum(gaps) / len(gaps):+.4f} on average.")
