"""``fmnist_pl.load(folder)``: the runs and history tables, and runs.csv / history.csv written with summary.json."""

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

import fmnist_pl
from fmnist_pl import store
from fmnist_pl.analysis.summary import write_summary
from fmnist_pl.store import io as store_io
from tests.report.test_report import make_results


def _edit(path, change):
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


@pytest.fixture
def folder(tmp_path):
    """Two runs with results and one missing: adam with Adam's betas (a list) and the images and
    evaluations totals in its history; sgd diverged at its last epoch, with no totals recorded."""
    folder = make_results(tmp_path / "cmp", ["sgd", "adam"], missing=["rmsprop"])
    _edit(
        folder / "runs/adam/metrics.json",
        lambda m: m | {"optimizer": m["optimizer"] | {"hparams": {"lr": 0.001, "betas": [0.9, 0.999]}}},
    )
    _edit(
        folder / "runs/adam/history.json",
        lambda h: [row | {"images": 500 * row["epoch"], "evaluations": 1000 * row["epoch"]} for row in h],
    )
    _edit(
        folder / "runs/sgd/metrics.json",
        lambda m: (
            m
            | {
                "status": "diverged",
                "diverged_epoch": 3,
                "optimizer": m["optimizer"] | {"hparams": {"lr": 0.01, "nesterov": False}},
            }
        ),
    )
    return folder


def test_load_gives_one_row_per_run_with_every_hyperparameter_and_result(folder):
    results = fmnist_pl.load(folder)
    assert isinstance(results, fmnist_pl.Results) and results.missing == ("rmsprop",)
    runs = results.runs
    assert list(runs.columns) == [
        "run",
        "setting",
        "variant",
        "optimizer",
        "seed",
        "hidden",
        "hp.lr",
        "hp.nesterov",
        "hp.betas",
        "status",
        "diverged_epoch",
        "epochs",
        "best_epoch",
        "best_val_acc",
        "last_val_acc",
        "test_acc",
        "test_f1",
        "test_loss",
        "best_test_acc",
        "best_test_f1",
        "best_test_loss",
        "seconds_per_epoch",
        "fit_seconds",
        "images",
        "evaluations",
    ]
    assert list(runs["run"]) == ["sgd", "adam"]
    for _, row in runs.iterrows():
        metrics = json.loads((folder / "runs" / row["run"] / "metrics.json").read_text())
        history = json.loads((folder / "runs" / row["run"] / "history.json").read_text())
        assert row["optimizer"] == metrics["optimizer"]["name"] and row["seed"] == metrics["seed"]
        assert row["hidden"] == "h300-100" and row["status"] == metrics["status"]
        assert row["hp.lr"] == metrics["optimizer"]["hparams"]["lr"]
        assert (row["epochs"], row["best_epoch"]) == (metrics["epochs"], metrics["best_epoch"])
        assert row["best_val_acc"] == max(h["val_acc"] for h in history)
        assert row["last_val_acc"] == history[-1]["val_acc"]
        for prefix, which in (("", "last"), ("best_", "best")):
            test = metrics["test"][which]
            assert (row[prefix + "test_acc"], row[prefix + "test_f1"], row[prefix + "test_loss"]) == (
                test["accuracy"],
                test["macro_f1"],
                test["loss"],
            )
        assert row["seconds_per_epoch"] == metrics["timing"]["seconds_per_epoch"]
        assert row["fit_seconds"] == metrics["timing"]["fit_seconds"]
    adam, sgd = runs.set_index("run").loc["adam"], runs.set_index("run").loc["sgd"]
    assert adam["hp.betas"] == "[0.9, 0.999]" and math.isnan(sgd["hp.betas"])  # sgd has no betas
    assert sgd["hp.nesterov"] is False and math.isnan(adam["hp.nesterov"])  # a flag only sgd has
    assert (adam["images"], adam["evaluations"]) == (1500, 3000)  # the last epoch's totals
    assert math.isnan(sgd["images"]) and sgd["diverged_epoch"] == 3
    assert sgd["status"] == "diverged" and adam["status"] == "ok" and math.isnan(adam["diverged_epoch"])
    assert results.config["config"]["epochs"] == 3 and [r["run"] for r in results.config["runs"]] == [
        "sgd",
        "adam",
        "rmsprop",
    ]


def test_the_history_table_is_long_one_row_per_run_and_epoch(folder):
    history = fmnist_pl.load(folder).history
    assert list(history.columns) == [
        "run",
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "seconds",
        "images",
        "evaluations",
        "fraction",  # empty unless a budget ended the run mid-epoch
    ]
    for run in ("sgd", "adam"):
        saved = json.loads((folder / "runs" / run / "history.json").read_text())
        mine = history[history["run"] == run]
        assert list(mine["epoch"]) == [row["epoch"] for row in saved]
        assert list(mine["val_loss"]) == [row["val_loss"] for row in saved]
        assert list(mine["train_loss"]) == [row["train_loss"] for row in saved]
    assert list(history[history["run"] == "adam"]["evaluations"]) == [1000, 2000, 3000]
    assert history[history["run"] == "sgd"]["images"].isna().all()


def test_the_csv_tables_are_written_atomically_with_the_summary_and_equal_loads_tables(folder, monkeypatch):
    written = []
    real = store_io.atomic_write_bytes

    def record(path, data):
        written.append(path.name)
        real(path, data)

    monkeypatch.setattr(store_io, "atomic_write_bytes", record)
    assert not (folder / "runs.csv").exists()
    write_summary(folder)
    assert written == ["runs.csv", "history.csv", "summary.json"]  # through the atomic writer, summary.json last
    results = fmnist_pl.load(folder)
    for name, table in (("runs.csv", results.runs), ("history.csv", results.history)):
        pd.testing.assert_frame_equal(pd.read_csv(folder / name), table)
    assert len(pd.read_csv(folder / "history.csv")) == 6  # 2 runs x 3 epochs


def test_finishing_a_compare_writes_the_tables(folder):
    from fmnist_pl.study.compare import finish

    finish(folder)
    runs = pd.read_csv(folder / "runs.csv")
    assert list(runs["run"]) == ["sgd", "adam"] and list(runs["status"]) == ["diverged", "ok"]


def test_a_folder_without_results_is_a_one_line_error(tmp_path):
    with pytest.raises(store.ResultsError, match="holds no fmnist-pl results") as info:
        fmnist_pl.load(tmp_path)
    assert "\n" not in str(info.value)


def test_import_fmnist_pl_stays_light():
    """``fmnist_pl.load`` is there at once; pandas and the schemas are imported only when it is called."""
    probe = (
        "import sys, fmnist_pl; assert callable(fmnist_pl.load); "
        "print(sorted(m for m in ('pandas', 'pydantic', 'torch', 'fmnist_pl.store') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
