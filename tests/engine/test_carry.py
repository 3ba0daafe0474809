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
    """A run's epochs and anytime points (without their wall seconds), its last and best weights with
    the optimizer state, and its test results."""
    where = folder / "runs" / run

    def timeless(name):
        path = where / name
        rows = json.loads(path.read_text()) if path.exists() else []
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    saved = [torch.load(where / "checkpoints" / f, weights_only=True) for f in ("last.pt", "best.pt")]
    test = json.loads((where / "metrics.json").read_text())["test"]
    return timeless("history.json"), (timeless("anytime.json"), saved, test)


def _same(a, b):
    """Equal tensors (bit for bit), lists and dicts, recursively."""
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


@pytest.mark.parametrize(("schedule", "separate"), [("constant", False), ("warmup-cosine", False), ("constant", True)])
def test_survivors_going_on_from_a_rung_end_as_if_never_cut(tmp_path, fake_data, schedule, separate):
    """A rung trains four optimizers x two seeds and stops after epoch 1 of 3 - in one group of eight, or
    each run in its own group (``separate``: the new group is put together from six checkpoints, its
    two seeds' data order from different ones); three of the optimizers go on in one new group (SGD's
    instance now holds momentum alone, so the optimizer state is remapped) and must equal the same
    three trained for 3 epochs in one go: every epoch, anytime point, weights, best weights, test."""
    arrays = load_arrays(fake_data, counts=None)
    base = small_config(tmp_path, "rung", optimizers=ALL, seeds=2, epochs=3, schedule=schedule, eval_points=5)
    rung = compare(
        replace(base, stop_epoch=1, separate=separate), echo=lambda _: None, arrays=arrays, write_report=False
    )
    found = sources(rung)
    assert len(found) == 8 and len({path for path, _ in found.values()}) == (8 if separate else 1)
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
        rows, rest = _run(went_on, run)
        rows_whole, rest_whole = _run(whole, run)
        assert len(rows) == 3 and rows[-1]["val_acc"] > 0.3 and rest[0]  # it trained on, with anytime points
        assert rows == rows_whole, run
        assert _same(rest, rest_whole), run
        # the rung itself is the prefix: its first epoch is the one the survivor carries
        assert _run(rung, run)[0] == rows[:1]


def test_a_group_whose_runs_stopped_at_other_epochs_starts_from_scratch(tmp_path, fake_data):
    """A run that diverges in its own group stops that group early: its checkpoint is at another epoch
    than its companions', so their new group cannot go on from both and trains from the start."""
    arrays = load_arrays(fake_data, counts=None)
    base = small_config(tmp_path, "rung", optimizers=("sgd", "adam"), epochs=3, overrides=("sgd.lr=1e6",))
    rung = compare(replace(base, stop_epoch=2, separate=True), echo=lambda _: None, arrays=arrays)
    assert json.loads((rung / "runs" / "sgd" / "metrics.json").read_text())["status"] == "diverged"
    lines: list[str] = []
    went_on = compare(replace(base, name="next"), echo=lines.append, arrays=arrays, carry_from=[rung])
    assert not any("going on after" in line for line in lines)
    whole = compare(replace(base, name="whole"), echo=lambda _: None, arrays=arrays)
    assert _run(went_on, "adam")[0] == _run(whole, "adam")[0] and len(_run(whole, "adam")[0]) == 3


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
