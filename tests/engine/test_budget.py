"""Budgets in seconds, training images or forward evaluations: each run stops at the step that
spends its budget, the epoch it stops in is validated and recorded as partial, and metrics.json
says what stopped it and what it spent."""

import json

import pytest

from fmnist_pl.config import CompareConfig
from fmnist_pl.data.idx import load_arrays
from fmnist_pl.errors import ConfigError
from fmnist_pl.study.compare import compare


def _run(tmp_path, fake_data, name, **kw):
    config = CompareConfig(
        **(
            dict(
                optimizers=("sgd", "adam"),
                epochs=50,
                hidden=(16,),
                val_size=100,
                batch_size=32,
                output_dir=str(tmp_path),
                name=name,
                progress=False,
                accelerator="cpu",
            )
            | kw
        )
    )
    folder = compare(config, arrays=load_arrays(fake_data, counts=None), echo=lambda _: None)
    runs = {}
    for run in config.optimizers:
        metrics = json.loads((folder / "runs" / run / "metrics.json").read_text())
        history = json.loads((folder / "runs" / run / "history.json").read_text())
        runs[run] = (metrics, history)
    return runs


def test_an_images_budget_stops_every_run_at_the_same_images_mid_epoch(tmp_path, fake_data):
    # 500 training images: 16 batches an epoch (15 of 32, one of 20); 700 images end in epoch 2.
    runs = _run(tmp_path, fake_data, "images", budget="images=700")
    for metrics, history in runs.values():
        assert metrics["stopped_by"] == "images" and metrics["epochs"] == 2
        assert 700 <= metrics["spent"]["images"] < 700 + 32  # within the step that reached it
        assert history[-1]["images"] == metrics["spent"]["images"]
        assert "fraction" not in history[0] and 0 < history[-1]["fraction"] < 1
        assert history[-1]["val_acc"] == history[-1]["val_acc"]  # validated (not NaN)
    assert runs["sgd"][0]["spent"]["images"] == runs["adam"][0]["spent"]["images"]  # equal by construction
    assert runs["sgd"][0]["timing"]["lockstep_runs"] == 2  # images are counted per run: still in lockstep
    html = (tmp_path / "images" / "report.html").read_text()
    assert "Under <code>--budget images=700</code>" in html and "(0.0 % apart)" in html
    assert "stopped by its images budget" in html


def test_an_evaluations_budget_counts_a_searchs_population(tmp_path, fake_data):
    runs = _run(tmp_path, fake_data, "evals", optimizers=("snes", "sgd"), budget="evaluations=20000")
    snes, sgd = runs["snes"][0], runs["sgd"][0]
    assert snes["stopped_by"] == sgd["stopped_by"] == "evaluations"
    assert 20000 <= snes["spent"]["evaluations"] and 20000 <= sgd["spent"]["evaluations"] < 20000 + 32
    assert snes["spent"]["images"] < sgd["spent"]["images"]  # a population evaluates each image many times


def test_a_seconds_budget_counts_training_after_the_warm_up_step(tmp_path, fake_data):
    # Epochs enough that a fast CPU cannot finish them in the second (500 images an epoch, hidden 16).
    runs = _run(tmp_path, fake_data, "seconds", budget="seconds=1", epochs=2000)
    for metrics, _history in runs.values():
        assert metrics["stopped_by"] == "seconds" and metrics["spent"]["clock"] == "training thread CPU time"
        assert 1 <= metrics["spent"]["seconds"] < 5 and metrics["epochs"] < 2000
        assert metrics["timing"]["lockstep_runs"] == 1  # a run's seconds must be its own


def test_a_budget_that_is_never_reached_leaves_the_epochs_in_charge(tmp_path, fake_data):
    runs = _run(tmp_path, fake_data, "epochs", epochs=2, budget="images=1e9")
    for metrics, history in runs.values():
        assert metrics["stopped_by"] is None and metrics["epochs"] == 2 and "fraction" not in history[-1]
        assert metrics["spent"]["images"] == 1000


def test_two_budgets_at_once_are_refused():
    with pytest.raises(ConfigError, match="--time-budget S is --budget seconds=S: give one of them"):
        CompareConfig(time_budget=10, budget="images=1e6")


def test_every_method_gets_an_anytime_curve_under_a_budget(tmp_path, fake_data):
    folder = tmp_path / "curves"
    # The budget stops snes, which scores 16 images a generation (its 100 candidates: 1,600
    # evaluations), after ~37 generations; sgd (500 images an epoch) meets its 3 epochs first.
    _run(
        tmp_path,
        fake_data,
        "curves",
        optimizers=("snes", "sgd"),
        overrides=("snes.batch_size=16",),
        epochs=3,
        budget="evaluations=60000",
        eval_points=10,
    )
    for run in ("snes", "sgd"):
        points = json.loads((folder / "runs" / run / "anytime.json").read_text())
        history = json.loads((folder / "runs" / run / "history.json").read_text())
        assert len(points) + len(history) >= 8  # a curve, not one dot
        evaluations = [p["evaluations"] for p in points]
        assert evaluations == sorted(evaluations) and evaluations[-1] <= 60000
        assert all(0 <= p["val_acc"] <= 1 and p["epoch"] % 1 for p in points)  # between epoch ends


def test_a_resume_after_the_budget_was_spent_trains_no_further_step():
    """Killed after the stop epoch's checkpoint (while testing, say): the resumed fit stops at once."""
    from types import SimpleNamespace

    import torch

    from fmnist_pl.config import Budget
    from fmnist_pl.engine.budget import BudgetStop

    stop = BudgetStop(Budget("images", 700))
    stop.load_state_dict({"images": 704, "evaluations": 704, "seconds": 3.0})  # from the checkpoint
    trainer = SimpleNamespace(should_stop=False)
    module = SimpleNamespace(device=torch.device("cpu"), stopped_by=None)
    stop.on_train_start(trainer, module)
    assert trainer.should_stop and module.stopped_by == "images"


def test_budgets_keep_every_digit_and_one_form_of_seconds():
    assert CompareConfig(budget="images=1234567").budget == "images=1234567"
    assert CompareConfig(time_budget=30).time_budget == 30.0 and isinstance(
        CompareConfig(time_budget=30).time_budget, float
    )
