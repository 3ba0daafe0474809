"""Classification metrics of one run's test predictions, and its classification report.

As in scikit-learn's ``classification_report``: compute into a dict (``output_dict``), then
render text or HTML as views of it. The numbers come from torchmetrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch

REPORT_DIGITS = 2  # the reference's reports (and scikit-learn's default) show two decimals


def classification_report_dict(test: dict[str, Any], class_names: Sequence[str]) -> dict[str, Any]:
    """scikit-learn's ``output_dict`` layout: per class, accuracy, macro avg, weighted avg."""
    per, support = test["per_class"], test["support"]
    total = sum(support)
    out: dict[str, Any] = {}
    for i, name in enumerate(class_names):
        out[name] = {"precision": per["precision"][i], "recall": per["recall"][i],
                     "f1-score": per["f1"][i], "support": support[i]}
    out["accuracy"] = test["accuracy"]
    for key, label in (("macro", "macro avg"), ("weighted", "weighted avg")):
        out[label] = {"precision": test[key]["precision"], "recall": test[key]["recall"],
                      "f1-score": test[key]["f1"], "support": total}
    return out


def classification_report_text(report: dict[str, Any], digits: int = REPORT_DIGITS) -> str:
    """The text scikit-learn's ``classification_report`` prints, from the dict above."""
    rows = [k for k in report if k not in ("accuracy", "macro avg", "weighted avg")]
    width = max(len(k) for k in [*rows, "weighted avg"])
    head = f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"
    lines = [head, ""]
    fmt = f"{{:>{width}}} {{:>9.{digits}f}} {{:>9.{digits}f}} {{:>9.{digits}f}} {{:>9}}"
    for name in rows:
        r = report[name]
        lines.append(fmt.format(name, r["precision"], r["recall"], r["f1-score"], r["support"]))
    lines.append("")
    total = report["macro avg"]["support"]
    lines.append(f"{'accuracy':>{width}} {'':>9} {'':>9} {report['accuracy']:>9.{digits}f} {total:>9}")
    for label in ("macro avg", "weighted avg"):
        r = report[label]
        lines.append(fmt.format(label, r["precision"], r["recall"], r["f1-score"], r["support"]))
    return "\n".join(lines) + "\n"


def classification_metrics(preds: "torch.Tensor", target: "torch.Tensor", num_classes: int = 10) -> dict[str, Any]:
    """Everything a scikit-learn-style classification report needs, computed with torchmetrics."""
    import torch
    from torchmetrics.functional import classification as C

    n = num_classes
    out: dict[str, Any] = {
        "accuracy": C.multiclass_accuracy(preds, target, n, average="micro").item(),
        "confusion_matrix": C.multiclass_confusion_matrix(preds, target, n).tolist(),
        "support": torch.bincount(target, minlength=n).tolist(),
    }
    for average in ("none", "macro", "weighted"):
        key = "per_class" if average == "none" else average
        out[key] = {
            "precision": C.multiclass_precision(preds, target, n, average=average, zero_division=0).tolist(),
            "recall": C.multiclass_recall(preds, target, n, average=average, zero_division=0).tolist(),
            "f1": C.multiclass_f1_score(preds, target, n, average=average, zero_division=0).tolist(),
        }
    out["macro_f1"] = out["macro"]["f1"]
    return out
