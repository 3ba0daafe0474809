import numpy as np
import pytest

from fmnist_pl.analysis import stats


def test_mcnemar_exact_known_values():
    # 10 discordant pairs split 9:1 -> two-sided exact p = 2 * P(X <= 1 | n=10) = 22/1024
    a = [True] * 9 + [False] * 1 + [True] * 50
    b = [False] * 9 + [True] * 1 + [True] * 50
    r = stats.mcnemar_exact(a, b)
    assert (r["only_a"], r["only_b"]) == (9, 1)
    assert r["p"] == pytest.approx(22 / 1024)
    assert stats.mcnemar_exact(a, a)["p"] == 1.0
    balanced = stats.mcnemar_exact([True] * 500 + [False] * 500, [False] * 500 + [True] * 500)
    assert balanced["p"] == pytest.approx(1.0)


def test_holm():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def _models(accs, n=10000, seeds=1, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.random((seeds, n))
    return {name: base < acc for name, acc in accs.items()}  # nested: a better model is right where a worse one is


def test_known_answer_real_difference_and_a_tie():
    rng = np.random.default_rng(1)
    truth = rng.random(10000)
    good = truth < 0.90
    same = good.copy()
    same[np.flatnonzero(good)[:15]] = False  # 15 images only "good" gets right,
    same[np.flatnonzero(~good)[:12]] = True  # 12 only "same" gets right: no real difference
    correct = {"good": good[None], "same": same[None], "bad": (truth < 0.85)[None]}
    result = stats.compare_optimizers(correct)
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    good_bad = pairs.get(("good", "bad")) or pairs.get(("same", "bad"))
    assert good_bad["significant"] and good_bad["mcnemar"]["p"] < 1e-10
    tie = pairs.get(("good", "same")) or pairs.get(("same", "good"))
    assert not tie["significant"]
    assert sorted(result["groups"][0]) == ["good", "same"] and result["groups"][1] == ["bad"]
    assert result["text"].endswith("> bad") and " ~ " in result["text"]


def test_bootstrap_across_seeds_interval_covers_the_true_difference():
    correct = _models({"a": 0.88, "b": 0.87}, seeds=3)
    r = stats.paired_bootstrap(correct["a"], correct["b"])
    assert r["ci_low"] < 0.01 < r["ci_high"] and r["ci_low"] > 0
    assert r["p"] < 0.05
