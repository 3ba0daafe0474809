import json
from pathlib import Path

import pytest

from fmnist_pl import report, results
from fmnist_pl.idx import CLASS_NAMES

XSS = "<script>alert(1)</script>"


def _metrics(acc):
    per = {"precision": [acc] * 10, "recall": [acc] * 10, "f1": [acc - i / 100 for i in range(10)]}
    test = {"accuracy": acc, "macro_f1": acc - 0.01, "per_class": per, "support": [1000] * 10,
            "macro": {"precision": acc, "recall": acc, "f1": acc - 0.01},
            "weighted": {"precision": acc, "recall": acc, "f1": acc - 0.01},
            "confusion_matrix": [[100] * 10] * 10, "loss": 0.3}
    from fmnist_pl.metrics import classification_report_dict

    test["report"] = classification_report_dict(test, CLASS_NAMES)
    return test


def make_results(folder: Path, names: list[str], missing: list[str] = ()) -> Path:
    runs = [{"run": n, "optimizer": {"name": n, "class": "SGD", "hparams": {"lr": 0.01}}, "seed": 42}
            for n in [*names, *missing]]
    results.write_json(folder / "config.json", {
        "config": {"epochs": 3, "batch_size": 32, "seeds": 1, "seed": 42}, "runs": runs,
        "split": {"train": 55000, "val": 5000, "test": 10000},
        "model": {"hidden": [300, 100], "parameters": 266610, "summary": [{"layer": "Dense", "output": "(None, 300)", "params": 235500}]},
        "environment": {"torch": "x"}, "created": "now"})
    for i, n in enumerate(names):
        d = folder / "runs" / n
        acc = 0.85 + i / 100
        history = [{"epoch": e, "train_loss": 1 / e, "train_acc": acc, "val_loss": 0.4 + (e - 2) ** 2 / 10,
                    "val_acc": acc, "seconds": 2.0} for e in (1, 2, 3)]
        results.write_history(d, history)
        targets = [i % 10 for i in range(1000)]
        preds = [t if j < 1000 * acc else (t + 1) % 10 for j, t in enumerate(targets)]
        results.write_json(d / "predictions.json", {"targets": targets, "last": preds, "best": preds})
        results.write_json(d / "metrics.json", {
            "run": n, "optimizer": runs[i]["optimizer"], "seed": 42, "status": "ok", "epochs": 3, "best_epoch": 2,
            "test": {"last": _metrics(acc), "best": _metrics(acc)}, "timing": {"seconds_per_epoch": 2.0, "fit_seconds": 6.0},
            "optimizer_state_bytes": 0})
    return folder


def test_report_sections_values_and_escaping(tmp_path):
    folder = make_results(tmp_path / "cmp", ["sgd", XSS], missing=["adam"])
    html = report.render(folder).read_text()
    for section in ('id="ranking"', 'id="significance"', 'id="summary"', 'id="observations"', 'id="curves"', 'id="per-class"',
                    'id="reports"', 'id="setup"', 'id="missing"'):
        assert section in html
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "0.8600" in html and "0.8500" in html  # exact values beside the ranking
    assert "overfits: validation loss was lowest at epoch 2" in html
    assert "adam" in html.split('id="missing"')[1].split("</section>")[0]
    assert html.count("data:image/png;base64,") >= 3
    assert "http://" not in html and "https://" not in html  # nothing to fetch: opens offline


def test_report_on_a_folder_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(results.ResultsError, match="holds no fmnist-pl results"):
        report.render(tmp_path)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    results.write_json(target, {"a": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", boom)
    with pytest.raises(OSError):
        results.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}  # old content intact
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left
