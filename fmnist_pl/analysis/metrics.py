"""Classification metrics of one run's test predictions, and its classification report.

As in scikit-learn's ``classification_report``: compute into a dict (``output_dict``), then
render text or HTML as views of it. The numbers are torchmetrics' (its definitions, in its
arithmetic, computed for many runs at once; the tests hold them equal to its functions).
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
        out[name] = {
            "precision": per["precision"][i],
            "recall": per["recall"][i],
            "f1-score": per["f1"][i],
            "support": support[i],
        }
    out["accuracy"] = test["accuracy"]
    for key, label in (("macro", "macro avg"), ("weighted", "weighted avg")):
        out[label] = {
            "precision": test[key]["precision"],
            "recall": test[key]["recall"],
            "f1-score": test[key]["f1"],
            "support": total,
        }
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


def classification_metrics(preds: torch.Tensor, target: torch.Tensor, num_classes: int = 10) -> dict[str, Any]:
    """Everything a scikit-learn-style classification report needs: accuracy, confusion matrix,
    support, and precision / recall / F1 per class, macro and weighted, as torchmetrics defines them."""
    return classification_metrics_many(preds.unsqueeze(0), target, num_classes)[0]


def classification_metrics_many(
    preds: torch.Tensor, target: torch.Tensor, num_classes: int = 10
) -> list[dict[str, Any]]:
    """:func:`classification_metrics` of many runs scored on the same images (``preds``: ``[runs, images]``).

    Every number comes from each run's confusion matrix (one ``bincount`` for all runs), reduced with
    torchmetrics' own formulas, in its float32 arithmetic and order: per-class scores with 0 for
    0/0, macro averages over the classes that occur in the targets or the predictions, weighted by
    support. tests/analysis/test_metrics.py checks them equal to torchmetrics' functions, bit for
    bit. Why not call those per run: ten calls cost 6 ms a run (argument checks and per-call
    overhead, not arithmetic), 9 s of a 1,440-run study; their ``samplewise`` form is slower still.
    """
    import torch

    n, runs = num_classes, preds.shape[0]
    offset = torch.arange(runs).unsqueeze(1) * n * n
    # rows: true class, columns: predicted (torchmetrics' layout)
    confusion = torch.bincount((offset + target * n + preds).flatten(), minlength=runs * n * n).view(runs, n, n)
    tp = confusion.diagonal(dim1=1, dim2=2)
    fp, fn = confusion.sum(1) - tp, confusion.sum(2) - tp

    def divide(num: torch.Tensor, denom: torch.Tensor) -> torch.Tensor:
        num, denom = num.float(), denom.float()
        return torch.where(denom != 0, num / denom, torch.zeros((), dtype=num.dtype))

    def averaged(score: torch.Tensor) -> dict[str, torch.Tensor]:
        present = torch.ones_like(score)
        present[tp + fp + fn == 0] = 0.0
        return {
            "none": score,
            "macro": divide(present * score, present.sum(-1, keepdim=True)).sum(-1),
            "weighted": divide((tp + fn) * score, (tp + fn).sum(-1, keepdim=True)).sum(-1),
        }

    scores = {
        "precision": averaged(divide(tp, tp + fp)),
        "recall": averaged(divide(tp, tp + fn)),
        "f1": averaged(divide(2.0 * tp, 2.0 * tp + 1.0 * fn + fp)),
    }
    accuracy = divide(tp.sum(1), (tp + fn).sum(1)).tolist()
    lists = {
        average: {name: by_average[average].tolist() for name, by_average in scores.items()}
        for average in ("none", "macro", "weighted")
    }
    support = torch.bincount(target, minlength=n).tolist()
    matrices = confusion.tolist()
    out = []
    for k in range(runs):
        one: dict[str, Any] = {"accuracy": accuracy[k], "confusion_matrix": matrices[k], "support": support}
        for average, by_name in lists.items():
            one["per_class" if average == "none" else average] = {name: v[k] for name, v in by_name.items()}
        one["macro_f1"] = one["macro"]["f1"]
        out.append(one)
    return out
