"""Every file the report and the summary read back goes through its schema: a damaged or missing
file is one line naming the file, the field and the fix - never a traceback, never a silent gap."""

import json
import shlex

import pytest

from fmnist_pl import report, store
from fmnist_pl.store import schema
from fmnist_pl.study.compare import finish
from tests.report.test_report import make_results


def _change(rel, change):
    def apply(folder):
        path = folder / rel
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return apply


def _delete(rel):
    def apply(folder):
        (folder / rel).unlink()

    return apply


def _confusion_row_empty(m):
    last = m["test"]["last"]
    return m | {"test": m["test"] | {"last": last | {"confusion_matrix": [[], *last["confusion_matrix"][1:]]}}}


RUN_FIX = "rm -r -- {folder}/runs/sgd && fmnist-pl compare --resume {folder}"
SAMPLES_FIX = "rm -f -- {folder}/samples.json && fmnist-pl compare --resume {folder}"

DAMAGE = {
    "predictions shortened": (
        "runs/sgd/predictions.json",
        _change("runs/sgd/predictions.json", lambda d: d | {"last": d["last"][:-1]}),
        "targets, last and best must have one label per test image; they have 1000, 999 and 1000",
        RUN_FIX,
    ),
    "label 42": (
        "runs/sgd/predictions.json",
        _change("runs/sgd/predictions.json", lambda d: d | {"best": d["best"][:7] + [42] + d["best"][8:]}),
        "best.7: Input should be less than 10 (found 42)",
        RUN_FIX,
    ),
    "predictions missing": ("runs/sgd/predictions.json", _delete("runs/sgd/predictions.json"), "is missing", RUN_FIX),
    "image of 3 pixels": (
        "samples.json",
        _change("samples.json", lambda d: d | {"test_images": [[0, 0, 0]] + d["test_images"][1:]}),
        "test_images.0: List should have at least 784 items after validation, not 3",
        SAMPLES_FIX,
    ),
    "pixel 256": (
        "samples.json",
        _change("samples.json", lambda d: d | {"train_images": [[256] * 784] + d["train_images"][1:]}),
        "train_images.0.0: Input should be less than or equal to 255 (found 256)",
        SAMPLES_FIX,
    ),
    "samples missing": ("samples.json", _delete("samples.json"), "is missing", SAMPLES_FIX),
    "history missing": ("runs/sgd/history.json", _delete("runs/sgd/history.json"), "is missing", RUN_FIX),
    "confusion row []": (
        "runs/sgd/metrics.json",
        _change("runs/sgd/metrics.json", _confusion_row_empty),
        "test.last.confusion_matrix.0: List should have at least 10 items after validation, not 0",
        RUN_FIX,
    ),
    "accuracy 1.5": (
        "runs/sgd/metrics.json",
        _change(
            "runs/sgd/metrics.json", lambda m: m | {"test": m["test"] | {"best": m["test"]["best"] | {"accuracy": 1.5}}}
        ),
        "test.best.accuracy: Input should be less than or equal to 1 (found 1.5)",
        RUN_FIX,
    ),
    "not JSON": (
        "runs/sgd/predictions.json",
        lambda folder: (folder / "runs/sgd/predictions.json").write_text('{"tar'),
        "is not valid JSON",
        RUN_FIX,
    ),
}


@pytest.mark.parametrize("render", [report.render, finish], ids=["render", "finish"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_or_missing_file_is_one_line_naming_file_field_and_fix(tmp_path, damage, render):
    folder = make_results(tmp_path / "cmp", ["sgd", "adam"])
    rel, apply, problem, fix = DAMAGE[damage]
    apply(folder)
    with pytest.raises(store.ResultsError) as info:
        render(folder)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith((f"{folder / rel}:", f"{folder / rel} "))
    assert problem in message
    assert message.endswith(fix.format(folder=folder))
    assert not (folder / "report.html").exists() and not (folder / "summary.json").exists()


def test_the_fix_is_shell_quoted(tmp_path):
    folder = make_results(tmp_path / "a folder; rm -rf ~", ["sgd"])
    (folder / "runs/sgd/predictions.json").unlink()
    with pytest.raises(store.ResultsError) as info:
        report.render(folder)
    command = str(info.value).split("then resume: ", 1)[1]
    assert shlex.split(command) == [
        "rm",
        "-r",
        "--",
        str(folder / "runs/sgd"),
        "&&",
        "fmnist-pl",
        "compare",
        "--resume",
        str(folder),
    ]


def test_a_damaged_summary_is_an_error_whose_fix_rebuilds_it(tmp_path):
    folder = make_results(tmp_path / "cmp", ["sgd", "adam"])
    finish(folder)
    summary = json.loads((folder / "summary.json").read_text())
    summary["rows"][0]["status"] = "fine"
    (folder / "summary.json").write_text(json.dumps(summary))
    expected = r"summary.json: rows.0.status: Input should be 'ok' or 'diverged'"
    with pytest.raises(store.ResultsError, match=expected) as info:
        report.render(folder)  # reads the saved summary
    assert str(info.value).endswith(f"rebuild it from the runs' files: fmnist-pl report {folder}")
    finish(folder)  # what `fmnist-pl report DIR` runs: the summary computed again
    assert store.read_checked(folder / "summary.json", schema.SummaryFile).rows[0].status == "ok"


def test_what_is_read_back_is_validated_with_the_defaults_filled_in(tmp_path):
    folder = make_results(tmp_path / "cmp", ["sgd"])
    loaded = store.load_compare(folder)
    run = loaded["runs"][0]
    # Written without these: the schema's defaults, not each reader's own.
    assert run["timing"]["lockstep_runs"] == 1 and run["optimizer"]["kind"] == "gradient"
    assert run["diverged_epoch"] is None and run["history"][0]["images"] is None
    assert loaded["config"]["config"]["epochs"] == 3  # the shape callers index stays as it was
    predictions = store.read_predictions(folder, "sgd")
    assert isinstance(predictions, schema.PredictionsFile) and len(predictions.targets) == 1000
    groups = folder / "checkpoints" / store.GROUPS_FILE
    store.write_json(groups, {"groups": [["sgd"]]})
    assert store.read_checked(groups, schema.GroupsFile).groups == [["sgd"]]  # a model back, not a dict


@pytest.mark.parametrize(
    "train, test, ok", [(40, 40, True), (5, 3, True), (0, 0, True), (41, 40, False), (40, 41, False)]
)
def test_samples_hold_up_to_40_images_of_each_set(train, test, ok):
    data = {"train_images": [[0] * 784] * train, "train_labels": [1] * train, "test_images": [[255] * 784] * test}
    if ok:
        assert len(schema.SamplesFile.model_validate(data).test_images) == test
    else:
        with pytest.raises(ValueError, match="at most 40 items"):
            schema.SamplesFile.model_validate(data)


def test_samples_need_a_label_per_training_image():
    data = {"train_images": [[0] * 784] * 5, "train_labels": [1] * 4, "test_images": []}
    with pytest.raises(ValueError, match="5 train_images but 4 train_labels"):
        schema.SamplesFile.model_validate(data)


def test_the_confusion_matrix_must_count_the_support():
    from tests.report.test_report import _metrics

    metrics = _metrics(0.9)
    schema.TestMetrics.model_validate(metrics)
    metrics["confusion_matrix"] = [[100] * 10] * 9 + [[100] * 9 + [99]]
    with pytest.raises(ValueError, match="rows count .* images per class, the support"):
        schema.TestMetrics.model_validate(metrics)


def test_the_setup_writes_samples_the_report_reads_back_with_small_data(tmp_path):
    """Fewer than 40 images where the data has fewer (7 test images here)."""
    from fmnist_pl.config import CompareConfig
    from fmnist_pl.data.idx import load_arrays
    from fmnist_pl.plan import plan
    from fmnist_pl.study.setup import write_setup
    from tests.conftest import make_dataset

    arrays = load_arrays(make_dataset(tmp_path / "data", n_train=60, n_test=7), counts=None)
    config = CompareConfig(optimizers=("sgd",), epochs=1, hidden=(8,), val_size=10, output_dir=str(tmp_path))
    out = tmp_path / "out"
    write_setup(out, config, plan(config), None, arrays, "cpu", None)
    samples = store.read_samples(out)
    assert (len(samples.train_images), len(samples.train_labels), len(samples.test_images)) == (40, 40, 7)
    assert samples.train_labels == arrays.train_labels[:40].tolist()
    assert samples.test_images[6] == arrays.test_images[6].reshape(-1).tolist()
