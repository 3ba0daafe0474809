"""Planning: structured keys, unique names, lockstep groups."""

import pytest

from fmnist_pl.config import CompareConfig, ConfigError, parse_lrs
from fmnist_pl.plan import groups, plan, split


def test_names_settings_and_variants_come_from_the_key():
    runs = plan(CompareConfig(optimizers=("sgd", "adam"), seeds=2, more_hidden=((64,),), lrs=(0.01, 0.001)))
    assert len(runs) == 2 * 2 * 2 * 2
    first = runs[0]
    assert (first.name, first.setting, first.variant) == (
        "h300-100/sgd/lr-0.01/seed-42",
        "h300-100/sgd/lr-0.01",
        "sgd/lr-0.01",
    )
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


def _trainable(unit) -> bool:
    """What the lockstep engine accepts: seed-major, the same optimizers in every seed group."""
    seeds = list(dict.fromkeys(r.seed for r in unit))
    per_seed = [[r.variant for r in unit if r.seed == s] for s in seeds]
    return [r.seed for r in unit] == [s for s in seeds for _ in per_seed[0]] and all(p == per_seed[0] for p in per_seed)


def test_split_fills_the_workers_at_seed_boundaries_first():
    runs = plan(CompareConfig(optimizers=("sgd", "adam"), seeds=4, lrs=(0.01, 0.1)))  # 16 runs, one group
    units = split(groups(runs), slots=2, fits=lambda u: True)
    assert [[r.seed for r in u] for u in units] == [[42] * 4 + [43] * 4, [44] * 4 + [45] * 4]
    units = split(groups(runs), slots=8, fits=lambda u: True)  # then within a seed
    assert [len(u) for u in units] == [2] * 8 and all(_trainable(u) for u in units)
    assert sorted(r.name for u in units for r in u) == sorted(r.name for r in runs)  # every run exactly once
    assert split(groups(runs), slots=8, fits=lambda u: True) == units  # deterministic


def test_split_halves_what_does_not_fit_a_worker_and_never_cuts_a_lone_run():
    runs = plan(CompareConfig(optimizers=("sgd", "adam", "rmsprop"), seeds=3, more_hidden=((64,),)))
    units = split(groups(runs), slots=1, fits=lambda u: len(u) <= 2)
    assert all(len(u) <= 2 and _trainable(u) for u in units) and len({r.name for u in units for r in u}) == 18
    assert [len(u) for u in split(groups(runs, separate=True), slots=100, fits=lambda u: True)] == [1] * 18
    # A seed group is cut only when it alone does not fit: three optimizers of one seed -> 2 + 1,
    # every other optimizer in each part.
    assert [[r.variant for r in u] for u in units[:2]] == [["sgd", "rmsprop"], ["adam"]]


def test_a_cut_between_settings_gives_each_part_a_share_of_every_optimizer():
    """A tune's round lists each optimizer's trials together; cut in the middle, one process would
    get every Adam update (the costly ones) and finish last."""
    runs = plan(CompareConfig(optimizers=("sgd", "adam"), lrs=(0.001, 0.01, 0.1, 1.0)))
    units = split(groups(runs), slots=2, fits=lambda u: True)
    assert [[r.optimizer.name for r in u] for u in units] == [["sgd", "sgd", "adam", "adam"]] * 2
    assert all(_trainable(u) for u in units)


def test_an_odd_number_of_seeds_is_cut_between_optimizers_into_even_parts():
    """Five seeds of four optimizers: a seed boundary gives 8 | 12 runs (the larger part sets the
    pace); between optimizers, every seed in both parts, 10 | 10."""
    runs = plan(CompareConfig(optimizers=("sgd", "momentum", "rmsprop", "adam"), seeds=5))
    units = split(groups(runs), slots=2, fits=lambda u: True)
    assert [len(u) for u in units] == [10, 10] and all(_trainable(u) for u in units)
    assert [sorted({r.optimizer.name for r in u}) for u in units] == [["rmsprop", "sgd"], ["adam", "momentum"]]
    assert {r.seed for r in units[0]} == {r.seed for r in units[1]} == {42, 43, 44, 45, 46}
    assert sorted(r.name for u in units for r in u) == sorted(r.name for r in runs)
