"""A tuning-aware comparison of optimizers: what the best of k trials is worth, as plain data.

An optimizer that needs 50 trials to shine and one that is good out of the box are different
tools; comparing each at its best trial hides that (Sivaprasad et al. 2020; Schmidt et al. 2021).
The expected best validation accuracy of k trials drawn at random from a method's K observed
trials (Dodge et al. 2019, "Show Your Work") answers "which optimizer should I pick if I can
afford k trials?", for every k at once.

Two choices are fixed here and documented once:

* Replacement. Dodge et al. 2019 define the curve through the empirical CDF, that is k draws
  *with* replacement from the K trials; the report uses it (``replacement=True``, the default).
  It is defined for any k and stays below the observed best at k = K. The draw *without*
  replacement is the unbiased estimator for k <= K (it reaches the observed best exactly at
  k = K) but has the higher variance (Dodge et al. 2021); both give the mean at k = 1.
* Diverged trials. A NaN (or any non-finite) accuracy counts as ``worst`` (default 0.0, the
  lowest possible accuracy): a diverged trial is part of the budget it cost, and it never wins.
  Dropping it would flatter a fragile optimizer; -inf would make every curve -inf.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, Callable, Mapping, NamedTuple, Sequence, TypeVar

import numpy as np
from scipy.special import gammaln

WORST = 0.0  # a diverged trial's accuracy: the lowest there is, so it never beats a trained one
MIN_TRIALS = 4  # PED-ANOVA compares the top trials (at least 2) with all: fewer than 4 leaves nothing to compare
T = TypeVar("T")


def _clean(values: Sequence[float], worst: float) -> np.ndarray:
    v = np.asarray(values, np.float64).ravel()
    if v.size == 0:
        raise ValueError("expected max needs at least one trial; got none")
    return np.where(np.isfinite(v), v, worst)


def _weights(K: int, ks: Sequence[int], replacement: bool) -> np.ndarray:
    """``[len(ks), K]``: P(the i-th smallest of K is the best of k draws); curves are sorted values @ this."""
    i = np.arange(1, K + 1, dtype=np.float64)
    rows = []
    for k in ks:
        if k < 1 or (not replacement and k > K):
            raise ValueError(f"k={k} is out of range: k must be 1..{K} without replacement, >= 1 with it")
        if replacement:  # P(max <= v_(i)) - P(max <= v_(i-1)) under the empirical CDF
            rows.append((i / K) ** k - ((i - 1) / K) ** k)
        else:  # [C(i,k) - C(i-1,k)] / C(K,k) = C(i-1,k-1) / C(K,k), in log space (K can be thousands)
            log_top = gammaln(i) - gammaln(k) - gammaln(np.maximum(i - k + 1, 1))
            log_all = gammaln(K + 1) - gammaln(k + 1) - gammaln(K - k + 1)
            rows.append(np.where(i >= k, np.exp(log_top - log_all), 0.0))
    return np.array(rows).reshape(len(ks), K)


def expected_max(values: Sequence[float], k: int, replacement: bool = True, worst: float = WORST) -> float:
    """Expected best of ``k`` trials drawn from the observed ones (Dodge et al.'s closed form; ties need nothing)."""
    v = np.sort(_clean(values, worst))
    return float(_weights(v.size, [k], replacement)[0] @ v)


def expected_max_curve(
    values: Sequence[float], ks: Sequence[int] | None = None, replacement: bool = True, worst: float = WORST
) -> list[float]:
    """:func:`expected_max` for each k in ``ks`` (default 1..K): one matrix product, not K sorts."""
    v = np.sort(_clean(values, worst))
    ks = range(1, v.size + 1) if ks is None else ks
    return [float(x) for x in _weights(v.size, ks, replacement) @ v]


@dataclass(frozen=True)
class Band:
    """A bootstrap percentile band around an expected-max curve: how much another K trials could move it."""

    ks: list[int]
    lower: list[float]
    upper: list[float]
    level: float
    draws: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_max_band(
    values: Sequence[float],
    ks: Sequence[int],
    draws: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    replacement: bool = True,
    worst: float = WORST,
) -> Band:
    """Resample the K trials with replacement ``draws`` times and take the curve's percentile interval.

    Deterministic given ``seed``. It covers the luck of which K trials were run, not a bias of the
    estimator: a resample holds fewer distinct values, so the band leans low at large k.
    """
    v = _clean(values, worst)
    resamples = np.sort(v[np.random.default_rng(seed).integers(0, v.size, (draws, v.size))], axis=1)
    curves = resamples @ _weights(v.size, ks, replacement).T  # [draws, len(ks)]
    lower, upper = np.quantile(curves, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return Band([int(k) for k in ks], [float(x) for x in lower], [float(x) for x in upper], level, draws)


def compute_axis(ks: Sequence[int], per_trial_cost: Sequence[float]) -> list[float]:
    """The cost of k trials (model-epochs or seconds) for each k: k x the mean trial cost.

    The curve is an expectation over which k trials were drawn, so its axis is too: by linearity
    the expected cost of k random trials is k x the mean, with or without replacement. It is not
    what the first k trials of the actual run cost. Non-finite costs (unrecorded) are left out.
    """
    costs = np.asarray(per_trial_cost, np.float64)
    costs = costs[np.isfinite(costs)]
    if costs.size == 0:
        raise ValueError("compute_axis needs at least one finite trial cost; got none")
    mean = float(costs.mean())
    return [k * mean for k in ks]


class Ranked(NamedTuple):
    """One method at a budget; ``capped``: it has fewer than k trials, so its value is the one at its own K."""

    method: str
    value: float
    capped: bool = False


def rank_at(curves: Mapping[str, Sequence[float]], k: int) -> list[Ranked]:
    """Methods by expected max at ``k`` (curves indexed k = 1..K), best first; ties by name, so the order is stable."""
    ranked = [Ranked(name, float(c[min(k, len(c)) - 1]), len(c) < k) for name, c in curves.items()]
    return sorted(ranked, key=lambda r: (-r.value, r.method))


def _swaps(at_a: Sequence[Ranked], at_b: Sequence[Ranked]) -> list[dict[str, str]]:
    """Strict swaps from ranking ``at_a`` to ``at_b``: A ahead of B in the first, B ahead of A in the second."""
    lo = {r.method: r.value for r in at_a}
    hi = {r.method: r.value for r in at_b}
    return [
        {"overtaker": b, "overtaken": a}
        for a, b in combinations([r.method for r in at_a], 2)  # a is ahead of (or tied with) b in at_a
        if lo[a] > lo[b] and hi[b] > hi[a]
    ]


def ranking_flips(curves: Mapping[str, Sequence[float]], ks: Sequence[int]) -> dict[str, Any]:
    """Does the ranking at the smallest k differ from the one at the largest, and which pairs swap?
    And between each shown budget and the next (``steps``), so that a swap at a medium budget that
    the full budget undoes is not hidden.

    A swap is strict: A ahead of B at the small budget and B ahead of A at the large one (an exact
    tie at either end is no swap). ``swaps`` lists ``{"overtaker", "overtaken"}``, the data of a
    sentence like "between k=1 and k=50 adam overtakes sgd".
    """
    shown = sorted({int(k) for k in ks})
    small, large = shown[0], shown[-1]
    ranked = {k: rank_at(curves, k) for k in shown}
    swaps = _swaps(ranked[small], ranked[large])
    steps = [{"k_from": a, "k_to": b, "swaps": _swaps(ranked[a], ranked[b])} for a, b in zip(shown, shown[1:])]
    steps = [step for step in steps if step["swaps"]]
    return {
        "k_small": small,
        "k_large": large,
        "order_small": [r.method for r in ranked[small]],
        "order_large": [r.method for r in ranked[large]],
        "flipped": bool(swaps),
        "swaps": swaps,
        "steps": steps,
        "capped": sorted({r.method for k in (small, large) for r in ranked[k] if r.capped}),
    }


def tunability(
    values: Sequence[float], within: Sequence[float] = (0.01, 0.05), worst: float = WORST
) -> dict[float, float]:
    """Share of all trials within each relative tolerance of the best (>= best x (1 - tol)).

    A high share means the method is forgiving: most of the search space is nearly as good as
    its best. Diverged trials count in the denominator and are never within.
    """
    v = _clean(values, worst)
    best = float(v.max())
    return {float(tol): float(np.mean(v >= best * (1 - tol))) for tol in within}


@dataclass(frozen=True)
class Importance:
    """Hyperparameter importances (summing to 1), or none and the reason why."""

    importances: dict[str, float]
    reason: str | None
    trials: int
    method: str = "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def importance(
    trials: Sequence[T],
    params_of: Callable[[T], Mapping[str, Any]],
    value_of: Callable[[T], float | None],
    space_bounds: Mapping[str, Any],
    quantile: float = 0.1,
    worst: float = WORST,
) -> Importance:
    """Which hyperparameters set the top ``quantile`` of trials apart, by Optuna's PED-ANOVA.

    PED-ANOVA is pure numpy (fANOVA and MDI need scikit-learn). ``space_bounds[name]``: an Optuna
    distribution, or ``(low, high)`` / ``(low, high, log)`` for a float. Trials without a value
    (unfinished) or without every parameter are left out; diverged ones count as ``worst``. The
    in-memory study is built on the storage directly, so nothing is logged.
    """
    import optuna
    from optuna.distributions import BaseDistribution, FloatDistribution
    from optuna.importance import PedAnovaImportanceEvaluator

    dists = {
        name: b if isinstance(b, BaseDistribution) else FloatDistribution(b[0], b[1], log=len(b) > 2 and bool(b[2]))
        for name, b in space_bounds.items()
    }
    rows, complete = [], 0
    for trial in trials:
        params, value = params_of(trial), value_of(trial)
        if value is None or any(name not in params for name in dists):
            continue
        complete += math.isfinite(value)
        rows.append(({name: params[name] for name in dists}, value if math.isfinite(value) else worst))
    if complete < MIN_TRIALS:
        reason = (
            f"{complete} complete trials with all of {', '.join(sorted(dists))}; importance needs at least {MIN_TRIALS}"
        )
        return Importance({}, reason, complete)
    varying = [name for name in dists if len({repr(p[name]) for p, _ in rows}) > 1]
    if len(varying) < 2:
        only = f"only {varying[0]} varies" if varying else "no hyperparameter varies"
        return Importance({}, f"{only}: nothing to compare it with", complete)
    study = optuna.create_study(direction="maximize")  # in memory; PED-ANOVA reads "better" from the direction
    study.add_trials([optuna.trial.create_trial(params=p, distributions=dists, value=v) for p, v in rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # PED-ANOVA is marked experimental
        raw = PedAnovaImportanceEvaluator(target_quantile=quantile).evaluate(study, params=varying)
    total = sum(raw.values())
    if total <= 0:
        return Importance({}, "no hyperparameter sets the top trials apart (all importances are 0)", complete)
    ordered = sorted(raw.items(), key=lambda kv: -kv[1])
    return Importance({name: float(x / total) for name, x in ordered}, None, complete)


# ---------------------------------------------------------------------------- a tune's summary
BUDGET_KS = (1, 4)  # the ranking is shown at these numbers of trials and at K (small, medium, full)
NEAR_BEST = (0.01, 0.05)


@dataclass(frozen=True)
class MethodTrials:
    """One method's trials as plain rows (number, run, params, hparams, value, status), its space
    (:class:`fmnist_pl.optim.spaces.Space`) and Optuna distributions, and its defaults' value."""

    name: str
    trials: list[dict[str, Any]]
    space: Any
    distributions: Mapping[str, Any]
    defaults: float | None = None


def summarize(methods: Mapping[str, MethodTrials], setup: Mapping[str, Any], ks: Sequence[int] = ()) -> dict[str, Any]:
    """What the report and ``tuning.json`` show: per method the expected-max curve over k = 1..K with its
    band, the compute axis (the trials' mean ``model_epochs``), the chosen trial (the best *complete*
    one: a pruned trial never trained to the end) and whether it lies at a bound of its space,
    tunability and importance; then the ranking at ``ks`` trials (default: 1, 4 and all). A pruned
    trial enters the curve at its last rung's value. Methods with several independent studies also get
    AlgoPerf's score (:func:`study_score`)."""
    from fmnist_pl.optim import spaces

    out: dict[str, Any] = {}
    for name, m in methods.items():
        values = [math.nan if t["value"] is None else float(t["value"]) for t in m.trials]
        trial_ks = list(range(1, len(values) + 1))
        complete = [t for t in m.trials if t["value"] is not None and t["status"] == "complete"]
        best = max(complete, key=lambda t: (t["value"], -t["number"])) if complete else None
        out[name] = {
            "trials": m.trials,
            "values": values,
            "ks": trial_ks,
            "curve": expected_max_curve(values),
            # the unbiased estimator (k draws without replacement), which reaches the observed best at K
            "curve_without_replacement": expected_max_curve(values, replacement=False),
            "band": expected_max_band(values, trial_ks).to_dict(),
            "model_epochs": compute_axis(trial_ks, [t.get("model_epochs", math.nan) for t in m.trials]),
            "seconds": _seconds_axis(trial_ks, m.trials),
            "defaults": m.defaults,
            "chosen": None
            if best is None
            else {
                "number": best["number"],
                "run": best["run"],
                "value": best["value"],
                "params": best["params"],
                "hparams": best["hparams"],
                "at_bound": spaces.at_bound(m.space, best["params"]),
            },
            "space": spaces.describe(m.space),
            "source": m.space.source,
            "tunability": {f"{tol:g}": share for tol, share in tunability(values, NEAR_BEST).items()},
            "importance": importance(m.trials, lambda t: t["params"], lambda t: t["value"], m.distributions).to_dict(),
            "diverged": sum(t["status"] not in ("complete", "pruned") for t in m.trials),
            "pruned": sum(t["status"] == "pruned" for t in m.trials),
            "studies": study_score(m.trials),
        }
    curves = {name: row["curve"] for name, row in out.items()}
    K = min(len(c) for c in curves.values())
    shown = sorted({min(k, K) for k in (ks or BUDGET_KS)} | {K})
    rankings = [{"k": k, "order": [r._asdict() for r in rank_at(curves, k)]} for k in shown]
    scored = {name: row["studies"]["score"] for name, row in out.items() if row["studies"] is not None}
    seconds = [row["seconds"][0] for row in out.values() if row["seconds"]]
    return {
        "setup": dict(setup),
        "methods": out,
        "rankings": rankings,
        "flips": ranking_flips(curves, shown),
        "score_ranking": sorted(scored, key=lambda n: (scored[n] is None, scored[n] or 0.0, n)) if scored else None,
        # the mean model-epochs and seconds of one trial, over every method: the report's second and third axes
        "trial_cost": float(np.mean([row["model_epochs"][0] for row in out.values()])),
        "trial_seconds": float(np.mean(seconds)) if seconds else None,
        "replacement": True,
    }


def _seconds_axis(ks: Sequence[int], trials: Sequence[Mapping[str, Any]]) -> list[float] | None:
    """The seconds of k trials (each trial's share of its lockstep groups' wall time); None where no trial
    recorded any (a ``tuning.json`` of an earlier version)."""
    costs = [math.nan if t.get("seconds") is None else float(t["seconds"]) for t in trials]
    return compute_axis(ks, costs) if any(math.isfinite(c) for c in costs) else None


def study_score(trials: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """AlgoPerf's external-tuning score of one method with several independent studies (``study`` of each
    trial): in each study, the fastest of its complete trials to reach the validation target (its
    training images); the score is the median over the studies (None - not reached - when at least
    half of the studies had no trial reach it). None for a method with one study."""
    by_study: dict[int, list[Mapping[str, Any]]] = {}
    for t in trials:
        by_study.setdefault(int(t.get("study", 0)), []).append(t)
    if len(by_study) < 2:
        return None
    rows = []
    for index, group in sorted(by_study.items()):
        reached = [t for t in group if t["status"] == "complete" and t.get("images_to_target") is not None]
        fastest = min(reached, key=lambda t: (t["images_to_target"], t["number"])) if reached else None
        rows.append(
            {
                "study": index,
                "fastest": fastest["run"] if fastest else None,
                "images_to_target": fastest["images_to_target"] if fastest else None,
            }
        )
    times = sorted(math.inf if r["images_to_target"] is None else float(r["images_to_target"]) for r in rows)
    median = float(np.median(times))
    return {"per_study": rows, "score": None if math.isinf(median) else median}


def show(value: Any) -> str:
    """A parameter's value for people: numbers to 3 digits, choices as they are."""
    return f"{value:.3g}" if isinstance(value, (int, float)) else str(value)


def flip_sentence(flips: Mapping[str, Any]) -> str:
    """One sentence: does the ranking change between the smallest and the full budget, and how; and a
    swap between two neighbouring budgets that the ends do not show (one at k = 4 undone by k = K)."""
    small, large = flips["k_small"], flips["k_large"]

    def said(swaps: Sequence[Mapping[str, str]]) -> str:
        return "; ".join(f"{s['overtaker']} overtakes {s['overtaken']}" for s in swaps)

    if not flips["flipped"]:
        sentence = f"The ranking is the same at k = {small} and k = {large} trials: {' > '.join(flips['order_large'])}"
    else:
        sentence = (
            f"The ranking changes between k = {small} and k = {large} trials: {said(flips['swaps'])} "
            f"({' > '.join(flips['order_small'])} at k = {small}, {' > '.join(flips['order_large'])} at k = {large})"
        )
    ends = {(s["overtaker"], s["overtaken"]) for s in flips["swaps"]}
    # A step's swap that the ends already say is not repeated; steps of an older tuning.json: none.
    hidden = [
        (step, [s for s in step["swaps"] if (s["overtaker"], s["overtaken"]) not in ends])
        for step in flips.get("steps", ())
    ]
    between = [f"between k = {st['k_from']} and k = {st['k_to']} {said(sw)}" for st, sw in hidden if sw]
    if between:
        sentence += "; on the way, " + ", and ".join(between)
    return sentence + "."


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The terminal's view of a tune: each method's curve at the shown budgets, its choice, and the sentence."""
    lines = []
    ks = [r["k"] for r in summary["rankings"]]
    for name, m in summary["methods"].items():
        at = ", ".join(f"k={k} {m['curve'][k - 1]:.4f}" for k in ks)
        chosen = m["chosen"]
        choice = (
            "no trial finished"
            if chosen is None
            else f"chosen {chosen['run']} (val {chosen['value']:.4f}: "
            + ", ".join(f"{k}={show(v)}" for k, v in chosen["params"].items())
            + ")"
        )
        defaults = f", defaults {m['defaults']:.4f}" if m["defaults"] is not None else ""
        lines.append(f"{name}: expected best val acc {at}{defaults}; {choice}")
        if chosen and chosen["at_bound"]:
            lines.append(
                f"  {name}: {', '.join(chosen['at_bound'])} chosen at a bound of the space: widen it with --space"
            )
    for r in summary["rankings"]:
        lines.append(f"ranking at k={r['k']}: " + " > ".join(f"{o['method']} {o['value']:.4f}" for o in r["order"]))
    lines.append(flip_sentence(summary["flips"]))
    if summary.get("score_ranking"):
        scores = {n: summary["methods"][n]["studies"]["score"] for n in summary["score_ranking"]}
        lines.append(
            "AlgoPerf score (median over studies of the fastest trial's images to the validation target): "
            + ", ".join(f"{n} {'not reached' if v is None else f'{v:,.0f}'}" for n, v in scores.items())
        )
    return lines


def trials_csv(summary: Mapping[str, Any]) -> str:
    """Every trial as one tidy row: method, number, status, its validation curve in brief (the value it
    was judged by, its curve's best epoch and last accuracy, its whole epochs, the model-epochs and
    seconds it cost, when it reached the target), then each parameter. A column a ``tuning.json`` of an earlier version lacks is empty."""
    import csv
    import io

    params = sorted({p for m in summary["methods"].values() for t in m["trials"] for p in t["params"]})
    curve = (
        "best_acc_epoch",
        "last_val_acc",
        "epochs",
        "model_epochs",
        "seconds",
        "epochs_to_target",
        "images_to_target",
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "study", "trial", "run", "status", "val_acc", *curve, *params])

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        return f"{value:.6f}" if isinstance(value, float) and not value.is_integer() else value

    for name, m in summary["methods"].items():
        for t in m["trials"]:
            value = "" if t["value"] is None else f"{t['value']:.6f}"
            writer.writerow(
                [name, t.get("study", 0), t["number"], t["run"], t["status"], value]
                + [cell(t.get(c)) for c in curve]
                + [t["params"].get(p, "") for p in params]
            )
    return buffer.getvalue()
