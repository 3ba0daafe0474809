"""The whole compare API in-process on generated data: plan -> engine -> results -> summary -> report."""

import json

import pytest

from fmnist_pl.data.idx import load_arrays
from fmnist_pl.study.compare import compare
from tests.conftest import history_rows, small_config


def _config(tmp_path, name, **kw):
    return small_config(tmp_path, name, **kw)


def _history(folder, run):
    return history_rows(folder, run)


def test_compare_runs_in_process_on_arrays(fake_data, tmp_path):
    lines = []
    folder = compare(_config(tmp_path, "api"), arrays=load_arrays(fake_data, counts=None), echo=lines.append)
    assert any(line.startswith("runs 1-2 of 2: sgd, adam") for line in lines)
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == 2 and config["split"] == {"train": 500, "val": 100, "test": 200}
    assert [r["run"] for r in config["runs"]] == ["sgd", "adam"]
    # What changes numbers is recorded: flush-to-zero's reach, matmul precision.
    assert config["numerics"]["flush_to_zero"] in ("every thread", "main thread only", "none (the CPU has no FTZ/DAZ)")
    assert config["numerics"]["float32_matmul_precision"] == "highest"
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["rankings"]["accuracy"]["values"]) == {"sgd", "adam"}
    assert summary["significance"]["text"]  # computed once, on disk
    metrics = json.loads((folder / "runs/adam/metrics.json").read_text())
    assert metrics["setting"] == "adam" and metrics["seed"] == 42 and metrics["hidden"] == [32]
    assert metrics["test"]["last"]["accuracy"] > 0.3
    assert "adam" in (folder / "report.html").read_text()


def test_separate_runs_with_seeds_train_each_seeds_own_batches(fake_data, tmp_path):
    """`--separate --seeds 2` once crashed (every group got every seed's batches)."""
    arrays = load_arrays(fake_data, counts=None)
    alone = compare(
        _config(tmp_path, "alone", optimizers=("sgd",), seeds=2, separate=True), arrays=arrays, echo=lambda _: None
    )
    together = compare(_config(tmp_path, "together", seeds=2), arrays=arrays, echo=lambda _: None)
    for seed in (42, 43):
        a = json.loads((alone / f"runs/sgd/seed-{seed}/metrics.json").read_text())
        assert a["timing"]["lockstep_runs"] == 1 and a["seed"] == seed
        # Its own seed's weights and batch order: the same numbers as inside the four-run group.
        assert _history(alone, f"sgd/seed-{seed}") == _history(together, f"sgd/seed-{seed}")
    assert _history(alone, "sgd/seed-42") != _history(alone, "sgd/seed-43")


def test_val_size_must_leave_training_images(fake_data, tmp_path):
    from fmnist_pl.config import ConfigError

    with pytest.raises(ConfigError, match="leaves no training images"):
        compare(_config(tmp_path, "x", val_size=600), arrays=load_arrays(fake_data, counts=None))
    assert not (tmp_path / "x").exists()


def test_a_group_too_big_for_memory_is_cut_and_trains_with_the_same_numbers(fake_data, tmp_path, monkeypatch):
    """A big study never dies of out-of-memory: its lockstep group is cut (at seed boundaries) to fit."""
    from fmnist_pl.engine import memory
    from fmnist_pl.plan import group_need, plan

    arrays = load_arrays(fake_data, counts=None)
    config = _config(tmp_path, "whole", optimizers=("sgd", "adam"), seeds=2)
    whole = compare(config, arrays=arrays, echo=lambda _: None)
    two_runs = group_need(plan(config)[:2], config.batch_size)
    monkeypatch.setattr(memory, "available_bytes", lambda device: (two_runs, "free in this test"))
    lines: list[str] = []
    cut = compare(_config(tmp_path, "cut", optimizers=("sgd", "adam"), seeds=2), arrays=arrays, echo=lines.append)
    assert any("do not fit in this device's memory at once: 2 lockstep groups of 2-2 runs" in line for line in lines)
    saved = json.loads((cut / "checkpoints/groups.json").read_text())["groups"]
    assert saved == [["sgd/seed-42", "adam/seed-42"], ["sgd/seed-43", "adam/seed-43"]]
    for run in ("sgd/seed-42", "adam/seed-43"):
        assert _history(cut, run) == _history(whole, run)
