from pathlib import Path

import pytest

from fmnist_pl import report, store
from fmnist_pl.analysis.summary import write_summary
from fmnist_pl.data.idx import CLASS_NAMES

XSS = "<script>alert(1)</script>"


def _metrics(acc):
    per = {"precision": [acc] * 10, "recall": [acc] * 10, "f1": [acc - i / 100 for i in range(10)]}
    test = {
        "accuracy": acc,
        "macro_f1": acc - 0.01,
        "per_class": per,
        "support": [1000] * 10,
        "macro": {"precision": acc, "recall": acc, "f1": acc - 0.01},
        "weighted": {"precision": acc, "recall": acc, "f1": acc - 0.01},
        "confusion_matrix": [[100] * 10] * 10,
        "loss": 0.3,
    }
    from fmnist_pl.analysis.metrics import classification_report_dict

    test["report"] = classification_report_dict(test, CLASS_NAMES)
    return test


def make_results(folder: Path, names: list[str], missing: list[str] = ()) -> Path:
    runs = [
        {
            "run": n,
            "setting": n,
            "variant": n,
            "optimizer": {"name": n, "class": "SGD", "hparams": {"lr": 0.01}},
            "seed": 42,
            "hidden": [300, 100],
        }
        for n in [*names, *missing]
    ]
    store.write_json(
        folder / "config.json",
        {
            "format": store.FORMAT_VERSION,
            "config": {"epochs": 3, "batch_size": 32, "seeds": 1, "seed": 42, "target": 0.88},
            "runs": runs,
            "split": {"train": 55000, "val": 5000, "test": 10000},
            "model": {
                "hidden": [300, 100],
                "parameters": 266610,
                "summary": [{"layer": "Dense", "output": "(None, 300)", "params": 235500}],
            },
            "environment": {"torch": "x"},
            "created": "now",
        },
    )
    for i, n in enumerate(names):
        d = folder / "runs" / n
        acc = 0.85 + i / 100
        history = [
            {
                "epoch": e,
                "train_loss": 1 / e,
                "train_acc": acc,
                "val_loss": 0.4 + (e - 2) ** 2 / 10,
                "val_acc": acc,
                "seconds": 2.0,
            }
            for e in (1, 2, 3)
        ]
        store.write_files(store.history_files(d, history))
        targets = [i % 10 for i in range(1000)]
        preds = [t if j < 1000 * acc and j != 3 else (t + 1) % 10 for j, t in enumerate(targets)]  # image 3: wrong
        store.write_json(d / "predictions.json", {"targets": targets, "last": preds, "best": preds})
        store.write_json(
            d / "metrics.json",
            runs[i]
            | {
                "status": "ok",
                "epochs": 3,
                "best_epoch": 2,
                "test": {"last": _metrics(acc), "best": _metrics(acc)},
                "timing": {"seconds_per_epoch": 2.0, "fit_seconds": 6.0},
                "optimizer_state_bytes": 0,
            },
        )
    store.write_json(
        folder / "samples.json",
        {
            "train_images": [[i * 6 % 256] * 784 for i in range(40)],
            "train_labels": [i % 10 for i in range(40)],
            "test_images": [[i * 3 % 256] * 784 for i in range(40)],
        },
    )
    return folder


def test_report_sections_values_and_escaping(tmp_path):
    folder = make_results(tmp_path / "cmp", ["sgd", XSS], missing=["adam"])
    html = report.render(folder).read_text()
    for section in (
        'id="ranking"',
        'id="significance"',
        'id="summary"',
        'id="observations"',
        'id="curves"',
        'id="per-class"',
        'id="reports"',
        'id="setup"',
        'id="missing"',
    ):
        assert section in html
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "0.8600" in html and "0.8500" in html  # exact values beside the ranking
    assert "validation loss was lowest at epoch 2 (0.4000) and is 0.5000 at epoch 3" in html
    assert "adam" in html.split('id="missing"')[1].split("</section>")[0]
    # Figures: overlays (3 against epochs, 1 against seconds; these results record no images/evaluations
    # totals, so no curves on those axes) + each run's learning curves; then the 40 training images and,
    # per run, the 40 test images of its prediction grid; and the time-to-target profile.
    assert html.count('<img src="data:image/png;base64,') == 4 + 2 + 40 + 2 * 40 + 1
    targets = html.split('<section id="targets">')[1].split("</section>")[0]
    assert "90% of the best" in targets and "time-to-target profile" in targets
    assert html.count('<table class="confusion"') == 2  # one per run, as HTML: counts are text
    assert '<td style="background: rgb(8,48,107)" class="dark">100</td>' in html  # every cell is the peak here
    reports = html.split('id="reports"')[1].split("</section>")[0]
    # Image 3 of each run's test grid is wrong: the prediction, then the true label in brackets, in red.
    wrong = f'<figure role="listitem" class="wrong"><figcaption><span>{CLASS_NAMES[4]}</span><span>({CLASS_NAMES[3]})</span>'
    assert reports.count(wrong) == 2 and reports.count('class="wrong"') == 2
    assert "http://" not in html and "https://" not in html  # nothing to fetch: opens offline


def test_confusion_matrix_and_image_grid_cells():
    from fmnist_pl.report.html import confusion_table, image_grid

    matrix = [[90 if i == j else (10 if j == (i + 1) % 10 else 0) for j in range(10)] for i in range(10)]
    rows = confusion_table(matrix)
    assert [r["label"] for r in rows] == list(CLASS_NAMES)
    assert rows[2]["cells"][2] == {"n": 90, "color": "rgb(8,48,107)", "dark": True}  # the peak: darkest
    assert rows[2]["cells"][3] == {"n": 10, "color": "rgb(220,228,239)", "dark": False}
    assert rows[2]["cells"][0]["color"] == "rgb(247,251,255)"  # zero: white
    cells = image_grid(["a", "b", "c"], [0, 1, 9], [0, 2, 9])
    assert [(c["src"], c["text"], c["true"], c["wrong"]) for c in cells] == [
        ("a", "T-shirt/top", "T-shirt/top", False),
        ("b", "Pullover", "Trouser", True),
        ("c", "Ankle boot", "Ankle boot", False),
    ]
    assert [c["text"] for c in image_grid(["a", "b"], [3, 8])] == ["Dress", "Bag"]  # no predictions: the labels


def test_images_and_evaluations_axes_only_where_they_differ_from_epochs():
    from fmnist_pl.report.html import compute_axes

    def run(images_per_epoch, population=1):
        return {
            "history": [
                {"epoch": e, "images": e * images_per_epoch, "evaluations": e * images_per_epoch * population}
                for e in (1, 2)
            ]
        }

    assert compute_axes([run(55_000), run(55_000)]) == {"epoch", "seconds"}  # gradient runs: epochs relabelled
    stopped = {"history": run(55_000)["history"][:1]}  # diverged after epoch 1: the same images per epoch
    assert compute_axes([run(55_000), stopped]) == {"epoch", "seconds"}
    assert compute_axes([run(55_000), run(20_480)]) == {"epoch", "seconds", "images"}
    assert compute_axes([run(55_000), run(55_000, population=50)]) == {"epoch", "seconds", "images", "evaluations"}
    unrecorded = {"epoch": 1, "images": None, "evaluations": None}  # as a folder without the totals reads back
    assert compute_axes([{"history": [unrecorded]}]) == {"epoch", "seconds"}


def test_report_on_a_folder_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(store.ResultsError, match="holds no fmnist-pl results"):
        report.render(tmp_path)


def test_the_report_is_rebuilt_from_results_on_disk_alone(tmp_path):
    folder = make_results(tmp_path / "cmp", ["sgd", "adam"])
    write_summary(folder)
    first = report.render(folder).read_bytes()
    assert not list(folder.rglob("*.png"))  # no figure files: every figure is drawn from the results
    (folder / "report.html").unlink()
    assert report.render(folder).read_bytes() == first  # the same report, byte for byte
    (folder / "summary.json").unlink()
    assert report.render(folder).read_bytes() == first  # and without summary.json, computed from the runs


def test_a_previous_results_format_is_a_one_line_error(tmp_path):
    folder = make_results(tmp_path / "old", ["sgd"])
    config = store.read_json(folder / "config.json")
    del config["format"]
    store.write_json(folder / "config.json", config)
    with pytest.raises(store.ResultsError, match="results format 1 .*re-run the compare") as info:
        report.render(folder)
    assert "\n" not in str(info.value)


def test_run_names_are_plain_text_in_figures(tmp_path):
    folder = make_results(tmp_path / "tex", ["bad$\\foo{$name"])
    assert "bad$\\foo{$name" in report.render(folder).read_text()  # matplotlib did not parse it as mathtext


def test_a_big_study_draws_each_runs_figures_only_for_the_best_run_of_each_optimizer():
    """1,440 runs x three figures took longer than training them; the tables still list every run."""
    from fmnist_pl.report.html import DETAILED_RUNS, detailed_runs

    def run(name, opt, hidden, val):
        return {
            "run": name,
            "optimizer": {"name": opt},
            "hidden": hidden,
            "history": [{"val_acc": val - 0.1}, {"val_acc": val}, {"val_acc": val - 0.05}],
        }

    few = [run(f"sgd/lr-{i}", "sgd", [300, 100], 0.5 + i / 100) for i in range(DETAILED_RUNS)]
    assert detailed_runs(few) == {r["run"] for r in few}
    many = [
        run(f"h{h}/{opt}/lr-{i}", opt, [h], 0.5 + ((i * 7) % 13) / 100)
        for h in (32, 64)
        for opt in ("sgd", "adam")
        for i in range(10)
    ]
    many.append({"run": "h32/adam/lr-99", "optimizer": {"name": "adam"}, "hidden": [32], "history": []})  # unfinished
    chosen = detailed_runs(many)
    # i = 11 would give 0.5 + 12/100, the best; within 0..9 it is i = 9 (63 % 13 = 11).
    assert chosen == {f"h{h}/{opt}/lr-9" for h in (32, 64) for opt in ("sgd", "adam")}
