"""Runs that go on from another group's checkpoint (successive halving's survivors) end exactly where
they would have ended trained in one go: weights, optimizer state, every epoch's numbers."""

import json
from dataclasses import replace

import pytest
import torch

from fmnist_pl import store
from fmnist_pl.data.idx import load_arrays
from fmnist_pl.engine.carry import sources
from fmnist_pl.study.compare import compare
from tests.conftest import small_config

ALL = ("sgd", "momentum", "rmsprop", "adam")


def _run(folder, run):
    """A run's epochs (without their wall seconds) and its last weights and optimizer state."""
    rows = json.loads((folder / "runs" / run / "history.json").read_text())
    last = torch.load(folder / "runs" / run / "checkpoints" / "last.pt", weights_only=True)
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows], last


def _same(a, b):
    """Equal tensors (bit for bit), lists and dicts, recursively."""
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


@pytest.mark.parametrize("schedule", ["constant", "warmup-cosine"])
def test_survivors_going_on_from_a_rung_end_as_if_never_cut(tmp_path, fake_data, schedule):
    """A rung trains four optimizers x two seeds in one group and stops after epoch 1 of 3; three of the
    optimizers go on in a new group from its checkpoint (SGD's instance now holds momentum alone, so
    the optimizer state is remapped) and must equal the same three trained for 3 epochs in one go."""
    arrays = load_arrays(fake_data, counts=None)
    base = small_config(tmp_path, "rung", optimizers=ALL, seeds=2, epochs=3, schedule=schedule, eval_points=5)
    rung = compare(replace(base, stop_epoch=1), echo=lambda _: None, arrays=arrays, write_report=False)
    found = sources(rung)
    assert len(found) == 8 and len({path for path, _ in found.values()}) == 1  # one group of eight
    survivors = ("momentum", "rmsprop", "adam")
    lines: list[str] = []
    went_on = compare(
        replace(base, name="went-on", optimizers=survivors),
        echo=lines.append,
        arrays=arrays,
        write_report=False,
        carry_from=[rung],
    )
    assert any("going on after epoch 1 of rung" in line for line in lines)
    whole = compare(replace(base, name="whole", optimizers=survivors), echo=lambda _: None, arrays=arrays)
    runs = [r["run"] for r in store.load_compare(whole)["runs"]]
    assert len(runs) == 6
    for run in runs:
        rows, last = _run(went_on, run)
        rows_whole, last_whole = _run(whole, run)
        assert len(rows) == 3 and rows[-1]["val_acc"] > 0.3  # it trained on
        assert rows == rows_whole, run
        assert _same(last, last_whole), run
        # the rung itself is the prefix: its first epoch is the one the survivor carries
        assert _run(rung, run)[0] == rows[:1]


def test_a_group_with_a_run_the_rung_never_trained_starts_from_scratch(tmp_path, fake_data):
    arrays = load_arrays(fake_data, counts=None)
    base = small_config(tmp_path, "rung", optimizers=("sgd",), epochs=2)
    rung = compare(replace(base, stop_epoch=1), echo=lambda _: None, arrays=arrays, write_report=False)
    lines: list[str] = []
    compare(
        replace(base, name="next", optimizers=("sgd", "adam")),
        echo=lines.append,
        arrays=arrays,
        write_report=False,
        carry_from=[rung],
    )
    assert not any("going on after" in line for line in lines)
    assert len(_run(tmp_path / "next", "adam")[0]) == 2
