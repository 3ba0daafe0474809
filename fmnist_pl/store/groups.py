"""``checkpoints/groups.json``: a folder's training groups, fixed at its first start.

Why: ``--resume`` - here, or on a cluster that would cut the groups differently - must continue
every group from its own checkpoint, so the grouping is saved once and then read back.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable, Sequence

from fmnist_pl.config import RunPlan
from fmnist_pl.errors import ResultsError
from fmnist_pl.store.io import write_json
from fmnist_pl.store.layout import GROUPS_FILE, METRICS_FILE, run_dir
from fmnist_pl.store.load import read_checked


def training_groups(
    out: Path, runs: Sequence[RunPlan], fresh: Callable[[], list[list[RunPlan]]]
) -> list[list[RunPlan]]:
    """The folder's training groups: ``fresh()`` at its first start, then the saved ones."""
    path = out / "checkpoints" / GROUPS_FILE
    saved = saved_groups(out)
    if saved is None:
        planned = fresh()
        write_json(path, {"groups": [[r.name for r in g] for g in planned]})
        return planned
    by_name = {r.name: r for r in runs}
    names = [n for g in saved for n in g]
    if sorted(names) != sorted(by_name):
        raise ResultsError(
            f"{path} does not list the runs of this compare; delete it to regroup them (groups "
            f"then restart from scratch): {shlex.join(['rm', '--', str(path)])}"
        )
    return [[by_name[n] for n in g] for g in saved]


def saved_groups(out: Path) -> list[list[str]] | None:
    """The run names of each of the folder's training groups, as saved at its first start (None before)."""
    from fmnist_pl.store.schema import GroupsFile

    path = out / "checkpoints" / GROUPS_FILE
    return read_checked(path, GroupsFile).groups if path.exists() else None


def all_written(out: Path, group: Sequence[RunPlan]) -> bool:
    """Whether every run of ``group`` has its files (``metrics.json`` is written last)."""
    return all((run_dir(out, r.name) / METRICS_FILE).exists() for r in group)
