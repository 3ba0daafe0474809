"""The lockstep engine: equal to the textbook Lightning path, independent of its companions, one seed source."""

import math
import os

import lightning.pytorch as pl
import pytest

from fmnist_pl.config import RunPlan
from fmnist_pl.data.datamodule import FashionMNISTDataModule
from fmnist_pl.data.idx import load_arrays
from fmnist_pl.engine.classifier import LitClassifier
from fmnist_pl.engine.lockstep import LitLockstep
from fmnist_pl.engine.mlp import seeded_mlp
from fmnist_pl.optim.keras_rmsprop import KerasRMSprop
from fmnist_pl.optim.registry import resolve


def members(specs, seeds):
    """Seed-major run plans, as the planner makes them."""
    return [RunPlan(f"{s.name}/seed-{seed}", s.name, s.name, s, seed, ()) for seed in seeds for s in specs]


class EpochMetrics(pl.Callback):
    def __init__(self):
        self.rows = []

    def on_train_epoch_end(self, trainer, module):
        m = trainer.callback_metrics
        self.rows.append(
            {
                k: float(m[f"{k.split('_')[0]}/{k.split('_')[1]}"])
                for k in ("train_loss", "train_acc", "val_loss", "val_acc")
            }
        )


def _trainer(max_epochs=2, **kw):
    # CPU in CI; the GPU check script sets FMNIST_TEST_ACCELERATOR=gpu to run the same test there.
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator=os.environ.get("FMNIST_TEST_ACCELERATOR", "cpu"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kw,
    )


@pytest.mark.parametrize("fused_kernel", [False, True], ids=["foreach", "c-kernel"])
def test_lockstep_matches_the_straightforward_lightning_path(fake_data, fused_kernel):
    """The fast engine's per-epoch metrics equal one LitClassifier per optimizer, same seed.

    ``c-kernel``: RMSprop's update as one pass of its C kernel, what CPU runs use.
    """
    arrays = load_arrays(fake_data, counts=None)
    specs = resolve(["sgd", "momentum", "rmsprop", "adam"])
    seed, hidden = 7, (32, 16)
    lock = LitLockstep(members(specs, [seed]), hidden=hidden, fused_kernel=fused_kernel)
    trainer = _trainer()
    trainer.fit(lock, FashionMNISTDataModule(arrays=arrays, val_size=100, seeds=[seed]))
    (rms,) = [o for o in trainer.optimizers if isinstance(o, KerasRMSprop)]
    # The path under test really ran (the C kernel is CPU-only; on a GPU, foreach in a CUDA graph).
    assert rms.fused_ran is (fused_kernel and trainer.strategy.root_device.type == "cpu")
    for k, spec in enumerate(specs):
        single = LitClassifier(seeded_mlp(hidden, seed), spec)
        cb = EpochMetrics()
        _trainer(callbacks=[cb]).fit(
            single, FashionMNISTDataModule(arrays=arrays, val_size=100, seeds=[seed], stack_seeds=False)
        )
        fast = lock.histories[k].epochs
        assert len(fast) == len(cb.rows) == 2
        for a, b in zip(fast, cb.rows):
            for key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), (spec.name, key)
    assert lock.histories[3].epochs[-1]["val_acc"] > 0.5  # it learned the fake data


def test_divergence_stops_only_that_run(fake_data):
    arrays = load_arrays(fake_data, counts=None)
    specs = resolve(["sgd", "adam"], overrides={"sgd": {"lr": "1e6"}})
    lock = LitLockstep(members(specs, [1]), hidden=(32,))
    _trainer().fit(lock, FashionMNISTDataModule(arrays=arrays, val_size=100, seeds=[1]))
    sgd, adam = lock.histories
    assert sgd.status == "diverged" and sgd.diverged_epoch == 1
    assert adam.status == "ok" and len(adam.epochs) == 2 and math.isfinite(adam.epochs[-1]["val_loss"])


def _fit(arrays, plans, seeds, hidden=(300, 100), epochs=2):
    lock = LitLockstep(plans, hidden=hidden)
    _trainer(max_epochs=epochs).fit(lock, FashionMNISTDataModule(arrays=arrays, val_size=100, seeds=seeds))
    return lock


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop"])
def test_a_runs_numbers_do_not_depend_on_its_lockstep_group(fake_data, optimizer):
    """Every epoch of a run, alone and inside a four-optimizer, two-seed group: equal on the CPU, not merely close."""
    arrays = load_arrays(fake_data, counts=None)
    alone = _fit(arrays, members(resolve([optimizer]), [42]), [42])
    specs = resolve(["sgd", "momentum", "rmsprop", "adam"])
    grouped = _fit(arrays, members(specs, [42, 43]), [42, 43])
    k = [m.optimizer.name for m in grouped.members].index(optimizer)
    assert grouped.members[k].seed == 42
    assert alone.histories[0].epochs[-1]["val_acc"] > 0.3  # it trained
    for a, b in zip(alone.histories[0].epochs, grouped.histories[k].epochs):
        a, b = ({key: v for key, v in row.items() if key != "seconds"} for row in (a, b))
        if grouped.device.type == "cpu":
            assert a == b
        else:  # cuBLAS picks its GEMM kernels by problem size, batch count included (README)
            assert a == pytest.approx(b, rel=1e-3, abs=1e-4)


def test_the_datamodule_must_shuffle_for_the_runs_own_seeds(fake_data):
    arrays = load_arrays(fake_data, counts=None)
    lock = LitLockstep(members(resolve(["sgd"]), [43]), hidden=(16,))
    with pytest.raises(ValueError, match=r"shuffles for seeds \[42\] but these runs have seeds \[43\]"):
        _trainer().fit(lock, FashionMNISTDataModule(arrays=arrays, val_size=100, seeds=[42]))


def test_a_study_steps_its_settings_in_several_optimizers_with_the_same_numbers(fake_data, monkeypatch):
    """More settings than one optimizer instance takes: the class's settings are split over several
    instances (each a CUDA stream on a GPU), and every run trains exactly as with one instance."""
    import torch

    from fmnist_pl.config import CompareConfig
    from fmnist_pl.engine import lockstep
    from fmnist_pl.plan import plan

    arrays = load_arrays(fake_data, counts=None)
    config = CompareConfig(optimizers=("sgd", "momentum", "adam"), lrs=(0.001, 0.01, 0.1), seeds=2, hidden=(16,))
    runs = plan(config)
    one = _fit(arrays, runs, [42, 43], hidden=(16,))
    monkeypatch.setattr(lockstep, "SETTINGS_PER_OPTIMIZER", 2)
    split = _fit(arrays, runs, [42, 43], hidden=(16,))
    # SGD holds 6 settings (sgd and momentum at 3 rates): 3 instances of 2; Adam's 3: 2 instances (1 + 2).
    assert [len(ks) for ks in one.optimizer_groups()] == [12, 6]
    assert [len(ks) for ks in split.optimizer_groups()] == [4, 4, 4, 2, 4]
    assert len(split.trainer.optimizers) == 5 + 1  # and the epoch clock
    for ks in split.optimizer_groups():  # an instance holds whole settings: each seed of its settings
        assert {(runs[k].variant, runs[k].seed) for k in ks} == {(runs[k].variant, s) for k in ks for s in (42, 43)}
    assert one.histories[0].epochs[-1]["val_acc"] > 0.2  # it trained
    for k in range(len(runs)):
        rows = [
            [{key: v for key, v in row.items() if key != "seconds"} for row in lock.histories[k].epochs]
            for lock in (one, split)
        ]
        assert rows[0] == rows[1], runs[k].name
        a, b = one.member_optimizer_state(k), split.member_optimizer_state(k)
        assert a["hparams"] == b["hparams"] == dict(runs[k].optimizer.hparams)
        assert len(a["state"]) == len(b["state"]) == 4
        for x, y in zip(a["state"], b["state"]):
            assert x.keys() == y.keys()
            assert x or runs[k].optimizer.name == "sgd"  # plain SGD keeps no state
            for name, value in x.items():
                same = torch.equal(value, y[name]) if torch.is_tensor(value) else value == y[name]
                assert same, (runs[k].name, name)
    # A checkpoint of the other split does not resume this one (a one-line error, not Lightning's traceback).
    checkpoint = {"fmnist_histories": [h.to_dict() for h in split.histories], "state_dict": split.state_dict()}
    assert split.holds(checkpoint | {"optimizer_states": [{}] * 6})
    assert not split.holds(checkpoint | {"optimizer_states": [{}] * 3})  # one SGD, one Adam and the clock


def test_on_a_gpu_each_optimizer_steps_on_its_own_stream_forked_from_and_joined_to_the_step(monkeypatch):
    """The order of CUDA stream calls in a step (recorded with stand-ins; CI has no GPU): each stream
    waits for the backward before its optimizer steps in it, and the step waits for every stream."""
    import contextlib

    import torch

    events, current = [], []

    class Stream:
        def __init__(self, name):
            self.name = name

        def wait_stream(self, other):
            events.append(("wait", self.name, other.name))

    @contextlib.contextmanager
    def stream(s):
        current.append(s)
        yield
        current.pop()

    class Optimizer:
        def __init__(self, i):
            self.i = i

        def step(self):
            events.append(("step", self.i, current[-1].name))

    current.append(Stream("step"))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current[-1])
    monkeypatch.setattr(torch.cuda, "stream", stream)
    lock = LitLockstep(members(resolve(["sgd", "rmsprop", "adam"]), [1]), hidden=(4,))
    lock._raw_optimizers = [Optimizer(i) for i in range(3)]
    lock._streams = [Stream(f"s{i}") for i in range(3)]
    lock._step_optimizers()
    assert events == [
        ("wait", "s0", "step"),
        ("step", 0, "s0"),
        ("wait", "s1", "step"),
        ("step", 1, "s1"),
        ("wait", "s2", "step"),
        ("step", 2, "s2"),
        ("wait", "step", "s0"),
        ("wait", "step", "s1"),
        ("wait", "step", "s2"),
    ]
    assert [s.name for s in current] == ["step"]
    events.clear()
    lock._streams = []  # the CPU: one after another, on no stream
    current.append(Stream("cpu"))
    lock._step_optimizers()
    assert events == [("step", 0, "cpu"), ("step", 1, "cpu"), ("step", 2, "cpu")]
