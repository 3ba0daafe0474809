"""The summary: rankings by structured key with the tests' groups and intervals, observations with a
sustained-rise rule, time to target."""

import pytest

from fmnist_pl.analysis import summary


def test_the_ranking_never_ties_by_rounding():
    """0.8251 and 0.8249 round alike: the tests' groups say "~" or ">", the order alone says neither."""
    values = {"b": [0.8249], "a": [0.8251]}
    assert summary.ranking(values, [["a", "b"]])["text"] == "a ~ b"  # not distinguishable
    assert summary.ranking(values, [["a"], ["b"]])["text"] == "a > b"  # significantly better
    untested = summary.ranking(values, None, "one setting: nothing to compare")
    assert untested["text"] == "a, b" and not untested["tested"] and untested["groups"] == []
    assert untested["untested"] == "one setting: nothing to compare"
    for r in (untested, summary.ranking(values, [["a", "b"]])):
        assert "=" not in r["text"] and [e["name"] for e in r["entries"]] == ["a", "b"]
    r = summary.ranking({"a": [0.9], "b": [float("nan")], "c": None})
    assert r["text"] == "a" and r["left_out"] == ["b", "c"]


def test_intervals_t_over_seeds_and_wilson_over_images():
    # Wilson's score interval, known values: 5 of 10 -> [0.2366, 0.7634]; 90 of 100 -> [0.8256, 0.9448].
    assert summary.wilson_interval(0.5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert summary.wilson_interval(0.9, 100) == pytest.approx((0.8256, 0.9448), abs=1e-4)
    assert summary.wilson_interval(1.0, 50)[1] == 1.0  # stays inside [0, 1]
    # Two seeds: mean 0.855, sd 0.00707, t(0.975, 1) = 12.706.
    assert summary.t_interval([0.86, 0.85]) == pytest.approx((0.855 - 0.06353, 0.855 + 0.06353), abs=1e-4)
    r = summary.ranking({"adam": [0.86, 0.85], "sgd": [0.80]}, images={"sgd": 10_000})
    adam, sgd = r["entries"]
    assert adam["interval"] == "95% t-interval of the mean over 2 seeds" and adam["low"] < 0.855 < adam["high"]
    assert sgd["interval"] == "95% Wilson interval over 10,000 test images"
    assert (sgd["low"], sgd["high"]) == pytest.approx(summary.wilson_interval(0.8, 10_000))


def _run(val_losses):
    return {
        "run": "adam",
        "status": "ok",
        "history": [
            {"epoch": i + 1, "val_loss": v, "train_acc": 0.9, "val_acc": 0.88} for i, v in enumerate(val_losses)
        ],
    }


def test_overfitting_needs_a_sustained_rise_not_a_one_epoch_uptick():
    notes = summary.observations(_run([0.5, 0.4, 0.35, 0.38, 0.45, 0.5]))
    assert notes[0].startswith(
        "adam overfits: validation loss was lowest at epoch 3 (0.3500) and stayed above it "
        "for the last 3 epochs, ending at 0.5000 (epoch 6)"
    )
    # The reference's sgd: lowest at epoch 29 of 30, one epoch up - a fact, not overfitting.
    uptick = [0.5 - 0.007 * e for e in range(29)] + [0.31]
    notes = summary.observations(_run(uptick))
    assert "overfits" not in notes[0] and "lowest at epoch 29" in notes[0] and "no sustained rise" in notes[0]
    # Up, then down again below the tolerance: not sustained either.
    assert not summary.overfits(_run([0.5, 0.4, 0.45, 0.46, 0.402])["history"])
    notes = summary.observations(_run([0.5, 0.4, 0.35, 0.34]))
    assert "does not overfit" in notes[0] and "lowest at the last epoch" in notes[0]


def test_time_to_target_is_the_first_epoch_reaching_it():
    history = [{"epoch": e, "val_acc": a, "seconds": 2.0} for e, a in enumerate([0.8, 0.87, 0.881, 0.879], 1)]
    assert summary.time_to_target(history, 0.88) == {"epoch": 3, "seconds": 6.0}
    assert summary.time_to_target(history, 0.95) == {"epoch": None, "seconds": None}


def test_rankings_group_by_the_structured_setting_and_leave_out_diverged():
    def run(name, setting, acc, status="ok", seed=1):
        return {
            "run": name,
            "setting": setting,
            "seed": seed,
            "status": status,
            "history": [{}],
            "test": {"last": {"accuracy": acc, "macro_f1": acc, "support": [1000] * 10}},
        }

    # Names that parsing would confuse: the setting key decides, not the text of the name.
    runs = [
        run("adam/seed-1", "adam", 0.89),
        run("adam/seed-2", "adam", 0.87, seed=2),
        run("x/seed-1", "sgd", 0.86),
        run("y", "sgd", 0.86, seed=2),
        run("rmsprop/seed-1", "rmsprop", 0.9),
        run("rmsprop/seed-2", "rmsprop", float("nan"), "diverged", seed=2),
    ]
    r = summary.rankings(runs)["accuracy"]
    assert [e["name"] for e in r["entries"]] == ["adam", "sgd"] and r["values"]["adam"] == pytest.approx(0.88)
    assert r["left_out"] == ["rmsprop"]
    assert r["text"] == "adam, sgd" and not r["tested"]  # no tests given: the order alone, no verdict
    assert summary.why_untested(runs) is None  # rmsprop is left out; adam and sgd share seeds 1 and 2
    tested = summary.rankings(runs, tests={"groups": [["adam", "sgd"]]})["accuracy"]
    assert tested["text"] == "adam ~ sgd" and tested["groups"] == [["adam", "sgd"]]
    f1 = summary.rankings(runs, tests={"groups": [["adam"], ["sgd"]]})["macro-F1"]
    assert f1["text"] == "adam, sgd" and not f1["tested"]  # the verdicts are on accuracy only


def test_why_untested_says_what_stops_the_tests():
    def run(setting, seed):
        return {"run": f"{setting}/seed-{seed}", "setting": setting, "seed": seed, "status": "ok", "history": [{}]}

    assert summary.why_untested([run("adam", 1)]) == "one setting: nothing to compare"
    unequal = summary.why_untested([run("adam", 1), run("adam", 2), run("sgd", 1)])
    assert unequal.startswith("the settings have different seeds (adam 2 (1, 2), sgd 1 (1))")
    assert "--resume" in unequal
    assert "different seeds" in summary.why_untested([run("adam", 1), run("sgd", 2)])  # as many, not the same


def test_a_pair_in_words():
    pair = {
        "a": "adam",
        "b": "sgd",
        "diff": 0.005,
        "ci_low": -0.01,
        "ci_high": 0.02,
        "p": 0.4,
        "df": 2.0,
        "per_seed": [0.02, -0.01, 0.005],
        "seeds": 3,
        "wins": 2,
        "losses": 1,
        "seeds_for_power": 40,
        "p_test": 0.4,
        "p_adjusted": 0.8,
        "significant": False,
        "verdict": "not distinguishable",
    }
    words = summary.pair_view(pair)
    assert (words["diff"], words["interval"], words["p"], words["p_holm"]) == (
        "+0.0050",
        "[-0.0100, +0.0200]",
        "0.4",
        "0.8",
    )
    assert words["record"] == "adam better in 2 of 3 seeds, worse in 1 (+0.0200, -0.0100, +0.0050)"
    assert (
        words["power"] == "the observed spread between seeds would need about 40 seeds to tell them apart (80% power)"
    )
    # A count at or below the seeds run: the approximation cannot be what is short.
    assert summary.pair_view(pair | {"seeds_for_power": 3})["power"].startswith("more seeds needed: over 3 seeds")
    assert summary.pair_view(pair | {"significant": True, "verdict": "different"})["power"] is None
    assert summary.p_text(0.0) == "< 1e-300" and summary.p_text(3e-50) == "3e-50"
