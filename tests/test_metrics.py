import pytest
import torch

from fmnist_pl import metrics
from fmnist_pl.idx import CLASS_NAMES
from fmnist_pl.model import classification_metrics


def test_classification_report_has_scikit_learns_layout_and_numbers():
    target = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    preds = torch.tensor([0, 1, 1, 1, 2, 2, 0, 3])
    test = classification_metrics(preds, target)
    report = metrics.classification_report_dict(test, CLASS_NAMES)
    assert report["T-shirt/top"] == {"precision": 0.5, "recall": 0.5, "f1-score": 0.5, "support": 2}
    assert abs(report["Trouser"]["precision"] - 2 / 3) < 1e-6 and report["Trouser"]["recall"] == 1.0
    assert report["accuracy"] == 6 / 8
    assert report["weighted avg"]["support"] == 8
    text = metrics.classification_report_text(report)
    lines = text.splitlines()
    assert lines[0].split() == ["precision", "recall", "f1-score", "support"]
    assert lines[2].split()[-4:] == ["0.50", "0.50", "0.50", "2"]
    assert "    accuracy" in text and text.rstrip().splitlines()[-1].startswith("weighted avg")
    assert [l.split()[-1] for l in lines if l.strip().startswith(("accuracy", "macro avg"))] == ["8", "8"]


def test_ranking_ties_at_two_decimals_with_exact_values():
    r = metrics.ranking({"sgd": 0.8912, "momentum": 0.8861, "rmsprop": 0.8703, "adam": 0.8949})
    assert r["groups"] == [["adam", "sgd", "momentum"], ["rmsprop"]]
    assert r["text"] == "adam = sgd = momentum > rmsprop"
    assert r["values"]["sgd"] == 0.8912
    r = metrics.ranking({"a": 0.9, "b": float("nan"), "c": None})
    assert r["text"] == "a" and r["left_out"] == ["b", "c"]


def _run(val_losses):
    return {"run": "adam", "status": "ok", "history": [
        {"epoch": i + 1, "val_loss": v, "train_acc": 0.9, "val_acc": 0.88} for i, v in enumerate(val_losses)]}


def test_observations_detect_overfitting_from_the_data():
    notes = metrics.observations(_run([0.5, 0.4, 0.35, 0.38, 0.45]))
    assert notes[0].startswith("adam overfits: validation loss was lowest at epoch 3 (0.3500)")
    notes = metrics.observations(_run([0.5, 0.4, 0.35, 0.34]))
    assert "does not overfit" in notes[0] and "epoch 4" in notes[0]


def test_time_to_target_is_the_first_epoch_reaching_it():
    history = [{"epoch": e, "val_acc": a, "seconds": 2.0} for e, a in enumerate([0.8, 0.87, 0.881, 0.879], 1)]
    assert metrics.time_to_target(history, 0.88) == {"epoch": 3, "seconds": 6.0}
    assert metrics.time_to_target(history, 0.95) == {"epoch": None, "seconds": None}


def test_rankings_average_seeds_and_leave_out_diverged():
    def run(name, acc, status="ok"):
        return {"run": name, "status": status, "test": {"last": {"accuracy": acc, "macro_f1": acc}}}

    runs = [run("adam/seed-1", 0.89), run("adam/seed-2", 0.87), run("sgd/seed-1", 0.86), run("sgd/seed-2", 0.86),
            run("rmsprop/seed-1", 0.9), run("rmsprop/seed-2", float("nan"), "diverged")]
    r = metrics.rankings(runs)["accuracy"]
    assert r["groups"] == [["adam"], ["sgd"]] and r["values"]["adam"] == pytest.approx(0.88)
    assert r["left_out"] == ["rmsprop"]
