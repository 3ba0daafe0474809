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
    assert [l.split()[-1] for l in lines if l.strip().startswith(("accuracy", "macro avg"))] == ["8", "8"]
