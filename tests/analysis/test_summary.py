"""The summary: rankings by structured key, observations with a sustained-rise rule, time to target."""

import pytest

from fmnist_pl.analysis import summary


def test_ranking_ties_at_two_decimals_with_exact_values():
    r = summary.ranking({"sgd": 0.8912, "momentum": 0.8861, "rmsprop": 0.8703, "adam": 0.8949})
    assert r["groups"] == [["adam", "sgd", "momentum"], ["rmsprop"]]
    assert r["text"] == "adam = sgd = momentum > rmsprop"
    assert r["values"]["sgd"] == 0.8912
    r = summary.ranking({"a": 0.9, "b": float("nan"), "c": None})
    assert r["text"] == "a" and r["left_out"] == ["b", "c"]


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
    def run(name, setting, acc, status="ok"):
        return {
            "run": name,
            "setting": setting,
            "status": status,
            "history": [{}],
            "test": {"last": {"accuracy": acc, "macro_f1": acc}},
        }

    # Names that parsing would confuse: the setting key decides, not the text of the name.
    runs = [
        run("adam/seed-1", "adam", 0.89),
        run("adam/seed-2", "adam", 0.87),
        run("x/seed-1", "sgd", 0.86),
        run("y", "sgd", 0.86),
        run("rmsprop/seed-1", "rmsprop", 0.9),
        run("rmsprop/seed-2", "rmsprop", float("nan"), "diverged"),
    ]
    r = summary.rankings(runs)["accuracy"]
    assert r["groups"] == [["adam"], ["sgd"]] and r["values"]["adam"] == pytest.approx(0.88)
    assert r["left_out"] == ["rmsprop"]
