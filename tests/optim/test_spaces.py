import itertools
import math
import subprocess
import sys

import optuna
import pytest

from fmnist_pl.optim.registry import REGISTRY, OptimizerError, OptimizerSpec, check_buildable, resolve
from fmnist_pl.optim.spaces import (
    SPACES,
    apply,
    at_bound,
    describe,
    parse_space_overrides,
    to_distributions,
)
from tests.conftest import cli_env

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_every_registered_optimizer_has_a_space():
    assert set(SPACES) == set(REGISTRY)
    assert all(space.optimizer == name and space.dimensions and space.source for name, space in SPACES.items())


@pytest.mark.parametrize("name", list(SPACES))
def test_every_dimension_targets_a_hyperparameter_of_its_optimizer(name):
    defaults = REGISTRY[name].defaults
    for dim in SPACES[name].dimensions:
        assert dim.target in defaults, f"{name}.{dim.name} -> {dim.target}"
        # a tuple hyperparameter (betas) is set one position at a time; a number as a whole
        assert (dim.index is not None) == isinstance(defaults[dim.target], tuple)
        if dim.index is not None:
            assert 0 <= dim.index < len(defaults[dim.target])
        assert dim.low < dim.high and (dim.low > 0 or not dim.log)


def _as_set(value):
    """A hyperparameter as ``--set`` writes it, exactly (repr round-trips a float)."""
    return ",".join(map(repr, value)) if isinstance(value, tuple) else repr(value)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # QMCSampler's
@pytest.mark.parametrize("sampler", [optuna.samplers.RandomSampler, optuna.samplers.QMCSampler])
@pytest.mark.parametrize("name", list(SPACES))
def test_sampled_points_are_hyperparameters_the_registry_accepts(name, sampler):
    space = SPACES[name]
    distributions = to_distributions(space)
    study = optuna.create_study(sampler=sampler(seed=0))
    for _ in range(40):
        trial = study.ask(distributions)
        hparams = apply(space, trial.params)
        for dim in space.dimensions:
            value = trial.params[dim.name]
            assert dim.low <= value <= dim.high
            assert isinstance(value, int) == dim.integer
        if name == "pgpe":
            assert hparams["popsize"] % 2 == 0
        # the same values through --set: every registry Limit and check accepts them, unchanged
        changed = {k: _as_set(v) for k, v in hparams.items() if v != REGISTRY[name].defaults[k]}
        (spec,) = resolve([name], overrides={name: changed})
        assert dict(spec.hparams) == hparams
        study.tell(trial, 0.0)


@pytest.mark.parametrize("name", list(SPACES))
def test_every_corner_of_every_space_builds(name):
    """The extremes are where torch or EvoTorch would refuse (betas < 1, CEM's elites): build them all."""
    space = SPACES[name]
    corners = itertools.product(*((d.low, d.high) for d in space.dimensions))
    specs = [OptimizerSpec(name, apply(space, dict(zip([d.name for d in space.dimensions], c)))) for c in corners]
    check_buildable(specs)


def test_mapping_into_hyperparameters_is_exact():
    adam = apply("adam", {"lr": 3e-4, "beta1": 0.85, "one_minus_beta2": 3e-4, "eps": 1e-6})
    assert adam["betas"] == (0.85, 1 - 3e-4) and (adam["lr"], adam["eps"]) == (3e-4, 1e-6)
    assert adam["weight_decay"] == 0.0 and adam["amsgrad"] is False  # the rest: registry defaults
    momentum = apply("momentum", {"lr": 0.05, "one_minus_momentum": 0.05})
    assert momentum["momentum"] == 1 - 0.05 and momentum["lr"] == 0.05 and momentum["nesterov"] is False
    assert apply("rmsprop", {"lr": 1e-3, "one_minus_rho": 0.1, "eps": 1e-7})["rho"] == 1 - 0.1
    assert apply("snes", {"popsize": 41.0, "stdev_init": 0.02, "center_learning_rate": 0.5})["popsize"] == 41


def test_overrides_set_ranges_scales_and_fixed_values():
    spaces = parse_space_overrides(
        [
            "adam.lr=1e-5:1e-1:log",
            "adam.beta1=0.5:0.999",
            "snes.popsize=10:200:int",
            "sgd.lr=0.01",
            "cem.popsize=40:80",
        ],
        ["sgd", "adam", "snes", "cem", "pgpe"],
    )
    assert list(spaces) == ["sgd", "adam", "snes", "cem", "pgpe"]
    adam = to_distributions(spaces["adam"])
    assert adam["lr"] == optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)
    assert adam["beta1"] == optuna.distributions.FloatDistribution(0.5, 0.999)
    assert to_distributions(spaces["snes"])["popsize"] == optuna.distributions.IntDistribution(10, 200)
    assert to_distributions(spaces["cem"])["popsize"] == optuna.distributions.IntDistribution(40, 80)
    assert to_distributions(spaces["pgpe"])["popsize"] == optuna.distributions.IntDistribution(10, 200, step=2)
    log_int = parse_space_overrides(["snes.popsize=10:200:int,log"], ["snes"])["snes"]
    assert to_distributions(log_int)["popsize"] == optuna.distributions.IntDistribution(10, 200, log=True)
    # a fixed value is no distribution: it is applied as a constant
    assert to_distributions(spaces["sgd"]) == {}
    assert apply(spaces["sgd"], {})["lr"] == 0.01
    assert "lr fixed 0.01" in describe(spaces["sgd"])


@pytest.mark.parametrize(
    "items, optimizers, message",
    [
        (["nope.lr=1:2"], ["sgd"], "unknown optimizer 'nope'; choose from: sgd, momentum"),
        (["adam.lr=1e-5:1e-1"], ["sgd"], "'adam', which is not among the tuned optimizers sgd"),
        (["adam.foo=1:2"], ["adam"], "adam.foo, which adam does not search; it searches: lr, beta1, one_minus_beta2"),
        (["adam.lr=1e-1:1e-5:log"], ["adam"], "low 0.1 must be below high 1e-05"),
        (["sgd.lr=0:1:log"], ["sgd"], "a log range needs low > 0, got 0"),
        (["sgd.lr=0:1"], ["sgd"], "bad value 0.0 for sgd.lr: must be > 0"),
        (["sgd.lr=-0.1"], ["sgd"], "bad value -0.1 for sgd.lr: must be > 0"),
        (["adam.beta1=0.5:1"], ["adam"], "bad value 1 for beta1: must be a number >= 0 and < 1"),
        (["momentum.one_minus_momentum=0.5:2:log"], ["momentum"], "one_minus_momentum: must be a number > 0 and <= 1"),
        (["ga.mutation_probability=0.5:1.5"], ["ga"], "ga.mutation_probability: must be a number > 0 and <= 1"),
        (["snes.popsize=1:200:int"], ["snes"], "snes.popsize: must be a whole number >= 2"),
        (["pgpe.popsize=11:201:int"], ["pgpe"], "pgpe.popsize: must be an even whole number >= 2"),
        (["pgpe.popsize=10:200:int,log"], ["pgpe"], "popsize steps by 2, which has no log scale; drop log"),
        (["cem.popsize=10:200:int"], ["cem"], "popsize 10 x parenthood_ratio 0.1 leaves 1 elite(s)"),
        (["snes.popsize=10.5:200:int"], ["snes"], "popsize takes whole numbers"),
        (["sgd.lr=1e-4:1:int"], ["sgd"], "lr is not a whole number; drop int"),
        (["sgd.lr=abc:1"], ["sgd"], "bad number 'abc'"),
        (["sgd.lr=1e-4:inf"], ["sgd"], "bad number 'inf'"),
        (["sgd.lr=1e-4:1:exp"], ["sgd"], "bad flag 'exp'"),
        (["sgd.lr"], ["sgd"], "write OPTIMIZER.DIMENSION=LOW:HIGH"),
        (["sgd.lr=1e-4:1:log:int"], ["sgd"], "write OPTIMIZER.DIMENSION=LOW:HIGH"),
    ],
)
def test_bad_overrides_are_one_line_errors_naming_the_problem(items, optimizers, message):
    with pytest.raises(OptimizerError) as caught:
        parse_space_overrides(items, optimizers)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_apply_pulls_a_value_an_ulp_outside_the_range_back_in():
    # Optuna's log sampling returns exp(log(x)), which can miss an end by an ulp: 1 - momentum just
    # above 1 would be a momentum of -2e-16, which the registry refuses.
    hparams = apply("momentum", {"lr": 0.1, "one_minus_momentum": math.nextafter(1.0, 2.0)})
    assert hparams["momentum"] == 0.0


def test_apply_refuses_points_that_do_not_fit_the_space():
    with pytest.raises(OptimizerError, match="adam has no search dimension momentum"):
        apply("adam", {"lr": 1e-3, "beta1": 0.9, "one_minus_beta2": 1e-3, "eps": 1e-8, "momentum": 0.9})
    with pytest.raises(OptimizerError, match="no value for adam.eps"):
        apply("adam", {"lr": 1e-3, "beta1": 0.9, "one_minus_beta2": 1e-3})


def test_at_bound_flags_the_edges_on_each_dimensions_scale():
    space = SPACES["adam"]  # lr log [1e-5, 0.1], beta1 linear [0.5, 0.999], 1 - beta2 log [1e-4, 0.2]
    middle = {"lr": 1e-3, "beta1": 0.75, "one_minus_beta2": 5e-3, "eps": 1e-6}
    assert at_bound(space, middle) == []  # lr 1e-3 is near the low end linearly, but mid-range in log
    edges = {"lr": 1.2e-5, "beta1": 0.98, "one_minus_beta2": 0.19, "eps": 1e-6}
    assert at_bound(space, edges) == ["lr", "beta1", "one_minus_beta2"]
    assert at_bound(space, edges, rel=0.01) == ["one_minus_beta2"]


def test_describe_has_one_line_per_dimension_with_scale_range_and_mapping():
    lines = describe(SPACES["adam"]).splitlines()
    assert lines[0] == "lr log-uniform [1e-05, 0.1]"
    assert lines[2] == "one_minus_beta2 log-uniform [0.0001, 0.2] -> betas[1] = 1 - value"
    assert describe(SPACES["pgpe"]).splitlines()[0] == "popsize integer uniform [10, 200] step 2"
    assert len(describe(SPACES["adamw"]).splitlines()) == len(SPACES["adamw"].dimensions)


def test_spaces_import_neither_optuna_nor_torch():
    code = "import sys, fmnist_pl.optim; print('optuna' in sys.modules, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr
