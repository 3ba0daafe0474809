"""Results on disk -> ``summary.json``: everything the report and the CLI show, computed once.

Runs are grouped by the structured key the planner gave them (``setting``: a run's settings
without its seed; ``variant``: the same without the architecture), never by parsing names.
The summary is plain data (scikit-learn's compute-then-render): the HTML report, the terminal
ranking and anyone's notebook are views of it.
"""

from __future__ import annotations

import math
import shlex
import statistics
from itertools import groupby
from pathlib import Path
from typing import Any

from fmnist_pl import store
from fmnist_pl.analysis import stats
from fmnist_pl.analysis.metrics import REPORT_DIGITS  # rankings tie at the reports' two decimals
from fmnist_pl.architecture import arch_name, parameter_count
from fmnist_pl.errors import resume_command
from fmnist_pl.store.load import in_the_way

OVERFIT_PATIENCE = 3  # "overfits": validation loss above its minimum for this many final epochs...
OVERFIT_TOLERANCE = 0.01  # ...each by more than this (relative); a one-epoch uptick is noise, not overfitting


def finished(run: dict[str, Any]) -> bool:
    """Trained to the end without diverging: what tables, curves and tests are made of."""
    return run["status"] == "ok" and bool(run["history"])


def group_runs(runs: list[dict[str, Any]], key: str = "setting") -> dict[str, list[dict[str, Any]]]:
    """Runs per value of their structured ``key`` (``setting`` or ``variant``), in plan order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r[key], []).append(r)
    return groups


def mean_std(values: list[float | None]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "min": min(vals),
        "max": max(vals),
        "n": len(vals),
    }


def ranking(values: dict[str, float | None], digits: int = REPORT_DIGITS) -> dict[str, Any]:
    """Rank names by value, highest first; equal at ``digits`` decimals means tied.

    Returns the groups (best first), the text like ``"adam = sgd > rmsprop"`` and the exact
    values, so that the shown order never claims more precision than the reports have.
    """
    finite = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
    ordered = sorted(finite, key=lambda k: -finite[k])
    groups = [list(g) for _, g in groupby(ordered, key=lambda k: round(finite[k], digits))]
    return {
        "groups": groups,
        "text": " > ".join(" = ".join(g) for g in groups),
        "values": finite,
        "left_out": [k for k in values if k not in finite],
    }


def rankings(runs: list[dict[str, Any]], key: str = "setting") -> dict[str, dict[str, Any]]:
    """Rankings by test accuracy and by macro-F1 (last epoch, as the reference reported).

    Runs that differ only by seed are one entry, valued at their mean; a setting with a
    diverged or unfinished seed is left out (its mean would not be comparable).
    """
    out = {}
    for metric, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
        values: dict[str, float | None] = {}
        for setting, group in group_runs(runs, key).items():
            ok = all(finished(r) for r in group)
            values[setting] = sum(r["test"]["last"][metric] for r in group) / len(group) if ok else None
        out[label] = ranking(values)
    return out


def test_outcomes(folder: Path, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per run, which test images its last weights got right, from its ``predictions.json`` (a boolean array).

    A lost or damaged file is one line with the fix (write that run again), never a run silently
    left out; so are runs whose test labels disagree (:func:`_one_test_set`).
    """
    import hashlib

    import numpy as np

    correct, tested = {}, {}
    for run in runs:
        saved = store.read_predictions(folder, run["run"])
        targets = np.asarray(saved.targets, np.uint8)
        correct[run["run"]] = np.asarray(saved.last, np.uint8) == targets
        # A digest per run, not its labels: a study holds 1,440 runs' predictions of 30,000 images.
        tested[run["run"]] = (len(targets), hashlib.sha256(targets.tobytes()).digest())
    _one_test_set(folder, tested)
    return correct


def _one_test_set(folder: Path, tested: dict[str, tuple[int, bytes]]) -> None:
    """Every run of a compare is tested on the same images (the paired tests need it): a run whose test
    labels (count and digest, in ``tested``) differ from those of most runs is a one-line error
    naming its file. Where no majority tells which labels are the test set's (two runs that
    disagree), the line names both, and the fix writes both again."""
    groups: dict[tuple[int, bytes], list[str]] = {}
    for name, labels in tested.items():
        groups.setdefault(labels, []).append(name)
    if len(groups) < 2:
        return
    most, second = sorted(groups.values(), key=len, reverse=True)[:2]  # stable: plan order among equals
    if len(most) > len(second):
        odd, reference = next(name for name in tested if name not in most), most[0]
        fix = store.rerun_fix(folder, store.run_dir(folder, odd))
        others = f"{most[0]}'s" if len(most) == 1 else f"those of {len(most)} other runs"
        tail = ""
    else:
        odd, reference = sorted((most[0], second[0]), key=list(tested).index)
        both = [str(store.run_dir(folder, name)) for name in (odd, reference)]
        rm = shlex.join(["rm", "-r", "--", *both])
        fix = f"delete both runs' folders, then resume: {rm} && {resume_command(folder)}"
        others = f"{reference}'s"
        tail = ", and no other run tells which are the test set's"
    count, expected = tested[odd][0], tested[reference][0]
    what = (
        f"{count:,} test labels, where {others} are {expected:,}"
        if count != expected
        else f"its test labels differ from {others}"
    )
    raise store.ResultsError(
        f"{store.run_dir(folder, odd) / store.PREDICTIONS_FILE}: targets: {what}{tail} (a compare tests all its "
        f"runs on one test set; damaged or edited?): {fix}"
    )


def significance(folder: Path, runs: list[dict[str, Any]], key: str = "setting") -> dict[str, Any] | None:
    """Paired tests between settings (see :mod:`fmnist_pl.analysis.stats`) from the test predictions
    saved in ``folder``."""
    import numpy as np

    done = [r for r in runs if finished(r)]
    outcomes = test_outcomes(folder, done)
    correct = {
        name: np.stack([outcomes[r["run"]] for r in sorted(group, key=lambda g: g["seed"])])
        for name, group in group_runs(done, key).items()
    }
    if len(correct) < 2 or len({c.shape[0] for c in correct.values()}) != 1:
        return None  # nothing to compare, or unequal seeds (an unfinished run): no paired design
    return stats.compare_optimizers(correct)


def overfits(history: list[dict[str, float]]) -> bool:
    """A sustained rise: the last :data:`OVERFIT_PATIENCE` epochs all above the minimum validation loss
    by more than :data:`OVERFIT_TOLERANCE` (relative)."""
    val = [row["val_loss"] for row in history]
    if len(val) <= OVERFIT_PATIENCE:
        return False
    best = min(range(len(val)), key=val.__getitem__)
    tail = val[-OVERFIT_PATIENCE:]
    return best < len(val) - OVERFIT_PATIENCE and all(v > val[best] * (1 + OVERFIT_TOLERANCE) for v in tail)


def observations(run: dict[str, Any]) -> list[str]:
    """Plain-language facts about one run, derived from its history (never hard-coded)."""
    history = run["history"]
    name = run["run"]
    if run["status"] == "diverged":
        return [
            f"{name} diverged at epoch {run['diverged_epoch']} (loss not finite or above 1e3); "
            "it was stopped and is left out of the ranking."
        ]
    if not history:
        return []
    val = [row["val_loss"] for row in history]
    best_i = min(range(len(val)), key=val.__getitem__)
    best_epoch, last = history[best_i]["epoch"], history[-1]
    if overfits(history):
        note = (
            f"{name} overfits: validation loss was lowest at epoch {best_epoch} ({val[best_i]:.4f}) and stayed "
            f"above it for the last {OVERFIT_PATIENCE} epochs, ending at {val[-1]:.4f} (epoch {last['epoch']})."
        )
    elif best_i == len(val) - 1:
        note = (
            f"{name} does not overfit within {last['epoch']} epochs: validation loss is lowest at the last "
            f"epoch ({val[-1]:.4f})."
        )
    else:
        note = (
            f"{name}: validation loss was lowest at epoch {best_epoch} ({val[best_i]:.4f}) and is {val[-1]:.4f} "
            f"at epoch {last['epoch']}; no sustained rise over the last {OVERFIT_PATIENCE} epochs."
        )
    gap = last["train_acc"] - last["val_acc"]
    return [
        note,
        f"{name}: final train accuracy {last['train_acc']:.4f} vs validation {last['val_acc']:.4f} (gap {gap:+.4f}).",
    ]


def seed_observations(label: str, group: list[dict[str, Any]]) -> str:
    """One line for a setting's seeds: how many overfit, where they were best, the final gap."""
    epochs = [r["best_epoch"] for r in group if r["best_epoch"] is not None]
    gaps = [r["history"][-1]["train_acc"] - r["history"][-1]["val_acc"] for r in group if r["history"]]
    n_over = sum(overfits(r["history"]) for r in group)
    return (
        f"{label}: validation loss rose for the last {OVERFIT_PATIENCE} epochs after its minimum in {n_over} of "
        f"{len(group)} seeds; best epoch {sum(epochs) / len(epochs):.1f} on average ({min(epochs)}-{max(epochs)}); "
        f"final train-validation accuracy gap {sum(gaps) / len(gaps):+.4f} on average."
    )


def time_to_target(history: list[dict[str, float]], target: float | None) -> dict[str, Any]:
    """AlgoPerf-style time-to-result: the first epoch whose validation accuracy reaches ``target``."""
    elapsed = 0.0
    for row in history if target is not None else []:
        elapsed += row["seconds"]
        if row["val_acc"] >= target:
            return {"epoch": row["epoch"], "seconds": elapsed}
    return {"epoch": None, "seconds": None}


def summary_row(run: dict[str, Any], target: float | None = None) -> dict[str, Any]:
    """The summary table's row for one run."""
    history = run["history"]
    last = history[-1] if history else {}
    gap = last["train_acc"] - last["val_acc"] if last else math.nan
    timing, test = run["timing"], run["test"]
    return {
        "run": run["run"],
        "setting": run["setting"],
        "optimizer": run["optimizer"]["name"],
        "seed": run["seed"],
        "status": run["status"],
        "test_acc": test["last"]["accuracy"],
        "test_f1": test["last"]["macro_f1"],
        "best_test_acc": test["best"]["accuracy"],
        "best_test_f1": test["best"]["macro_f1"],
        "best_epoch": run["best_epoch"],
        "epochs": run["epochs"],
        "gap": gap if math.isfinite(gap) else None,  # as summary.json reads back (JSON has no NaN)
        "seconds_per_epoch": timing["seconds_per_epoch"],
        "fit_seconds": timing["fit_seconds"],
        "state_bytes": run["optimizer_state_bytes"],
        "target": time_to_target(history, target),
    }


def budget(group: list[dict[str, Any]], batch_size: int | None, time_budget: float | None = None) -> str:
    """One sentence on what a setting's runs spent: images, forward evaluations, seconds (seeds averaged).

    Puts a gradient run (one forward and one backward pass per image) and a population method
    (P forward passes per image, no backward) on the same axes of compute.
    """

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    first = group[0]
    hp, kind = first["optimizer"]["hparams"], first["optimizer"]["kind"]
    lasts = [g["history"][-1] for g in group if g["history"]]
    if not lasts:
        return f"{first['setting']}: no epoch recorded"
    epochs = mean([float(last["epoch"]) for last in lasts])
    if kind == "gradient-free":
        how = f"population {hp['popsize']} scoring batches of {hp['batch_size']} images"
    else:
        how = f"batch {batch_size}, one forward and one backward pass per image"
    spent = f"{epochs:g} epoch{'s' if epochs != 1 else ''}"
    if all(last["images"] is not None for last in lasts):
        images, evaluations = mean([last["images"] for last in lasts]), mean([last["evaluations"] for last in lasts])
        spent += f" = {images:,.0f} images seen, {evaluations:,.0f} forward evaluations"
    seconds = [g["timing"]["fit_seconds"] for g in group if g["timing"]["fit_seconds"] is not None]
    if seconds:
        shared = first["timing"]["lockstep_runs"]
        spent += f", in {mean(seconds):,.1f} s of training" + (
            f" shared by {shared} runs in lockstep" if shared > 1 else ""
        )
    limit = f" (time budget {time_budget:g} s)" if time_budget is not None else ""
    seeds = f" (mean of {len(group)} seeds)" if len(group) > 1 else ""
    return f"{first['setting']}: {how}; {spent}{limit}{seeds}."


def _settings(
    runs: list[dict[str, Any]], batch_size: int | None = None, time_budget: float | None = None
) -> list[dict[str, Any]]:
    """Per setting (finished seeds): accuracy, F1, best epoch and per-class F1 as mean ± std over seeds."""
    out = []
    for setting, group in group_runs([r for r in runs if finished(r)]).items():
        per_seed_f1 = [g["test"]["last"]["per_class"]["f1"] for g in group]
        out.append(
            {
                "setting": setting,
                "optimizer": group[0]["optimizer"]["name"],
                "n": len(group),
                "runs": [g["run"] for g in group],
                "test_acc": mean_std([g["test"]["last"]["accuracy"] for g in group]),
                "test_f1": mean_std([g["test"]["last"]["macro_f1"] for g in group]),
                "best_epoch": mean_std([g["best_epoch"] for g in group]),
                "per_class_f1": [mean_std(list(col)) for col in zip(*per_seed_f1)],
                "budget": budget(group, batch_size, time_budget),
            }
        )
    return out


def _architectures(folder: Path, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rankings and significance within each architecture: does the ranking hold across them?"""
    by_arch: dict[tuple[int, ...], list[dict[str, Any]]] = {}
    for r in runs:
        by_arch.setdefault(tuple(r["hidden"]), []).append(r)
    out = []
    for hidden, group in by_arch.items():
        sig = significance(folder, group, key="variant")
        out.append(
            {
                "name": arch_name(hidden),
                "hidden": list(hidden),
                "parameters": parameter_count(hidden),
                "ranking": rankings(group, key="variant")["accuracy"]["text"],
                "significance": sig["text"] if sig else None,
            }
        )
    return out


def summarize(loaded: dict[str, Any]) -> dict[str, Any]:
    """The summary of a loaded compare folder (see :func:`fmnist_pl.store.load_compare`)."""
    runs, folder = loaded["runs"], Path(loaded["folder"])
    setup = loaded["config"]["config"]
    target = setup.get("target")
    by_setting = group_runs([r for r in runs if finished(r)])
    multi_seed = any(len(g) > 1 for g in by_setting.values())
    observed = ([seed_observations(name, g) for name, g in by_setting.items()] if multi_seed else []) + [
        n for r in runs if not multi_seed or r["status"] == "diverged" for n in observations(r)
    ]
    return {
        "format": store.FORMAT_VERSION,
        "rows": [summary_row(r, target) for r in runs],
        "settings": _settings(runs, setup.get("batch_size"), setup.get("time_budget")),
        "rankings": rankings(runs),
        "significance": significance(folder, runs),
        "architectures": _architectures(folder, runs) if len({tuple(r["hidden"]) for r in runs}) > 1 else [],
        "observations": observed,
        "run_observations": {r["run"]: observations(r) for r in runs} if multi_seed else {},
        "multi_seed": multi_seed,
        "target": target,
        "missing": loaded["missing"],
    }


def write_summary(folder: Path, loaded: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compute the summary of ``folder`` from its results (``loaded``, if already read) and write
    ``summary.json``, with the runs and history tables beside it (``runs.csv``, ``history.csv``:
    :mod:`fmnist_pl.store.tables`); returns the summary."""
    folder = Path(folder)
    loaded = loaded if loaded is not None else store.load_compare(folder)
    summary = summarize(loaded)
    try:
        store.write_files(
            [*store.table_files(folder, loaded), (folder / store.SUMMARY_FILE, store.json_bytes(summary))]
        )
    except IsADirectoryError as exc:
        raise store.ResultsError(in_the_way(Path(exc.filename2 or exc.filename), folder)) from None
    return summary
