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
from pathlib import Path
from typing import Any

from fmnist_pl import store
from fmnist_pl.analysis import stats
from fmnist_pl.analysis.runs import best_val_acc, finished, group_runs
from fmnist_pl.analysis.targets import time_to_target, time_to_targets
from fmnist_pl.architecture import arch_name, parameter_count
from fmnist_pl.errors import resume_command
from fmnist_pl.store.load import in_the_way

OVERFIT_PATIENCE = 3  # "overfits": validation loss above its minimum for this many final epochs...
OVERFIT_TOLERANCE = 0.01  # ...each by more than this (relative); a one-epoch uptick is noise, not overfitting


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


INTERVAL = 0.95  # every mean in the ranking carries a 95 % interval


def t_interval(values: list[float], confidence: float = INTERVAL) -> tuple[float, float]:
    """Student's t interval of the mean over seeds (``scipy.stats.t``): where the mean of another set
    of seeds would likely fall, the question a ranking of optimizers asks."""
    from scipy import stats as sps

    n, mean = len(values), statistics.fmean(values)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)
    return mean - half, mean + half


def wilson_interval(accuracy: float, images: int, confidence: float = INTERVAL) -> tuple[float, float]:
    """Wilson score interval of one network's accuracy over ``images`` test images.

    Written out here with scipy's normal quantile (statsmodels' ``proportion_confint(method="wilson")``
    is the same formula, and statsmodels is not a dependency); unlike the normal approximation it
    stays inside [0, 1] near 100 %. It covers the sampling of test images only, not the seed.
    """
    from scipy import stats as sps

    z = float(sps.norm.ppf(0.5 + confidence / 2))
    shrink = 1 + z * z / images
    centre = (accuracy + z * z / (2 * images)) / shrink
    half = z * math.sqrt(accuracy * (1 - accuracy) / images + z * z / (4 * images * images)) / shrink
    return max(0.0, centre - half), min(1.0, centre + half)


def _entry(name: str, values: list[float], images: int | None) -> dict[str, Any]:
    """A ranked setting: its mean over seeds and the mean's 95 % interval (t over seeds with two or
    more; Wilson over the test images with one, where ``images`` is known; else none)."""
    mean = statistics.fmean(values)
    low = high = None
    if len(values) > 1:
        low, high = t_interval(values)
        how = f"95% t-interval of the mean over {len(values)} seeds"
    elif images:
        low, high = wilson_interval(mean, images)
        how = f"95% Wilson interval over {images:,} test images"
    else:
        how = "no interval with one seed"
    return {"name": name, "mean": mean, "low": low, "high": high, "seeds": len(values), "interval": how}


def ranking(
    values: dict[str, list[float] | None],
    groups: list[list[str]] | None = None,
    untested: str | None = None,
    images: dict[str, int | None] | None = None,
) -> dict[str, Any]:
    """Rank settings by their mean over seeds, highest first, each with a 95 % interval.

    ``values``: per setting its per-seed values (None: left out, a diverged or unfinished seed).
    ``groups``: the significance groups of :func:`fmnist_pl.analysis.stats.compare_optimizers`
    (best first); the text is then the tests' verdict, ``"adam ~ momentum > sgd"`` ("~": not
    distinguishable from the group's leader, ">": significantly better). Without them (no test,
    or ``untested`` says why none could be made) the text is the order of the means alone,
    ``"adam, momentum, sgd"``: nothing is called equal because it rounds the same, nor better
    because its mean is higher. ``images``: each setting's test images, for one seed's Wilson interval.
    """
    finite = {k: v for k, v in values.items() if v and all(x is not None and math.isfinite(x) for x in v)}
    ordered = sorted(finite, key=lambda k: -statistics.fmean(finite[k]))
    if groups is not None:
        # The tests' order (the same means, from the saved predictions), restricted to what is ranked.
        groups = [kept for g in groups if (kept := [n for n in g if n in finite])]
        ordered = [n for g in groups for n in g] + [n for n in ordered if not any(n in g for g in groups)]
        text = " > ".join(" ~ ".join(g) for g in groups)
    else:
        text = ", ".join(ordered)
    images = images or {}
    return {
        "groups": groups or [],
        "text": text,
        "tested": groups is not None,
        "untested": None if groups is not None else untested,
        "entries": [_entry(n, finite[n], images.get(n)) for n in ordered],
        "values": {n: statistics.fmean(finite[n]) for n in ordered},
        "left_out": [k for k in values if k not in finite],
    }


def _test_images(group: list[dict[str, Any]]) -> int | None:
    """The test images a setting was scored on (its classification report's support), if recorded."""
    support = group[0]["test"]["last"].get("support")
    return sum(support) if support else None


def rankings(
    runs: list[dict[str, Any]],
    key: str = "setting",
    tests: dict[str, Any] | None = None,
    untested: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Rankings by test accuracy and by macro-F1 (last epoch, as the reference reported).

    Runs that differ only by seed are one entry, valued at their mean; a setting with a
    diverged or unfinished seed is left out (its mean would not be comparable). The verdict
    notation is the accuracy tests' (``tests``: :func:`significance`, or ``untested``: why there
    are none, :func:`why_untested`); macro-F1 is ranked by its means only, as no test is made on it.
    """
    per_setting = group_runs(runs, key)
    images = {setting: _test_images(group) for setting, group in per_setting.items()}
    out = {}
    for metric, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
        values: dict[str, list[float] | None] = {}
        for setting, group in per_setting.items():
            ok = all(finished(r) for r in group)
            values[setting] = [r["test"]["last"][metric] for r in group] if ok else None
        if metric == "accuracy":
            out[label] = ranking(values, tests["groups"] if tests else None, untested, images)
        else:
            out[label] = ranking(values, None, "no test is made on macro-F1 (the verdicts are on accuracy)")
    return out


TUNING_NOTE = (
    "a tuning grid: ranked by best validation accuracy, the selection criterion, with no test; its test "
    "numbers are not for selection (choosing by them would tune on the test set)"
)


def validation_rankings(runs: list[dict[str, Any]], key: str = "setting") -> dict[str, dict[str, Any]]:
    """A tuning grid's ranking: by each setting's best validation accuracy (mean over seeds), as the
    sweep selects, never by test accuracy; no significance test (the test set plays no part)."""
    values: dict[str, list[float] | None] = {}
    for setting, group in group_runs(runs, key).items():
        ok = all(finished(r) for r in group)
        values[setting] = [best_val_acc(r) for r in group] if ok else None
    ranked = ranking(values, None, TUNING_NOTE)
    no_f1 = ranking(dict.fromkeys(values), None, TUNING_NOTE)  # the report's macro-F1 column is test data: left empty
    return {"accuracy": ranked | {"by": "best validation accuracy"}, "macro-F1": no_f1}


def is_tuning_grid(loaded: dict[str, Any]) -> bool:
    """A sweep's grid folder (its config has ``lrs``, or its ``sweep`` entry says the tuning stage), or a
    tune's round of trials (its config has ``trials``)."""
    config = loaded["config"]
    entries = (config.get("sweep") or {}).values()
    if config["config"].get("lrs") or config["config"].get("trials"):
        return True
    return any(isinstance(e, dict) and e.get("stage") == "tuning" for e in entries)


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


def _ranked(runs: list[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    """The settings a ranking ranks: those whose every seed finished (as :func:`rankings` values them)."""
    return {name: group for name, group in group_runs(runs, key).items() if all(finished(r) for r in group)}


def why_untested(runs: list[dict[str, Any]], key: str = "setting") -> str | None:
    """Why the ranked settings cannot be tested against each other (None: they can): fewer than two,
    or seeds that differ between them (each test pairs seed k of one setting with seed k of the other)."""
    ranked = _ranked(runs, key)
    if len(ranked) < 2:
        return "one setting: nothing to compare" if ranked else "no finished setting"
    seeds = {name: sorted(r["seed"] for r in group) for name, group in ranked.items()}
    if len({tuple(s) for s in seeds.values()}) > 1:
        shown = ", ".join(f"{name} {len(s)} ({', '.join(map(str, s))})" for name, s in seeds.items())
        return (
            f"the settings have different seeds ({shown}), and each test pairs seed k of one setting with "
            "seed k of another: finish the missing runs (fmnist-pl compare --resume)"
        )
    return None


def significance(folder: Path, runs: list[dict[str, Any]], key: str = "setting") -> dict[str, Any] | None:
    """Paired tests between the ranked settings (see :mod:`fmnist_pl.analysis.stats`) from the test
    predictions saved in ``folder``; None where :func:`why_untested` says why there can be none."""
    import numpy as np

    if why_untested(runs, key) is not None:
        return None
    ranked = _ranked(runs, key)
    outcomes = test_outcomes(folder, [r for group in ranked.values() for r in group])
    correct = {
        name: np.stack([outcomes[r["run"]] for r in sorted(group, key=lambda g: g["seed"])])
        for name, group in ranked.items()
    }
    return stats.compare_optimizers(correct)


def interval_text(low: float | None, high: float | None, signed: bool = False) -> str:
    """``[0.8473, 0.8727]`` (``[-0.0123, +0.0223]`` for a difference); a dash where there is none."""
    if low is None or high is None:
        return "–"
    spec = "+.4f" if signed else ".4f"
    return f"[{low:{spec}}, {high:{spec}}]"


def ranking_note(ranked: dict[str, Any], tests: dict[str, Any] | None) -> str:
    """One sentence on what the ranking's notation means, or why it has none: the report's and the terminal's."""
    if ranked["tested"] and tests is not None:
        return (
            '"~": not distinguishable from the group leader, ">": significantly better '
            f"({tests['test']}, alpha {tests['alpha']:g}); the unit is the {tests['unit']}"
        )
    reason = ranked["untested"] or "no test was made"
    return f"not tested ({reason}): the order of the means alone, no verdict"


def intervals_note(ranked: dict[str, Any]) -> str:
    """Which intervals stand beside the means (a t-interval over seeds, a Wilson interval over test
    images), and what one seed's cover."""
    kinds = list(dict.fromkeys(e["interval"] for e in ranked["entries"]))
    note = "; ".join(kinds) or "no interval"
    if any("Wilson" in k for k in kinds):
        note += " (the sampling of the test images only: another seed may land outside it)"
    return note


def p_text(p: float) -> str:
    """A p-value in two significant digits; one that underflowed to 0 is shown as the bound it is."""
    return f"{p:.2g}" if p > 0 else "< 1e-300"


def pair_view(pair: dict[str, Any]) -> dict[str, str | None]:
    """One pair of :func:`fmnist_pl.analysis.stats.compare_optimizers` in words: the difference, its 95 %
    interval, the test, p and Holm's p, the verdict, and with seeds the per-seed record and, for a pair
    not distinguishable, the seeds its observed spread would need. Shared by the report and the terminal."""
    record = power = None
    if "mcnemar" in pair:
        m = pair["mcnemar"]
        test = f"McNemar exact ({m['only_a']:,} images only {pair['a']} got right, {m['only_b']:,} only {pair['b']})"
    else:
        test = f"paired t over {pair['seeds']} seeds (df {pair['df']:.1f})"
        per_seed = ", ".join(f"{d:+.4f}" for d in pair["per_seed"])
        ties = pair["seeds"] - pair["wins"] - pair["losses"]
        record = f"{pair['a']} better in {pair['wins']} of {pair['seeds']} seeds, worse in {pair['losses']}" + (
            f", even in {ties}" if ties else ""
        )
        record += f" ({per_seed})"
        need = pair.get("seeds_for_power")
        if not pair["significant"] and need:
            # The count is a normal approximation: at or below the seeds run, the t-test's few degrees
            # of freedom are what is short, not the spread.
            power = (
                f"the observed spread between seeds would need about {need} seeds to tell them apart (80% power)"
                if need > pair["seeds"]
                else f"more seeds needed: over {pair['seeds']} seeds the t-test has {pair['df']:.1f} degrees of freedom"
            )
    return {
        "pair": f"{pair['a']} vs {pair['b']}",
        # One seed: a bootstrap over the test images describes their noise (the test is McNemar's).
        "interval_kind": "bootstrap over the test images" if "mcnemar" in pair else "t over the seeds",
        "diff": f"{pair['diff']:+.4f}",
        "interval": interval_text(pair["ci_low"], pair["ci_high"], signed=True),
        "test": test,
        "p": p_text(pair["p_test"]),
        "p_holm": p_text(pair["p_adjusted"]),
        "verdict": pair["verdict"],
        "record": record,
        "power": power,
    }


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
    stops = [g.get("stopped_by") for g in group if g.get("spent")]
    if stops:
        kinds = sorted({k for k in stops if k})
        limit = f"; stopped by its {' / '.join(kinds)} budget" if kinds else "; its epochs ended it before the budget"
        partial = [g["history"][-1].get("fraction") for g in group if g["history"] and g["history"][-1].get("fraction")]
        if partial:
            limit += f" {mean(partial):.0%} into its last epoch"
    seeds = f" (mean of {len(group)} seeds)" if len(group) > 1 else ""
    return f"{first['setting']}: {how}; {spent}{limit}{seeds}."


def budget_spread(runs: list[dict[str, Any]], budget_text: str | None) -> dict[str, Any] | None:
    """Under a budget: what the finished runs spent in each unit and how far apart they are (the
    largest over the smallest, minus one), so the report can show that the budget was equal where it
    is equal by construction and by how much it was not where the machine decides."""
    spent = [r["spent"] for r in runs if finished(r) and r.get("spent")]
    if not spent or budget_text is None:
        return None
    units = {}
    for unit in ("images", "evaluations", "seconds"):
        values = [float(s[unit]) for s in spent]
        low, high = min(values), max(values)
        units[unit] = {"min": low, "max": high, "apart": (high / low - 1) if low > 0 else None}
    clock = next((s.get("clock") for s in spent if s.get("clock")), None)
    turns = any(s.get("waited") is not None for s in spent)
    return {"budget": budget_text, "units": units, "clock": clock, "runs": len(spent), "turns": turns}


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
    """The ranking (with its tests) within each architecture: does it hold across them?"""
    by_arch: dict[tuple[int, ...], list[dict[str, Any]]] = {}
    for r in runs:
        by_arch.setdefault(tuple(r["hidden"]), []).append(r)
    out = []
    for hidden, group in by_arch.items():
        sig = significance(folder, group, key="variant")
        ranked = rankings(group, "variant", sig, why_untested(group, "variant"))["accuracy"]
        out.append(
            {
                "name": arch_name(hidden),
                "hidden": list(hidden),
                "parameters": parameter_count(hidden),
                "ranking": ranked["text"],
                "tested": ranked["tested"],
                "untested": ranked["untested"],
            }
        )
    return out


def summarize(loaded: dict[str, Any]) -> dict[str, Any]:
    """The summary of a loaded compare folder (see :func:`fmnist_pl.store.load_compare`)."""
    runs, folder = loaded["runs"], Path(loaded["folder"])
    setup = loaded["config"]["config"]
    target = setup.get("target")
    by_setting = group_runs([r for r in runs if finished(r)])
    tuning = is_tuning_grid(loaded)
    sig = None if tuning else significance(folder, runs)
    multi_seed = any(len(g) > 1 for g in by_setting.values())
    observed = ([seed_observations(name, g) for name, g in by_setting.items()] if multi_seed else []) + [
        n for r in runs if not multi_seed or r["status"] == "diverged" for n in observations(r)
    ]
    return {
        "format": store.FORMAT_VERSION,
        "rows": [summary_row(r, target) for r in runs],
        "settings": _settings(runs, setup.get("batch_size"), setup.get("time_budget")),
        "budget": budget_spread(
            runs,
            setup.get("budget") or (f"seconds={setup['time_budget']:g}" if setup.get("time_budget") else None),
        ),
        "targets": time_to_targets(runs, target),
        "rankings": validation_rankings(runs) if tuning else rankings(runs, tests=sig, untested=why_untested(runs)),
        "significance": sig,
        "architectures": _architectures(folder, runs) if len({tuple(r["hidden"]) for r in runs}) > 1 else [],
        "observations": observed,
        "run_observations": {r["run"]: observations(r) for r in runs} if multi_seed else {},
        "multi_seed": multi_seed,
        "target": target,
        "missing": loaded["missing"],
        # A tune's final comparison: the tuning it follows (tuning.json, kept in its config.json), so that
        # summary.json holds all that its report shows.
        "tuning": loaded["config"].get("tuning"),
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
