"""The config validates on construction; the architecture facts need no torch."""

import math

import pytest

from fmnist_pl.architecture import arch_name, format_summary, layer_shapes, model_summary, parameter_count
from fmnist_pl.config import CompareConfig, ConfigError, RunPlan, parse_hidden, parse_lrs
from fmnist_pl.optim.registry import OptimizerSpec


def test_the_references_architecture():
    assert parameter_count((300, 100)) == 266_610
    assert layer_shapes((300, 100)) == [(300, 784), (100, 300), (10, 100)]
    assert [r["params"] for r in model_summary((300, 100))] == [0, 235_500, 30_100, 1_010]
    assert format_summary((300, 100)).splitlines()[-1] == "Total params: 266,610"
    assert arch_name((512, 256)) == "h512-256"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": math.nan}, "--lr must be a number > 0"),
        ({"lr": 0.0}, "--lr must be a number > 0"),
        ({"lrs": (0.1, -1.0)}, "--lrs must be a number > 0"),
        ({"epochs": 0}, "--epochs must be a whole number >= 1"),
        ({"val_size": 0}, "--val-size must be a whole number >= 1"),
        ({"more_hidden": ((0,),)}, "--hidden must list layer sizes"),
        ({"name": "a/b"}, "--name must be a plain folder name"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        CompareConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_parsers():
    assert parse_hidden("300,100") == (300, 100)
    assert parse_lrs("1e-4:1e0:5") == (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    assert parse_lrs("0.001,0.01") == (0.001, 0.01)
    for bad in ("1e-3:1:1", "a,b", "0:1:3"):
        with pytest.raises(ConfigError):
            parse_lrs(bad)


def test_config_and_run_plan_round_trip_through_json_shapes():
    config = CompareConfig(more_hidden=((64,),), lrs=(0.1, 0.01))
    assert CompareConfig.from_dict(config.to_dict()) == config
    plan = RunPlan("h64/adam/seed-43", "h64/adam", "adam", OptimizerSpec("adam", {"lr": 0.001}), 43, (64,))
    again = RunPlan.from_dict(plan.to_dict())
    assert again == plan and again.to_dict()["optimizer"]["class"] == "Adam"
