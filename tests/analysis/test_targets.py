"""Time to target at several targets, counting anytime validations, and the target profile."""

import pytest

from fmnist_pl.analysis.targets import time_to_targets, validation_points


def _run(name, seed, accs, points=(), fraction=None):
    history = [
        {"epoch": e, "val_acc": a, "seconds": 10.0, "images": 1000 * e, "evaluations": 1000 * e}
        for e, a in enumerate(accs, 1)
    ]
    if fraction is not None:
        history[-1]["fraction"] = fraction
    return {
        "run": f"{name}/seed-{seed}",
        "setting": name,
        "optimizer": {"name": name},
        "status": "ok",
        "history": history,
        "points": [dict(p) for p in points],
    }


def test_targets_count_anytime_points_and_say_who_never_got_there():
    fast = _run(
        "adam",
        42,
        [0.80, 0.90],
        points=[{"epoch": 0.5, "val_acc": 0.85, "images": 500, "evaluations": 500, "seconds": 5.0}],
    )
    slow = _run("sgd", 42, [0.60, 0.70])
    result = time_to_targets([fast, slow], target=0.84)
    assert result["best"] == 0.9
    assert [t["value"] for t in result["targets"]] == pytest.approx([0.84, 0.81, 0.855, 0.891])
    adam, sgd = (s["cells"] for s in result["settings"])
    assert adam[0] == {"reached": 1, "runs": 1, "epoch": 0.5, "images": 500, "evaluations": 500, "seconds": 5.0}
    assert adam[2]["images"] == 2000 and adam[2]["seconds"] == 20.0  # 0.855: the second epoch's end
    assert all(c["reached"] == 0 and c["images"] is None for c in sgd)
    levels, profile = result["levels"], result["profile"]
    assert profile["adam"][-1] == 1.0 and profile["sgd"][-1] == 0.0
    reached = [level for level, share in zip(levels, profile["sgd"]) if share == 1.0]
    assert max(reached) == pytest.approx(0.77)  # sgd's best, 0.70, is 77.8 % of 0.90


def test_a_budgets_partial_epoch_is_placed_where_it_stopped():
    run = _run("snes", 42, [0.5, 0.6], fraction=0.4)
    assert [p["epoch"] for p in validation_points(run)] == [1, pytest.approx(1.4)]
