"""Planning: structured keys, unique names, lockstep groups."""

import pytest

from fmnist_pl.config import CompareConfig, ConfigError, parse_lrs
from fmnist_pl.run.plan import groups, plan


def test_names_settings_and_variants_come_from_the_key():
    runs = plan(CompareConfig(optimizers=("sgd", "adam"), seeds=2, more_hidden=((64,),), lrs=(0.01, 0.001)))
    assert len(runs) == 2 * 2 * 2 * 2
    first = runs[0]
    assert (first.name, first.setting, first.variant) == ("h300-100/sgd/lr-0.01/seed-42", "h300-100/sgd/lr-0.01",
                                                          "sgd/lr-0.01")
    assert first.optimizer.hparams["lr"] == 0.01 and first.seed == 42 and first.hidden == (300, 100)
    assert [r.seed for r in runs[:8]] == [42] * 4 + [43] * 4  # seed-major within an architecture


def test_a_fine_learning_rate_grid_gets_unique_names():
    """``lr-{lr:.0e}`` named 1e-4 and 1.3e-4 alike: two runs, one folder."""
    lrs = parse_lrs("1e-4:1e0:36")
    runs = plan(CompareConfig(optimizers=("sgd",), lrs=lrs))
    assert len({r.name for r in runs}) == len(runs) == 36
    assert {"sgd/lr-0.0001", "sgd/lr-0.00013"} <= {r.name for r in runs}


def test_the_same_run_twice_is_refused():
    with pytest.raises(ConfigError, match="sgd/lr-0.01 are planned more than once"):
        plan(CompareConfig(optimizers=("sgd",), lrs=(0.01, 0.01)))


def test_groups_per_architecture_or_one_run_each():
    runs = plan(CompareConfig(optimizers=("sgd", "adam"), seeds=2, more_hidden=((64,),)))
    together = groups(runs)
    assert [len(g) for g in together] == [4, 4] and {r.hidden for r in together[1]} == {(64,)}
    assert [len(g) for g in groups(runs, separate=True)] == [1] * 8
