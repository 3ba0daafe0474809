"""The gradient-free engine: EvoTorch searches over the MLP's weights, on generated data, on the CPU."""

import functools
import json

import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from fmnist_pl.config import Budget, CompareConfig, RunPlan
from fmnist_pl.data.datamodule import FashionMNISTDataModule
from fmnist_pl.data.idx import load_arrays
from fmnist_pl.engine.mlp import MLP, seeded_mlp
from fmnist_pl.engine.population import population_fitness
from fmnist_pl.engine.trainer import train_group
from fmnist_pl.optim import evolution
from fmnist_pl.optim.registry import REGISTRY, resolve
from fmnist_pl.study.compare import compare

METHODS = [name for name, info in REGISTRY.items() if info.gradient_free]
HIDDEN = (16,)
SMALL = {"popsize": "20", "batch_size": "100"}  # 5 generations an epoch on 500 training images


def small_run(name: str, seed: int = 3, **extra: str) -> RunPlan:
    (spec,) = resolve([name], overrides={name: SMALL | extra})
    return RunPlan(name=name, setting=name, variant=name, optimizer=spec, seed=seed, hidden=HIDDEN)


def test_the_five_methods_and_their_kind_are_registered():
    assert set(METHODS) >= {"snes", "pgpe", "cem", "cmaes", "ga"}
    assert not REGISTRY["adam"].gradient_free
    assert REGISTRY["cmaes"].defaults["separable"] is True  # a full covariance of 266,610 weights cannot fit


def test_problem_scores_the_whole_population_as_the_plain_mlp_would():
    torch.manual_seed(0)
    center = parameters_to_vector(seeded_mlp(HIDDEN, 1).parameters()).detach()
    fitness = functools.partial(population_fitness, hidden=HIDDEN)
    problem = evolution.make_problem(center, seed=5, hparams={"stdev_init": 0.1}, fitness=fitness)
    batch = problem.generate_batch(7)  # the seed's Glorot weights + Gaussian noise
    assert not torch.equal(batch.values[0], center) and (batch.values - center).std() == pytest.approx(0.1, rel=0.1)
    x, y = torch.rand(40, 784), torch.randint(0, 10, (40,))
    problem.set_batch(x, y)
    problem.evaluate(batch)
    assert problem.evaluated == 7
    for p in range(7):
        net = MLP(HIDDEN)
        vector_to_parameters(batch.values[p].clone(), net.parameters())
        expected = torch.nn.functional.cross_entropy(net(x), y).item()
        assert batch.evals[p, 0].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_learns_a_small_problem_far_above_chance(name, fake_data, tmp_path):
    config = CompareConfig(
        optimizers=(name,),
        epochs=6,
        hidden=HIDDEN,
        val_size=100,
        output_dir=str(tmp_path),
        name=name,
        progress=False,
        accelerator="cpu",
        overrides=tuple(f"{name}.{k}={v}" for k, v in SMALL.items()),
    )
    folder = compare(config, arrays=load_arrays(fake_data, counts=None), echo=lambda line: None)
    metrics = json.loads((folder / "runs" / name / "metrics.json").read_text())
    assert metrics["test"]["last"]["accuracy"] > 0.5, metrics["test"]["last"]["accuracy"]  # chance: 0.1
    assert metrics["optimizer_implementation"].startswith("EvoTorch")
    history = json.loads((folder / "runs" / name / "history.json").read_text())
    # Every epoch is one pass over the 500 training images; the population scored each of them.
    evaluations_per_image = 2 * 20 if name == "ga" else 20  # a GA scores its parents again, beside its children
    assert [row["images"] for row in history] == [500 * e for e in range(1, 7)]
    assert [row["evaluations"] for row in history] == [500 * evaluations_per_image * e for e in range(1, 7)]
    # The solution is a plain MLP state_dict, loadable without unpickling code.
    saved = torch.load(folder / "runs" / name / "checkpoints" / "last.pt", weights_only=True)
    net = MLP(HIDDEN)
    net.load_state_dict(saved["state_dict"])
    assert saved["optimizer"]["name"] == name


def _train(run: RunPlan, arrays, out, epochs: int, resume=None, budget=None):
    datamodule = FashionMNISTDataModule(
        arrays=arrays, batch_size=100, seeds=[run.seed], stack_seeds=False, val_size=100
    )
    return train_group([run], datamodule, out, epochs, accelerator="cpu", progress=False, resume=resume, budget=budget)


@pytest.mark.parametrize("name", METHODS)
def test_resume_from_an_epoch_checkpoint_ends_with_the_uninterrupted_numbers(name, fake_data, tmp_path):
    arrays, run = load_arrays(fake_data, counts=None), small_run(name)
    whole = _train(run, arrays, tmp_path / "whole", 3).members[0]
    _train(run, arrays, tmp_path / "cut", 1)  # its epoch-1 checkpoint is what a kill after epoch 1 leaves
    ckpt = tmp_path / "cut" / "checkpoints" / f"group-{name}" / "last.ckpt"
    # The searcher's state is plain tensors: the checkpoint loads without unpickling any object.
    assert "fmnist_searcher" in torch.load(ckpt, weights_only=True)
    resumed = _train(run, arrays, tmp_path / "cut", 3, resume=ckpt).members[0]
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in whole.history.epochs]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in resumed.history.epochs] == strip
    for key, tensor in whole.last_state.items():
        assert torch.equal(resumed.last_state[key], tensor), key
    assert resumed.history.test == whole.history.test


def test_seed_fixes_the_start_and_the_sampling(fake_data, tmp_path):
    arrays = load_arrays(fake_data, counts=None)
    a = _train(small_run("snes", seed=3), arrays, tmp_path / "a", 1).members[0]
    b = _train(small_run("snes", seed=3), arrays, tmp_path / "b", 1).members[0]
    c = _train(small_run("snes", seed=4), arrays, tmp_path / "c", 1).members[0]
    assert all(torch.equal(a.last_state[k], b.last_state[k]) for k in a.last_state)
    assert not torch.equal(a.last_state["layers.1.weight"], c.last_state["layers.1.weight"])


def test_a_time_budget_stops_the_run_and_records_the_partial_epoch(fake_data, tmp_path):
    trained = _train(
        small_run("snes"), load_arrays(fake_data, counts=None), tmp_path, 100_000, budget=Budget("seconds", 2.0)
    )
    epochs = trained.members[0].history.epochs
    assert 1 <= len(epochs) < 100_000 and trained.fit_seconds < 60
    assert trained.members[0].history.stopped_by == "seconds" and trained.spent["seconds"] >= 2.0
    assert trained.members[0].history.test["last"]["predictions"]  # tested, like any finished run
