"""Fields that a hand edit or damage can change while each file still parses: ``fmnist-pl report DIR``
answers each with exit code 2 and one line naming the file, what is wrong in meaning (shape,
range, agreement with the other files) and the fix - never a traceback from deep in the report."""

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from fmnist_pl import report, store
from fmnist_pl.config import CompareConfig
from tests.conftest import run_cli
from tests.report.test_report import make_results

RUN_FIX = "rm -r -- {folder}/runs/sgd && fmnist-pl compare --resume {folder}"
SAMPLES_FIX = "rm -f -- {folder}/samples.json && fmnist-pl compare --resume {folder}"
CONFIG_FIX = "restore it, or delete it and re-run"
REPORT_FIX = "fmnist-pl report {folder}"
BOTH_FIX = "rm -r -- {folder}/runs/sgd {folder}/runs/adam && fmnist-pl compare --resume {folder}"
DEEP = 100_000  # levels of nesting: far past json's recursion limit


def _change(rel: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / rel
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return apply


def _text(rel: str, text: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        (folder / rel).write_text(text)

    return apply


def _folder_instead(rel: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        path = folder / rel
        path.unlink(missing_ok=True)
        path.mkdir()
        (path / "kept.txt").write_text("not fmnist-pl's")

    return apply


def _last(key: str, value: Any) -> Callable[[dict], dict]:
    return lambda m: m | {"test": m["test"] | {"last": m["test"]["last"] | {key: value}}}


def _confusion_row_empty(m: dict) -> dict:
    return _last("confusion_matrix", [[], *m["test"]["last"]["confusion_matrix"][1:]])(m)


METRICS, HISTORY, PREDICTIONS = "runs/sgd/metrics.json", "runs/sgd/history.json", "runs/sgd/predictions.json"

# name: (file the line names, tampering, what the line says, the fix it ends with)
TAMPERED = {
    "confusion row []": (
        METRICS,
        _change(METRICS, _confusion_row_empty),
        "test.last.confusion_matrix.0: List should have at least 10 items after validation, not 0",
        RUN_FIX,
    ),
    "classification report {}": (
        METRICS,
        _change(METRICS, _last("report", {})),
        "test.last.report: Value error, a classification report has a row for each of the 10 classes, accuracy, "
        "macro avg and weighted avg; T-shirt/top, Trouser, Pullover and 10 more missing",
        RUN_FIX,
    ),
    "accuracy 1e308": (
        METRICS,
        _change(METRICS, _last("accuracy", 1e308)),
        "test.last.accuracy: Input should be less than or equal to 1 (found 1e+308)",
        RUN_FIX,
    ),
    "macro F1 1e308": (
        METRICS,
        _change(METRICS, _last("macro_f1", 1e308)),
        "test.last.macro_f1: Value error, a precision, recall or F1 score must be between 0 and 1 (found 1e+308)",
        RUN_FIX,
    ),
    "negative loss": (
        METRICS,
        _change(METRICS, _last("loss", -1.0)),
        "test.last.loss: Value error, a loss (cross-entropy) cannot be negative",
        RUN_FIX,
    ),
    "best epoch 10**30": (
        METRICS,
        _change(METRICS, lambda m: m | {"best_epoch": 10**30}),
        "best_epoch: epoch 100000... (31 digits) is not one of the run's epochs (1 to 3)",
        RUN_FIX,
    ),
    "epochs 10**30": (
        METRICS,
        _change(METRICS, lambda m: m | {"epochs": 10**30}),
        "epochs: the run trained 100000... (31 digits) epochs, but config.json sets 3",
        RUN_FIX,
    ),
    "diverged at epoch 9 of 3": (
        METRICS,
        _change(METRICS, lambda m: m | {"status": "diverged", "diverged_epoch": 9}),
        "diverged_epoch: epoch 9 is not one of the run's epochs (1 to 3)",
        RUN_FIX,
    ),
    "a count of 10**30": (
        METRICS,
        _change(METRICS, lambda m: m | {"optimizer_state_bytes": 10**30}),
        "optimizer_state_bytes: Input should be less than or equal to 9007199254740992",
        RUN_FIX,
    ),
    "support one image too many": (
        METRICS,
        _change(
            METRICS,
            lambda m: _last("confusion_matrix", [[101] + [100] * 9] + [[100] * 10] * 9)(
                _last("support", [1001] + [1000] * 9)(m)
            ),
        ),
        "test.last.support: counts 10001 test images, but config.json's split has 10,000",
        RUN_FIX,
    ),
    "an integer of 5,000 digits": (
        METRICS,
        lambda folder: (folder / METRICS).write_text(
            (folder / METRICS).read_text().replace('"epochs": 3', '"epochs": 1' + "0" * 5000)
        ),
        "is not valid JSON (ValueError: Exceeds the limit (4300 digits)",
        RUN_FIX,
    ),
    "metrics.json a folder": (METRICS, _folder_instead(METRICS), "cannot be read (Is a directory)", RUN_FIX),
    "history nested 100,000 deep": (
        HISTORY,
        _text(HISTORY, "[" * DEEP + "]" * DEEP),
        "is not valid JSON (nested too deeply to be results)",
        RUN_FIX,
    ),
    "history an epoch short": (
        HISTORY,
        _change(HISTORY, lambda h: h[:2]),
        "(the whole file): 2 epochs, but metrics.json says the run trained 3",
        RUN_FIX,
    ),
    "history epoch 7 of 3": (
        HISTORY,
        _change(HISTORY, lambda h: [*h[:2], h[2] | {"epoch": 7}]),
        "2.epoch: epoch 7 where epoch 3 was expected (a row per epoch, in order)",
        RUN_FIX,
    ),
    "history images 10**30": (
        HISTORY,
        _change(HISTORY, lambda h: [h[0] | {"images": 10**30}, *h[1:]]),
        "0.images: Input should be less than or equal to 9007199254740992",
        RUN_FIX,
    ),
    "history.json a folder": (HISTORY, _folder_instead(HISTORY), "cannot be read (Is a directory)", RUN_FIX),
    # Two runs that disagree: nothing tells which is right, so the line names both and the fix writes both again.
    "predictions shortened": (
        PREDICTIONS,
        _change(PREDICTIONS, lambda d: {k: v[:-1] for k, v in d.items()}),
        "targets: 999 test labels, where adam's are 1,000, and no other run tells which are the test set's (a "
        "compare tests all its runs on one test set",
        BOTH_FIX,
    ),
    "predictions of another test set": (
        PREDICTIONS,
        _change(PREDICTIONS, lambda d: d | {"targets": [(t + 1) % 10 for t in d["targets"]]}),
        "targets: its test labels differ from adam's, and no other run tells which are the test set's",
        BOTH_FIX,
    ),
    # Three: the two that agree are the test set, the third is named alone.
    "predictions shortened, 3 runs": (
        PREDICTIONS,
        _change(PREDICTIONS, lambda d: {k: v[:-1] for k, v in d.items()}),
        "targets: 999 test labels, where those of 2 other runs are 1,000 (a compare tests all its runs on one",
        RUN_FIX,
    ),
    "predictions label 42": (
        PREDICTIONS,
        _change(PREDICTIONS, lambda d: d | {"best": d["best"][:7] + [42] + d["best"][8:]}),
        "best.7: Input should be less than 10 (found 42)",
        RUN_FIX,
    ),
    "predictions a list": (
        PREDICTIONS,
        _change(PREDICTIONS, lambda d: d["last"]),
        "(the whole file): Input should be a valid dictionary",
        RUN_FIX,
    ),
    "predictions.json a folder": (
        PREDICTIONS,
        _folder_instead(PREDICTIONS),
        "cannot be read (Is a directory)",
        RUN_FIX,
    ),
    "samples label 99": (
        "samples.json",
        _change("samples.json", lambda d: d | {"train_labels": [99, *d["train_labels"][1:]]}),
        "train_labels.0: Input should be less than 10 (found 99)",
        SAMPLES_FIX,
    ),
    "samples image of 3 pixels": (
        "samples.json",
        _change("samples.json", lambda d: d | {"test_images": [[0, 0, 0], *d["test_images"][1:]]}),
        "test_images.0: List should have at least 784 items after validation, not 3",
        SAMPLES_FIX,
    ),
    "samples.json a folder": ("samples.json", _folder_instead("samples.json"), "cannot be read", SAMPLES_FIX),
    "config model {}": (
        "config.json",
        _change("config.json", lambda d: d | {"model": {}}),
        "model.hidden: Field required",
        CONFIG_FIX,
    ),
    "config split {}": (
        "config.json",
        _change("config.json", lambda d: d | {"split": {}}),
        "split.train: Field required",
        CONFIG_FIX,
    ),
    "config split test 0": (
        "config.json",
        _change("config.json", lambda d: d | {"split": d["split"] | {"test": 0}}),
        "split.test: Input should be greater than or equal to 1 (found 0)",
        CONFIG_FIX,
    ),
    "config model summary a string": (
        "config.json",
        _change("config.json", lambda d: d | {"model": d["model"] | {"summary": "Dense 300"}}),
        "model.summary: Input should be a valid list (found 'Dense 300')",
        CONFIG_FIX,
    ),
    "config parameters of another model": (
        "config.json",
        _change("config.json", lambda d: d | {"model": d["model"] | {"parameters": 5}}),
        "model: Value error, parameters is 5, but hidden layers [300, 100] have 266,610 parameters",
        CONFIG_FIX,
    ),
    "config hidden layer of 0 units": (
        "config.json",
        _change("config.json", lambda d: d | {"runs": [r | {"hidden": [0]} for r in d["runs"]]}),
        "runs.0.hidden.0: Input should be greater than or equal to 1 (found 0)",
        CONFIG_FIX,
    ),
    "config optimizer without its class": (
        "config.json",
        _change(
            "config.json",
            lambda d: d | {"runs": [r | {"optimizer": {"name": "sgd", "hparams": {}}} for r in d["runs"]]},
        ),
        'runs.0.optimizer: Value error, an optimizer entry names its torch or EvoTorch class under "class"',
        CONFIG_FIX,
    ),
    "config nested 100,000 deep": (
        "config.json",
        _text("config.json", "[" * DEEP + "]" * DEEP),
        "is not valid JSON (nested too deeply to be results)",
        "re-run the compare",
    ),
    "config.json a folder": (
        "config.json",
        _folder_instead("config.json"),
        "cannot be read (Is a directory)",
        "re-run the compare",
    ),
    "summary.json a folder": (
        "summary.json",
        _folder_instead("summary.json"),
        "is a folder, where fmnist-pl writes its summary.json; fmnist-pl deletes nothing it did not write",
        REPORT_FIX,
    ),
    "report.html a folder": (
        "report.html",
        _folder_instead("report.html"),
        "is a folder, where fmnist-pl writes its report.html; fmnist-pl deletes nothing it did not write",
        REPORT_FIX,
    ),
}


# Read before load_compare, by code outside the store's schemas: RecursionError is not caught there yet.
@pytest.mark.parametrize(
    "case",
    list(TAMPERED),
)
def test_report_of_a_tampered_folder_is_exit_2_and_one_line_naming_the_file(tmp_path, case):
    folder = make_results(tmp_path / "cmp", ["sgd", "adam", "rmsprop"] if "3 runs" in case else ["sgd", "adam"])
    rel, tamper, problem, fix = TAMPERED[case]
    tamper(folder)
    proc = run_cli("report", str(folder), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    line = lines[0]
    assert line.startswith((f"error: {folder / rel}:", f"error: {folder / rel} ")), line
    assert problem in line, line
    assert line.endswith(fix.format(folder=folder)), line
    assert not (folder / "report.html").is_file()
    if (folder / rel).is_dir():  # not ours: left as it was
        assert [p.name for p in (folder / rel).iterdir()] == ["kept.txt"]


def test_settings_missing_from_config_json_are_read_as_the_defaults_the_compare_ran_with(tmp_path):
    folder = make_results(tmp_path / "cmp", ["sgd"])
    _change("config.json", lambda d: d | {"config": {"epochs": 3}})(folder)
    setup = store.load_compare(folder)["config"]["config"]
    assert setup["epochs"] == 3 and setup["batch_size"] == CompareConfig().batch_size
    html = report.render(folder).read_text()  # the setup table: epochs, batch size, seeds
    assert "<td>epochs</td><td>3</td>" in html and "<td>batch size</td><td>32</td>" in html
    assert "<td>seeds</td><td>1 (first seed 42" in html
