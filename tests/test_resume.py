"""Nothing lost: kill -9, Ctrl-C and SIGTERM in the middle of a compare or a tune, then --resume (real data)."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import start_cli

pytestmark = pytest.mark.realdata
ARGS = [
    "--epochs",
    "3",
    "--limit-train-batches",
    "150",
    "--optimizers",
    "sgd,adam",
    "--no-progress",
    "--accelerator",
    "cpu",
    "--eval-points",
    "6",  # a validation mid-epoch in each epoch (each costs as much as a third of one of these epochs)
]


def cli(*args: str) -> subprocess.Popen:
    return start_cli(*args)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def start_and_stop(out: Path, name: str, sig: int) -> tuple[int, str, str]:
    """Start a compare, wait for its first epoch checkpoint, then send ``sig``."""
    proc = cli("compare", *ARGS, "--output-dir", str(out), "--name", name)
    ckpt = out / name / "checkpoints" / "group-sgd" / "last.ckpt"
    deadline = time.time() + 300
    while not ckpt.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(sig)
    return finish(proc)


def histories(folder: Path) -> dict:
    return {run: json.loads((folder / "runs" / run / "history.json").read_text()) for run in ("sgd", "adam")}


def anytime(folder: Path) -> dict:
    """Each run's validations between epoch ends, without their seconds."""
    return {
        run: [
            {k: v for k, v in p.items() if k != "seconds"}
            for p in json.loads((folder / "runs" / run / "anytime.json").read_text())
        ]
        for run in ("sgd", "adam")
    }


@pytest.fixture(scope="module")
def uninterrupted(real_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume")
    rc, _, err = finish(cli("compare", *ARGS, "--output-dir", str(out), "--name", "whole"))
    assert rc == 0, err[-2000:]
    return out, {"history": histories(out / "whole"), "anytime": anytime(out / "whole")}


def assert_same_results(folder: Path, reference: dict) -> None:
    got = histories(folder)
    for run in reference["history"]:
        assert [r["epoch"] for r in got[run]] == [1, 2, 3]
        for a, b in zip(got[run], reference["history"][run]):
            for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
                assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (run, a["epoch"], key)
    # The points between epoch ends continue where they stopped: none lost, none taken twice.
    points = anytime(folder)
    assert [len(p) for p in points.values()] == [3, 3]
    for run, want in reference["anytime"].items():
        assert [(p["epoch"], p["images"]) for p in points[run]] == [(p["epoch"], p["images"]) for p in want]
        assert [p["val_acc"] for p in points[run]] == pytest.approx([p["val_acc"] for p in want], abs=1e-7), run
    html = (folder / "report.html").read_text()
    assert 'id="missing"' not in html


def test_kill_9_then_resume_gives_the_uninterrupted_results(uninterrupted):
    out, reference = uninterrupted
    rc, _, _ = start_and_stop(out, "killed", signal.SIGKILL)
    assert rc == -signal.SIGKILL
    folder = out / "killed"
    for path in folder.rglob("*.json"):  # every results file complete or absent
        json.loads(path.read_text())
    # What a kill in the middle of a write leaves: the writer's hidden temporary file.
    (folder / "checkpoints/group-sgd/.last.ckpt.x1y2.fmnist-pl.tmp").write_bytes(b"\0" * 1000)
    rc, stdout, err = finish(cli("compare", "--resume", str(folder)))
    assert rc == 0, err[-2000:]
    assert "resuming from" in stdout
    assert not list(folder.rglob("*.fmnist-pl.tmp"))  # cleaned on the next start
    assert_same_results(folder, reference)
    for run in ("sgd", "adam"):  # times add up across the interruption (all three epochs, not the resumed two)
        metrics = json.loads((folder / "runs" / run / "metrics.json").read_text())
        epochs = sum(row["seconds"] for row in json.loads((folder / "runs" / run / "history.json").read_text()))
        assert metrics["timing"]["fit_seconds"] >= 0.9 * epochs


@pytest.mark.parametrize("sig, name, code", [(signal.SIGINT, "ctrl-c", 130), (signal.SIGTERM, "sigterm", 143)])
def test_interrupt_stops_cleanly_renders_the_report_and_says_how_to_resume(uninterrupted, sig, name, code):
    out, reference = uninterrupted
    rc, _, err = start_and_stop(out, name, sig)
    folder = out / name
    assert rc == code, err[-2000:]
    assert f"fmnist-pl compare --resume {folder}" in err and "Traceback" not in err
    assert (folder / "checkpoints" / "group-sgd" / "last.ckpt").is_file()
    assert 'id="missing"' in (folder / "report.html").read_text()
    rc, _, err = finish(cli("compare", "--resume", str(folder)))
    assert rc == 0, err[-2000:]
    assert_same_results(folder, reference)


def test_same_name_without_resume_is_refused(uninterrupted):
    out, _ = uninterrupted
    rc, _, err = finish(cli("compare", *ARGS, "--output-dir", str(out), "--name", "whole"))
    assert rc == 2 and "already holds a compare" in err and "--resume" in err


TUNE = [
    "tune",
    "--optimizers",
    "sgd,adam",
    "--trials",
    "2",
    "--epochs",
    "2",
    "--limit-train-batches",
    "100",
    "--final-seeds",
    "1",
    "--no-defaults",
    "--eval-points",
    "0",
    "--no-progress",
]


def _trials(top: Path) -> dict:
    """Per method, each trial's (parameters, status, value), from tuning.json."""
    summary = json.loads((top / "tuning.json").read_text())
    return {
        name: [(t["params"], t["status"], t["value"]) for t in m["trials"]] for name, m in summary["methods"].items()
    }


def test_a_tune_killed_mid_round_resumes_to_the_uninterrupted_tune(real_data, tmp_path):
    rc, _, err = finish(cli(*TUNE, "--output-dir", str(tmp_path), "--name", "whole"))
    assert rc == 0, err[-2000:]
    proc = cli(*TUNE, "--output-dir", str(tmp_path), "--name", "killed")
    top = tmp_path / "killed"
    deadline = time.time() + 300
    while not list((top / "round-1" / "checkpoints").glob("*/last.ckpt")):  # the trials' first epoch is in
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert finish(proc)[0] == -signal.SIGKILL
    assert not (top / "tuning.json").exists() and not (top / "final").exists()
    rc, _, err = finish(cli("tune", "--resume", str(top)))
    assert rc == 0, err[-2000:]
    got, want = _trials(top), _trials(tmp_path / "whole")
    assert got.keys() == want.keys()
    for name in want:  # the same trials asked, none twice, each trained on from its checkpoint to the same value
        assert [(p, s) for p, s, _ in got[name]] == [(p, s) for p, s, _ in want[name]]
        assert [v for *_, v in got[name]] == pytest.approx([v for *_, v in want[name]], rel=1e-6, abs=1e-7)
    for run in ("sgd", "adam"):  # the final runs: the same choice, trained the same
        a = json.loads((top / "final" / "runs" / run / "history.json").read_text())
        b = json.loads((tmp_path / "whole" / "final" / "runs" / run / "history.json").read_text())
        assert [r["val_acc"] for r in a] == pytest.approx([r["val_acc"] for r in b], rel=1e-6, abs=1e-7)
