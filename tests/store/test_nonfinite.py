"""A diverged run's NaN and infinite numbers: written as JSON ``null`` (bare ``NaN`` is not JSON, and
JavaScript's ``JSON.parse`` rejects it), read back as NaN where the field is a float, so that the
summary, the report and the tables treat a diverged run as before."""

import json
import math

import pandas as pd
import pytest

import fmnist_pl
from fmnist_pl import report, store
from fmnist_pl.store import schema
from fmnist_pl.study.compare import finish
from tests.report.test_report import make_results

NAN, INF = float("nan"), float("inf")


def _strict(text: str) -> object:
    """Parse as a strict JSON reader does: no NaN, Infinity or -Infinity."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_are_written_as_null_at_any_depth():
    data = {"loss": NAN, "rows": [{"a": INF, "b": 1.5}, -INF, [NAN, 2]], "pair": (NAN, 0.25), "n": 3, "s": "NaN"}
    written = store.json_bytes(data).decode()
    assert _strict(written) == {
        "loss": None,
        "rows": [{"a": None, "b": 1.5}, None, [None, 2]],
        "pair": [None, 0.25],
        "n": 3,
        "s": "NaN",
    }
    finite = {"a": [1.0, 2], "b": {"c": 0.5}}
    assert store.json_bytes(finite, indent=None) == (json.dumps(finite) + "\n").encode()  # as before


@pytest.mark.parametrize("written", ["null", "NaN"], ids=["null", "bare NaN of older folders"])
def test_a_float_field_reads_null_and_bare_nan_back_as_nan(written):
    row = f'[{{"epoch": 1, "train_loss": {written}, "train_acc": 0.1, "val_loss": {written}, "val_acc": {written}, "seconds": 1.0}}]'
    (back,) = schema.History.validate_json(row)
    assert math.isnan(back.train_loss) and math.isnan(back.val_loss) and math.isnan(back.val_acc)
    assert back.images is None  # an optional field's null stays None


def _diverge(folder):
    """Make sgd a run that diverged at its last epoch: NaN losses in its history and test metrics,
    written through the store's own writers."""
    run = folder / "runs/sgd"
    history = json.loads((run / "history.json").read_text())
    history[-1] |= {"train_loss": NAN, "val_loss": INF, "val_acc": NAN}
    store.write_files(store.history_files(run, history))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics |= {"status": "diverged", "diverged_epoch": 3, "best_val_loss": None}
    metrics["test"]["last"]["loss"] = NAN
    store.write_json(run / "metrics.json", metrics)


def test_a_diverged_run_is_strict_json_on_disk_and_nan_when_read(tmp_path):
    folder = make_results(tmp_path / "cmp", ["sgd", "adam"])
    _diverge(folder)
    finish(folder)
    for path in folder.rglob("*.json"):
        _strict(path.read_text())  # every file, summary.json included
    run = next(r for r in store.load_compare(folder)["runs"] if r["run"] == "sgd")
    last = run["history"][-1]
    assert math.isnan(last["train_loss"]) and math.isnan(last["val_loss"]) and math.isnan(last["val_acc"])
    assert math.isnan(run["test"]["last"]["loss"]) and run["best_val_loss"] is None
    html = (folder / "report.html").read_text()
    assert "sgd diverged at epoch 3" in html
    summary = json.loads((folder / "summary.json").read_text())
    assert [r["run"] for r in summary["rows"]] == ["sgd", "adam"] and summary["rows"][0]["gap"] is None
    assert summary["rankings"]["accuracy"]["left_out"] == ["sgd"]
    (folder / "report.html").unlink()
    report.render(folder)  # from the saved summary.json, read back through its schema
    assert "sgd diverged at epoch 3" in (folder / "report.html").read_text()


def test_the_csv_tables_write_nan_as_pandas_reads_it(tmp_path):
    folder = make_results(tmp_path / "cmp", ["sgd", "adam"])
    _diverge(folder)
    finish(folder)
    results = fmnist_pl.load(folder)
    for name, table in (("runs.csv", results.runs), ("history.csv", results.history)):
        pd.testing.assert_frame_equal(pd.read_csv(folder / name), table)
    sgd = results.history[results.history["run"] == "sgd"]
    assert sgd["train_loss"].isna().tolist() == [False, False, True]
    assert math.isnan(results.runs.set_index("run").loc["sgd", "test_loss"])
