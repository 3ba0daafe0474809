"""Seeds with uncertainty and significance, and the learning-rate sweep, on the real data (tiny budget)."""

import json
import subprocess

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.realdata


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, "--no-progress", "--accelerator", "cpu", timeout=600)


def test_seeds_give_uncertainty_and_a_paired_test(real_data, tmp_path):
    proc = cli(
        "compare",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--limit-train-batches",
        "40",
        "--eval-points",
        "0",
        "--optimizers",
        "sgd,adam",
        "--output-dir",
        str(tmp_path),
        "--name",
        "s2",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = tmp_path / "s2"
    assert {p.name for p in (folder / "runs" / "adam").iterdir()} == {"seed-42", "seed-43"}
    h42 = json.loads((folder / "runs/adam/seed-42/history.json").read_text())
    h43 = json.loads((folder / "runs/adam/seed-43/history.json").read_text())
    assert h42[0]["val_loss"] != h43[0]["val_loss"]  # different seeds, different runs
    # The verdict's unit is the training run: a paired t-test over the 2 seeds.
    assert "pairs (paired t-test over 2 seeds" in proc.stdout
    html = (folder / "report.html").read_text()
    for text in (
        'id="significance"',
        "Across seeds (mean ± std, min–max)",
        "(2 seeds)",
        "±",
        "adam: validation loss rose for the last 3 epochs after its minimum in",
    ):
        assert text in html
    assert html.count("<tr><td>adam vs sgd</td>") + html.count("<tr><td>sgd vs adam</td>") == 1


def test_sweep_tunes_on_validation_then_compares(real_data, tmp_path):
    proc = cli(
        "sweep",
        "--optimizers",
        "sgd,adam",
        "--lrs",
        "1e-3:1e1:3",
        "--epochs",
        "1",
        "--limit-train-batches",
        "40",
        "--eval-points",
        "0",
        "--output-dir",
        str(tmp_path),
        "--name",
        "sw",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    top = tmp_path / "sw"
    chosen = json.loads((top / "sweep.json").read_text())
    assert set(chosen) == {"sgd", "adam"}
    # adam at lr 10 explodes: marked diverged, never chosen, and the sweep went on
    assert 10.0 in chosen["adam"]["diverged"] and chosen["adam"]["chosen"] != 10.0
    sweep_metrics = json.loads((top / "sweep/runs/adam/lr-10/metrics.json").read_text())
    assert sweep_metrics["status"] == "diverged"
    for name, row in chosen.items():  # the choice is the best VALIDATION accuracy
        assert row["chosen"] == row["lrs"][row["val_acc"].index(max(row["val_acc"]))]
        assert row["by_validation"][0] == {"value": row["chosen"], "val_acc": max(row["val_acc"])}
        edge = {1e-3: "smallest", 1e1: "largest"}.get(row["chosen"])
        assert row["at_edge"] == edge
        assert (f"{name} chose lr {row['chosen']:g}, the {edge} of --lrs" in proc.stdout) == (edge is not None)
        # The verdict is on fresh seeds (--final-seeds 2 after tuning seed 42), not the grid's runs again.
        assert row["seeds"] == [42] and row["final_seeds"] == [43, 44]
        for seed in (43, 44):
            final = json.loads((top / f"final/runs/{name}/seed-{seed}/metrics.json").read_text())
            assert final["optimizer"]["hparams"]["lr"] == row["chosen"] and final["seed"] == seed
    html = (top / "final/report.html").read_text()
    assert 'id="sweep"' in html and "learning-rate sweep" not in html.split('id="sweep"')[0]
    assert "tuned on seed 42 (validation), compared on fresh seeds 43-44" in html
    assert "adam: lr=" in proc.stdout and "tuned on validation, val acc" in proc.stdout
    assert "Its test numbers are not for selection" in (top / "sweep/report.html").read_text()


def test_several_architectures_rank_within_each(real_data, tmp_path):
    proc = cli(
        "compare",
        "--hidden",
        "300,100",
        "--hidden",
        "64",
        "--epochs",
        "1",
        "--limit-train-batches",
        "30",
        "--eval-points",
        "0",
        "--optimizers",
        "sgd,adam",
        "--output-dir",
        str(tmp_path),
        "--name",
        "arch",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "runs 1-2 of 4" in proc.stdout and "runs 3-4 of 4" in proc.stdout
    folder = tmp_path / "arch"
    small = json.loads((folder / "runs/h64/adam/metrics.json").read_text())
    assert small["hidden"] == [64] and small["optimizer_state_bytes"] == 2 * (784 * 64 + 64 + 64 * 10 + 10) * 4
    html = (folder / "report.html").read_text()
    section = html.split('id="architectures"')[1].split("</section>")[0]
    assert "h300-100" in section and "h64" in section and "266,610" in section and "50,890" in section


def test_lr_find_alternative(real_data, tmp_path):
    proc = cli(
        "sweep",
        "--lr-find",
        "--optimizers",
        "sgd,adam",
        "--epochs",
        "1",
        "--limit-train-batches",
        "30",
        "--eval-points",
        "0",
        "--output-dir",
        str(tmp_path),
        "--name",
        "lf",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    chosen = json.loads((tmp_path / "lf/sweep.json").read_text())
    for name in ("sgd", "adam"):
        row = chosen[name]
        assert row["method"] == "lr_find" and 1e-6 <= row["chosen"] <= 1.0
        assert len(row["finder_lrs"]) > 10 and row["finder_lrs"] == sorted(row["finder_lrs"])
        final = json.loads((tmp_path / "lf/final/runs" / name / "seed-43/metrics.json").read_text())
        assert final["optimizer"]["hparams"]["lr"] == row["chosen"]  # on fresh seeds 43-44
    html = (tmp_path / "lf/final/report.html").read_text()
    assert "Tuner.lr_find" in html and 'id="sweep"' in html


def test_separate_runs_time_each_optimizer_alone_with_the_same_numbers(real_data, tmp_path):
    args = ("--epochs", "1", "--limit-train-batches", "30", "--eval-points", "0", "--optimizers", "sgd,adam")
    args += ("--output-dir", str(tmp_path))
    assert cli("compare", *args, "--name", "together", "--workers", "1").returncode == 0  # one lockstep group
    proc = cli("compare", *args, "--name", "alone", "--separate")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "runs 1-1 of 2: sgd" in proc.stdout and "runs 2-2 of 2: adam" in proc.stdout
    for run in ("sgd", "adam"):
        alone = json.loads((tmp_path / f"alone/runs/{run}/metrics.json").read_text())
        together = json.loads((tmp_path / f"together/runs/{run}/metrics.json").read_text())
        assert alone["timing"]["lockstep_runs"] == 1 and together["timing"]["lockstep_runs"] == 2
        assert alone["test"] == together["test"]  # the same numbers, to the last digit
        history = [
            json.loads((tmp_path / f"{name}/runs/{run}/history.json").read_text()) for name in ("alone", "together")
        ]
        assert [{k: v for k, v in row.items() if k != "seconds"} for row in history[0]] == [
            {k: v for k, v in row.items() if k != "seconds"} for row in history[1]
        ]
