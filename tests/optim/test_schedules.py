"""Learning-rate schedules: the factors, the registry's --set and --schedule, and the lockstep engine
setting each scheduled setting's rate every step (and leaving unscheduled runs exactly as they were)."""

import math

import pytest

from fmnist_pl.config import CompareConfig, ConfigError
from fmnist_pl.data.datamodule import FashionMNISTDataModule
from fmnist_pl.data.idx import load_arrays
from fmnist_pl.engine.lockstep import LitLockstep
from fmnist_pl.errors import OptimizerError
from fmnist_pl.optim.registry import build_shared, parse_overrides, resolve
from fmnist_pl.optim.schedules import SCHEDULES, WARMUP, factor
from fmnist_pl.plan import plan
from tests.engine.test_lockstep import _trainer, members


def test_the_factors():
    assert [factor("constant", s, 100) for s in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert factor("cosine", 0, 100) == 1.0
    assert factor("cosine", 50, 100) == pytest.approx(0.5)
    assert factor("cosine", 100, 100) == pytest.approx(0.0, abs=1e-12)
    warm = round(WARMUP * 200)
    assert factor("warmup-cosine", 0, 200) == pytest.approx(1 / warm)
    assert factor("warmup-cosine", warm - 1, 200) == pytest.approx(1.0)
    assert factor("warmup-cosine", warm, 200) == pytest.approx(1.0)
    after = [factor("warmup-cosine", s, 200) for s in range(warm, 200)]
    assert after == sorted(after, reverse=True) and after[-1] < 0.001
    assert set(SCHEDULES) == {"constant", "cosine", "warmup-cosine"}


def test_a_schedule_is_a_gradient_runs_hyperparameter():
    (adam,) = resolve(["adam"], overrides=parse_overrides(["adam.schedule=cosine"]))
    assert adam.schedule == "cosine" and "schedule" not in adam.kwargs()
    with pytest.raises(OptimizerError, match="bad value 'linear' for adam.schedule: must be one of constant, cosine"):
        resolve(["adam"], overrides=parse_overrides(["adam.schedule=linear"]))
    with pytest.raises(OptimizerError, match="snes has no learning rate to schedule"):
        resolve(["snes"], overrides=parse_overrides(["snes.schedule=cosine"]))
    with pytest.raises(ConfigError, match="--schedule 'linear': choose from constant, cosine, warmup-cosine"):
        CompareConfig(schedule="linear")


def test_schedule_reaches_every_gradient_run_and_set_wins(tmp_path):
    config = CompareConfig(
        optimizers=("sgd", "adam", "snes"), schedule="cosine", overrides=("adam.schedule=warmup-cosine",)
    )
    runs = {r.name: r.optimizer for r in plan(config)}
    assert runs["sgd"].schedule == "cosine" and runs["adam"].schedule == "warmup-cosine"
    assert "schedule" not in runs["snes"].hparams
    assert all("schedule" not in r.optimizer.hparams for r in plan(CompareConfig()))  # default: untouched


def test_scheduled_groups_carry_their_rate_and_schedule():
    import torch

    specs = resolve(["sgd", "momentum"], overrides=parse_overrides(["momentum.schedule=cosine"]))
    params = [[torch.nn.Parameter(torch.zeros(2))], [torch.nn.Parameter(torch.zeros(2))]]
    opt = build_shared(specs, params)
    plain, scheduled = opt.param_groups
    assert "schedule" not in plain and (scheduled["schedule"], scheduled["base_lr"]) == ("cosine", 0.01)


def _fit(arrays, overrides, epochs=2):
    specs = resolve(["sgd", "momentum"], overrides=parse_overrides(overrides))
    lock = LitLockstep(members(specs, [3]), hidden=(16,))
    _trainer(max_epochs=epochs).fit(lock, FashionMNISTDataModule(arrays=arrays, val_size=100, seeds=[3]))
    return lock


def test_the_engine_sets_the_scheduled_rate_every_step_and_leaves_the_rest_alone(fake_data):
    arrays = load_arrays(fake_data, counts=None)
    plain = _fit(arrays, [])
    cosine = _fit(arrays, ["momentum.schedule=cosine"])
    batches = plain.trainer.num_training_batches
    total = 2 * batches
    (group,) = [g for g in cosine.trainer.optimizers[0].param_groups if "schedule" in g]
    assert group["lr"] == pytest.approx(0.01 * factor("cosine", total - 1, total))  # the last step's rate
    assert group["lr"] < 0.01 * 0.01
    # sgd, unscheduled in both, trains to the same numbers; momentum's differ
    assert cosine.histories[0].epochs[-1]["val_loss"] == plain.histories[0].epochs[-1]["val_loss"]
    assert cosine.histories[1].epochs[-1]["val_loss"] != plain.histories[1].epochs[-1]["val_loss"]
    assert not math.isnan(cosine.histories[1].epochs[-1]["val_loss"])


def test_settings_that_differ_only_in_their_schedule_get_their_own_groups():
    import torch

    specs = resolve(
        ["sgd", "momentum"], overrides=parse_overrides(["momentum.momentum=0", "sgd.schedule=cosine"])
    )  # the same SGD hyperparameters, one scheduled
    assert specs[0].setting() != specs[1].setting()
    opt = build_shared(specs, [[torch.nn.Parameter(torch.zeros(2))], [torch.nn.Parameter(torch.zeros(2))]])
    assert len(opt.param_groups) == 2


def test_a_tune_may_search_the_schedule_as_a_choice():
    from optuna.distributions import CategoricalDistribution

    from fmnist_pl.optim.spaces import apply, describe, parse_space_overrides, to_distributions
    from fmnist_pl.study.tune import qmc_point

    (space,) = parse_space_overrides(["adam.schedule=constant,warmup-cosine"], ["adam"]).values()
    dists = to_distributions(space)
    assert dists["schedule"] == CategoricalDistribution(("constant", "warmup-cosine"))
    assert "schedule one of constant, warmup-cosine" in describe(space)
    point = {"lr": 1e-3, "beta1": 0.9, "one_minus_beta2": 1e-3, "eps": 1e-8, "schedule": "warmup-cosine"}
    assert apply(space, point)["schedule"] == "warmup-cosine"
    picked = {qmc_point(dists, 42, n)["schedule"] for n in range(8)}
    assert picked == {"constant", "warmup-cosine"}  # quasi-random points reach every choice
    (fixed,) = parse_space_overrides(["sgd.schedule=cosine"], ["sgd"]).values()
    assert "schedule" not in to_distributions(fixed) and apply(fixed, {"lr": 0.1})["schedule"] == "cosine"
    with pytest.raises(OptimizerError, match="linear is not a schedule; list some of constant, cosine, warmup-cosine"):
        parse_space_overrides(["adam.schedule=constant,linear"], ["adam"])
    with pytest.raises(OptimizerError, match="snes has no learning rate to schedule"):
        parse_space_overrides(["snes.schedule=cosine"], ["snes"])


def test_a_tune_with_a_scheduled_space_trains_and_chooses_the_schedule(tmp_path, fake_data):
    from dataclasses import replace

    from fmnist_pl.study.tune import TuneConfig, tune
    from tests.conftest import small_config

    arrays = load_arrays(fake_data, counts=None)
    base = small_config(tmp_path, "S", optimizers=("sgd",), epochs=1, hidden=(16,))
    tune(TuneConfig(base, trials=2, space=("sgd.schedule=cosine",), final_seeds=2), echo=lambda _: None, arrays=arrays)
    import json

    final = json.loads((tmp_path / "S" / "final" / "config.json").read_text())
    assert {r["optimizer"]["hparams"]["schedule"] for r in final["runs"]} == {"cosine"}
    # A rung is the prefix of the whole schedule (its survivors go on from it): halving may search schedules.
    pruned = TuneConfig(replace(base, epochs=3), trials=3, space=("sgd.schedule=constant,cosine",), prune="halving")
    assert pruned.prune == "halving"
