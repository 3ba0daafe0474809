import math

import numpy as np
import pytest

from fmnist_pl.analysis import tuning

# Ties (0.7 twice), a diverged trial (NaN -> 0.0) and an unsorted order.
VALUES = [0.5, 0.7, 0.7, 0.9, float("nan"), 0.6, 0.8]
CLEAN = np.array([0.5, 0.7, 0.7, 0.9, 0.0, 0.6, 0.8])


def _monte_carlo(values: np.ndarray, k: int, replacement: bool, n: int = 200_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    if replacement:
        idx = rng.integers(0, values.size, (n, k))
    else:  # k distinct trials: the first k of a random permutation
        idx = np.argsort(rng.random((n, values.size)), axis=1)[:, :k]
    best = values[idx].max(axis=1)
    return best.mean(), best.std() / math.sqrt(n)


@pytest.mark.parametrize("replacement", [True, False])
@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_closed_form_matches_monte_carlo(replacement, k):
    mc, se = _monte_carlo(CLEAN, k, replacement)
    closed = tuning.expected_max(VALUES, k, replacement=replacement)
    assert se < 1e-3  # the check below is tight, not a loose band
    assert closed == pytest.approx(mc, abs=5 * se + 1e-12)


def test_with_replacement_beyond_K_matches_monte_carlo():
    mc, se = _monte_carlo(CLEAN, 12, True)
    assert tuning.expected_max(VALUES, 12) == pytest.approx(mc, abs=5 * se)


def test_k1_is_the_mean_and_k_K_is_the_max_only_without_replacement():
    K = len(VALUES)
    for replacement in (True, False):
        assert tuning.expected_max(VALUES, 1, replacement) == pytest.approx(CLEAN.mean(), abs=1e-12)
    assert tuning.expected_max(VALUES, K, replacement=False) == pytest.approx(0.9, abs=1e-12)
    with_r = tuning.expected_max(VALUES, K, replacement=True)
    assert 0.8 < with_r < 0.9  # k draws with replacement can miss the best trial
    with pytest.raises(ValueError, match="k=8"):
        tuning.expected_max(VALUES, K + 1, replacement=False)


def test_worst_sets_what_a_diverged_trial_counts_as():
    assert tuning.expected_max([float("nan"), 0.9], 1) == pytest.approx(0.45)
    assert tuning.expected_max([float("nan"), 0.9], 1, worst=0.5) == pytest.approx(0.7)


@pytest.mark.parametrize("replacement", [True, False])
def test_curve_is_non_decreasing_and_stable_for_large_K(replacement):
    curve = tuning.expected_max_curve(VALUES, replacement=replacement)
    assert len(curve) == len(VALUES)
    assert all(b >= a - 1e-12 for a, b in zip(curve, curve[1:]))
    big = np.random.default_rng(3).beta(8, 2, 3000)
    ks = [1, 10, 100, 1000, 2999, 3000]
    long = tuning.expected_max_curve(big, ks, replacement=replacement)
    assert long[0] == pytest.approx(big.mean(), abs=1e-9)  # the weights sum to 1 in log space too
    assert all(b >= a for a, b in zip(long, long[1:]))
    assert long[-1] <= big.max() + 1e-12
    if not replacement:
        assert long[-1] == pytest.approx(big.max(), abs=1e-12)


def test_band_contains_the_curve_is_seeded_and_narrows_with_more_trials():
    rng = np.random.default_rng(7)
    few, many = rng.beta(8, 2, 20), rng.beta(8, 2, 400)
    ks = list(range(1, 21))
    band = tuning.expected_max_band(few, ks, draws=500, seed=1)
    curve = tuning.expected_max_curve(few, ks)
    assert all(lo <= c <= hi for lo, c, hi in zip(band.lower, curve, band.upper))
    assert all(hi - lo > 1e-3 for lo, hi in zip(band.lower, band.upper))
    assert band == tuning.expected_max_band(few, ks, draws=500, seed=1)
    assert band != tuning.expected_max_band(few, ks, draws=500, seed=2)
    wide = tuning.expected_max_band(few, [5], draws=500)
    narrow = tuning.expected_max_band(many, [5], draws=500)
    assert narrow.upper[0] - narrow.lower[0] < 0.5 * (wide.upper[0] - wide.lower[0])
    assert band.to_dict()["level"] == 0.95


def test_compute_axis_is_k_times_the_mean_finite_cost():
    assert tuning.compute_axis([1, 2, 4], [1.0, 3.0, float("nan")]) == [2.0, 4.0, 8.0]
    with pytest.raises(ValueError):
        tuning.compute_axis([1], [float("nan")])


# A: steady (high mean, low max); B: erratic (low mean, high max); C dominates A everywhere.
A = [0.80] * 10
B = [0.50] * 8 + [0.90, 0.95]
C = [0.85] * 10


def test_rank_at_orders_methods_and_flags_short_curves():
    curves = {"a": tuning.expected_max_curve(A), "b": tuning.expected_max_curve(B), "short": [0.1, 0.99]}
    assert [r.method for r in tuning.rank_at(curves, 1)] == ["a", "b", "short"]
    top = tuning.rank_at(curves, 10)
    assert [r.method for r in top] == ["short", "b", "a"]
    assert top[0] == ("short", 0.99, True) and not top[1].capped
    assert tuning.rank_at(curves, 1)[0].value == pytest.approx(0.80)


def test_ranking_flips_detects_an_overtake_and_not_a_dominance():
    curves = {"a": tuning.expected_max_curve(A), "b": tuning.expected_max_curve(B)}
    flips = tuning.ranking_flips(curves, [1, 5, 10])
    assert flips["flipped"] and (flips["k_small"], flips["k_large"]) == (1, 10)
    assert flips["order_small"] == ["a", "b"] and flips["order_large"] == ["b", "a"]
    assert flips["swaps"] == [{"overtaker": "b", "overtaken": "a"}]
    steady = tuning.ranking_flips({"a": tuning.expected_max_curve(A), "c": tuning.expected_max_curve(C)}, [1, 10])
    assert not steady["flipped"] and steady["swaps"] == [] and steady["order_small"] == steady["order_large"]


def test_a_swap_at_the_medium_budget_is_said_even_when_the_full_budget_undoes_it():
    # Curves given directly (k = 1..3): b overtakes a at k = 2 and falls behind again at k = 3.
    curves = {"a": [0.50, 0.60, 0.90], "b": [0.40, 0.70, 0.80]}
    flips = tuning.ranking_flips(curves, [1, 2, 3])
    assert not flips["flipped"] and flips["swaps"] == []
    assert flips["steps"] == [
        {"k_from": 1, "k_to": 2, "swaps": [{"overtaker": "b", "overtaken": "a"}]},
        {"k_from": 2, "k_to": 3, "swaps": [{"overtaker": "a", "overtaken": "b"}]},
    ]
    sentence = tuning.flip_sentence(flips)
    assert sentence.startswith("The ranking is the same at k = 1 and k = 3 trials: a > b; on the way,")
    assert "between k = 1 and k = 2 b overtakes a, and between k = 2 and k = 3 a overtakes b." in sentence
    # A swap the ends already name is not repeated; a steady ranking gets no "on the way".
    ends = tuning.ranking_flips({"a": [0.5, 0.6, 0.7], "b": [0.4, 0.7, 0.8]}, [1, 2, 3])
    assert ends["flipped"] and "on the way" not in tuning.flip_sentence(ends)
    assert tuning.flip_sentence(tuning.ranking_flips({"a": [0.5, 0.9], "b": [0.4, 0.8]}, [1, 2])) == (
        "The ranking is the same at k = 1 and k = 2 trials: a > b."
    )


def test_tunability_shares_by_hand():
    values = [1.0, 0.995, 0.98, 0.96, 0.9, float("nan")]
    # best 1.0: within 1 % means >= 0.99 (2 of 6); within 5 % means >= 0.95 (4 of 6); NaN never counts
    assert tuning.tunability(values) == pytest.approx({0.01: 2 / 6, 0.05: 4 / 6})
    assert tuning.tunability([0.5, 0.5], within=(0.0,)) == {0.0: 1.0}


def _trials(n, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": float(x), "y": float(y), "v": 0.9 - (x - 0.3) ** 2} for x, y in rng.random((n, 2))]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_importance_finds_the_parameter_that_drives_the_value(seed):
    trials = _trials(40, seed)
    trials[5]["v"] = float("nan")  # a diverged trial: counts as worst, does not break the study
    result = tuning.importance(
        trials, lambda t: t, lambda t: t["v"], {"x": (0.0, 1.0), "y": (1e-3, 1.0, True), "unused": (0.0, 1.0)}
    )
    # "unused" is missing from every trial, so no trial qualifies: bounds must name the parameters tried
    assert result.importances == {} and "0 complete trials with all of unused, x, y" in result.reason
    result = tuning.importance(trials, lambda t: t, lambda t: t["v"], {"x": (0.0, 1.0), "y": (0.0, 1.0)})
    assert result.reason is None and result.trials == 39
    assert list(result.importances) == ["x", "y"]
    assert result.importances["x"] > 0.7
    assert sum(result.importances.values()) == pytest.approx(1.0)


def test_importance_falls_back_with_a_reason():
    few = tuning.importance(_trials(3), lambda t: t, lambda t: t["v"], {"x": (0.0, 1.0), "y": (0.0, 1.0)})
    assert few.importances == {} and "3 complete" in few.reason
    fixed_y = [{**t, "y": 0.5} for t in _trials(20)]
    one = tuning.importance(fixed_y, lambda t: t, lambda t: t["v"], {"x": (0.0, 1.0), "y": (0.0, 1.0)})
    assert one.importances == {} and "only x varies" in one.reason
    assert one.to_dict()["trials"] == 20
