"""End to end on the real Fashion-MNIST with a small budget: every artifact, TensorBoard, the report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmnist_pl.engine.mlp import MLP

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def compare_run(real_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fmnist_pl",
            "compare",
            "--epochs",
            "2",
            "--limit-train-batches",
            "40",
            "--eval-points",
            "4",  # one validation mid-epoch in each epoch: every file is written, at a fifth of the default's cost
            "--optimizers",
            "sgd,rmsprop,adam,cem",
            "--name",
            "run1",
            "--output-dir",
            str(out),
            "--no-progress",
            "--accelerator",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(Path(__file__).parents[1]), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "run1", proc.stdout


def test_every_artifact_is_written(compare_run):
    folder, stdout = compare_run
    assert "runs 1-3 of 4: sgd, rmsprop, adam" in stdout and "ranking by accuracy:" in stdout
    assert "runs 4-4 of 4: cem - population 50, fitness batch 256" in stdout  # a gradient-free run trains alone
    assert f"report: {folder / 'report.html'}" in stdout
    assert len(json.loads((folder / "samples.json").read_text())["test_images"]) == 40
    assert not list(folder.rglob("*.png"))  # figures are drawn by the report, from these results
    config = json.loads((folder / "config.json").read_text())
    assert config["split"] == {"train": 55000, "val": 5000, "test": 10000}
    assert config["model"]["parameters"] == 266610
    for run in ("sgd", "rmsprop", "adam", "cem"):
        d = folder / "runs" / run
        for name in (
            "history.csv",
            "history.json",
            "metrics.json",
            "classification_report.txt",
            "predictions.json",
            "checkpoints/best.pt",
            "checkpoints/last.pt",
        ):
            assert (d / name).is_file(), f"{run}/{name}"
        history = json.loads((d / "history.json").read_text())
        assert [row["epoch"] for row in history] == [1, 2]
        metrics = json.loads((d / "metrics.json").read_text())
        # 40 generations of a population of 50 is far less training than 80 gradient steps' worth of images.
        assert (0.3 if run == "cem" else 0.5) < metrics["test"]["last"]["accuracy"] < 1.0
        batch = 256 if run == "cem" else 32
        assert history[-1]["images"] == 2 * 40 * batch
        assert history[-1]["evaluations"] == history[-1]["images"] * (50 if run == "cem" else 1)
        assert sum(metrics["test"]["last"]["support"]) == 10000
        assert sum(map(sum, metrics["test"]["last"]["confusion_matrix"])) == 10000
        assert "T-shirt/top" in (d / "classification_report.txt").read_text()
        assert len(json.loads((d / "predictions.json").read_text())["last"]) == 10000
        ckpt = torch.load(d / "checkpoints" / "best.pt", weights_only=True)
        net = MLP(ckpt["hidden"])
        net.load_state_dict(ckpt["state_dict"])  # a saved run loads into the plain nn.Module
    adam_state = json.loads((folder / "runs/adam/metrics.json").read_text())["optimizer_state_bytes"]
    assert adam_state == 2 * 266610 * 4  # exp_avg + exp_avg_sq, float32, measured from the state
    kernels = {
        name: json.loads((folder / f"runs/{name}/metrics.json").read_text())["optimizer_implementation"]
        for name in ("sgd", "rmsprop", "adam")
    }
    assert kernels == {"sgd": "fused", "rmsprop": "fused (C kernel)", "adam": "fused"}  # what ran, recorded
    cem = json.loads((folder / "runs/cem/metrics.json").read_text())
    assert cem["optimizer_implementation"].startswith("EvoTorch") and cem["optimizer"]["kind"] == "gradient-free"


def test_tensorboard_has_one_run_per_optimizer_with_the_scalar_tags(compare_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, _ = compare_run
    for run in ("sgd", "rmsprop", "adam", "cem"):
        acc = EventAccumulator(str(folder / "tensorboard" / run))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        assert {
            "train/loss",
            "train/acc",
            "val/loss",
            "val/acc",
            "test/acc",
            "test/f1",
            "compute/images",
            "compute/evaluations",
        } <= tags
        assert [e.step for e in acc.Scalars("val/acc")] == [1, 2]
        assert ("search/stdev" in tags) == (run == "cem")  # the search distribution's spread, per epoch


def test_report_contents_and_rerender(compare_run):
    folder, _ = compare_run
    html = (folder / "report.html").read_text()
    for text in (
        "Ranking",
        "Summary",
        "Per-class F1",
        "Classification reports",
        "266,610",
        "SGD",
        "Do these trained networks differ? One seed: networks, not optimizers",
        "validation accuracy vs seconds of training",
        "validation accuracy vs forward evaluations",
        "What each method spent",
        "cem: population 50 scoring batches of 256 images; 2 epochs = 20,480 images seen",
    ):
        assert text in html
    first = html
    proc = subprocess.run(
        [sys.executable, "-m", "fmnist_pl", "report", str(folder)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(Path(__file__).parents[1]), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0 and "report:" in proc.stdout
    assert (folder / "report.html").read_text().count("<tr>") == first.count("<tr>")


ARTIFACTS = Path(__file__).parents[1] / "outputs" / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")


def open_in_chromium(html: Path, screenshot: Path):
    """Load ``html`` in headless Chromium; return what a person's browser would have shown."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make system)")
    seen = {"requests": [], "dialogs": []}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
            page.goto(html.as_uri(), wait_until="load")
            seen["images"] = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
            seen["summary_rows"] = page.locator("table.summary-table tr").count()
            seen["ranking_rows"] = page.locator("table.ranking-table tr").count()
            seen["ranking_text"] = page.locator("p.ranking").all_inner_texts()
            seen["body"] = page.inner_text("body")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen


def test_report_in_a_real_browser(compare_run):
    folder, _ = compare_run
    seen = open_in_chromium(folder / "report.html", ARTIFACTS / "report.png")
    assert len(seen["images"]) >= 8 and all(w > 0 for w in seen["images"]), seen["images"]  # every image decoded
    assert seen["summary_rows"] == 1 + 4  # header + sgd, rmsprop, adam, cem
    assert seen["ranking_rows"] == 1 + 4  # header + 4 settings, accuracy and macro-F1 with intervals
    # The tests' notation, never a rounding tie: "~" not distinguishable, ">" significantly better.
    assert seen["ranking_text"] and all(" > " in t or " ~ " in t for t in seen["ranking_text"])
    off_file = [u for u in seen["requests"] if not u.startswith(("file://", "data:"))]
    assert off_file == []  # no request leaves the file
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_user_strings_render_as_text_in_the_browser(tmp_path):
    from fmnist_pl import report
    from tests.report.test_report import XSS, make_results

    folder = make_results(tmp_path / "xss", ["sgd", XSS])
    seen = open_in_chromium(report.render(folder), ARTIFACTS / "report-escaping.png")
    assert seen["dialogs"] == []  # the script did not run
    assert XSS in seen["body"]  # it is shown as text


def test_tensorboard_serves_the_runs_and_tags(compare_run):
    import socket
    import time
    import urllib.request

    folder, _ = compare_run
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(folder / "tensorboard"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while True:
            try:
                runs = json.loads(urllib.request.urlopen(f"{base}/data/runs", timeout=5).read())
                if set(runs) >= {"sgd", "adam"}:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline, "tensorboard did not come up"
            time.sleep(0.5)
        tags = json.loads(urllib.request.urlopen(f"{base}/data/plugin/scalars/tags", timeout=10).read())
        for run in ("sgd", "adam"):
            assert {"train/loss", "train/acc", "val/loss", "val/acc", "test/acc"} <= set(tags[run])
        scalars = json.loads(
            urllib.request.urlopen(f"{base}/data/plugin/scalars/scalars?run=adam&tag=val/acc", timeout=10).read()
        )
        assert [row[1] for row in scalars] == [1, 2]  # (wall time, step = epoch, value)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
