import torch

from fmnist_pl.analysis import metrics
from fmnist_pl.analysis.metrics import classification_metrics
from fmnist_pl.data.idx import CLASS_NAMES


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
    assert [line.split()[-1] for line in lines if line.strip().startswith(("accuracy", "macro avg"))] == ["8", "8"]


def _torchmetrics_one_run(preds: torch.Tensor, target: torch.Tensor, n: int = 10) -> dict:
    """What the report's numbers must equal: torchmetrics' own functions, one run at a time."""
    from torchmetrics.functional import classification as C

    out = {
        "accuracy": C.multiclass_accuracy(preds, target, n, average="micro").item(),
        "confusion_matrix": C.multiclass_confusion_matrix(preds, target, n).tolist(),
        "support": torch.bincount(target, minlength=n).tolist(),
    }
    for average in ("none", "macro", "weighted"):
        out["per_class" if average == "none" else average] = {
            name: fn(preds, target, n, average=average, zero_division=0).tolist()
            for name, fn in (
                ("precision", C.multiclass_precision),
                ("recall", C.multiclass_recall),
                ("f1", C.multiclass_f1_score),
            )
        }
    out["macro_f1"] = out["macro"]["f1"]
    return out


def test_many_runs_at_once_equal_torchmetrics_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 10, (2_000,), generator=gen)
    target[target == 9] = 8  # a class absent from the targets: macro skips it only where nothing predicts it
    noisy = torch.randint(0, 10, (6, 2_000), generator=gen)
    preds = torch.where(torch.rand(6, 2_000, generator=gen) < 0.7, target, noisy)
    preds[1] = 0  # one class predicted for everything: zero precision denominators
    preds[2] = target  # perfect
    preds[3][preds[3] == 9] = 7  # class 9 neither predicted nor present
    many = metrics.classification_metrics_many(preds, target)
    for k in range(len(preds)):
        assert many[k] == _torchmetrics_one_run(preds[k], target), k
    assert many[3]["macro"] != many[0]["macro"]
    assert classification_metrics(preds[0], target) == many[0]
