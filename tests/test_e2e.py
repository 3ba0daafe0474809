"""End to end on the real Fashion-MNIST with a small budget: every artifact, TensorBoard, the report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmnist_pl.model import MLP

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def compare_run(real_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    proc = subprocess.run(
        [sys.executable, "-m", "fmnist_pl", "compare", "--epochs", "2", "--limit-train-batches", "40",
         "--optimizers", "sgd,adam", "--name", "run1", "--output-dir", str(out), "--no-progress",
         "--accelerator", "cpu"],
        capture_output=True, text=True, timeout=600, env={"PYTHONPATH": str(Path(__file__).parents[1]),
                                                          "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "run1", proc.stdout


def test_every_artifact_is_written(compare_run):
    folder, stdout = compare_run
    assert "runs 1-2 of 2: sgd, adam" in stdout and "ranking by accuracy:" in stdout
    assert f"report: {folder / 'report.html'}" in stdout
    assert (folder / "train_images.png").stat().st_size > 1000
    config = json.loads((folder / "config.json").read_text())
    assert config["split"] == {"train": 55000, "val": 5000, "test": 10000}
    assert config["model"]["parameters"] == 266610
    for run in ("sgd", "adam"):
        d = folder / "runs" / run
        for name in ("history.csv", "history.json", "metrics.json", "classification_report.txt",
                     "learning_curves.png", "confusion_matrix.png", "predictions.png", "predictions.json",
                     "checkpoints/best.pt", "checkpoints/last.pt"):
            assert (d / name).is_file(), f"{run}/{name}"
        history = json.loads((d / "history.json").read_text())
        assert [row["epoch"] for row in history] == [1, 2]
        metrics = json.loads((d / "metrics.json").read_text())
        assert 0.5 < metrics["test"]["last"]["accuracy"] < 1.0
        assert sum(metrics["test"]["last"]["support"]) == 10000
        assert sum(map(sum, metrics["test"]["last"]["confusion_matrix"])) == 10000
        assert "T-shirt/top" in (d / "classification_report.txt").read_text()
        assert len(json.loads((d / "predictions.json").read_text())["last"]) == 10000
        ckpt = torch.load(d / "checkpoints" / "best.pt", weights_only=True)
        net = MLP(ckpt["hidden"])
        net.load_state_dict(ckpt["state_dict"])  # a saved run loads into the plain nn.Module
    adam_state = json.loads((folder / "runs/adam/metrics.json").read_text())["optimizer_state_bytes"]
    assert adam_state == 2 * 266610 * 4  # exp_avg + exp_avg_sq, float32, measured from the state


def test_tensorboard_has_one_run_per_optimizer_with_the_scalar_tags(compare_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, _ = compare_run
    for run in ("sgd", "adam"):
        acc = EventAccumulator(str(folder / "tensorboard" / run))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        assert {"train/loss", "train/acc", "val/loss", "val/acc", "test/acc", "test/f1"} <= tags
        assert [e.step for e in acc.Scalars("val/acc")] == [1, 2]


def test_report_contents_and_rerender(compare_run):
    folder, _ = compare_run
    html = (folder / "report.html").read_text()
    for text in ("Ranking", "Summary", "Per-class F1", "Classification reports", "266,610", "KerasRMSprop" if False else "SGD"):
        assert text in html
    first = html
    proc = subprocess.run([sys.executable, "-m", "fmnist_pl", "report", str(folder)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(Path(__file__).parents[1]), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and "report:" in proc.stdout
    assert (folder / "report.html").read_text().count("<tr>") == first.count("<tr>")
