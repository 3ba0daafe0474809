"""A training group's checkpoint put together from its runs' checkpoints in other groups.

Successive halving (``fmnist-pl tune --prune halving``) trains every trial to a rung and keeps the
best; the survivors go on from where the rung left them instead of training again from the start,
as Hyperband and ASHA continue theirs. A rung's lockstep groups hold all of its trials and the
survivors form new groups, so each new group's checkpoint is assembled from its runs' slices of
the rung's: stacked weights, best weights and flags, optimizer state (remapped to the new group's
optimizer instances and param groups), histories. The loops, the data order and the anytime points
are the rung's own: every run of a rung stops at the same epoch, and runs of one seed share their
data order.

Exact, not approximate: a rung trains the full plan and stops early
(:class:`~fmnist_pl.engine.trainer.StopAtEpoch`: same schedule, same anytime points), and a run's
numbers do not depend on which runs share its lockstep group (tests/engine/test_lockstep.py), so a
survivor ends where it would have ended had it never been cut (tests/engine/test_carry.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from fmnist_pl import store
from fmnist_pl.config import CompareConfig, RunPlan
from fmnist_pl.data.datamodule import FashionMNISTDataModule
from fmnist_pl.engine.lockstep import LitLockstep
from fmnist_pl.engine.trainer import EpochCheckpoint
from fmnist_pl.store.checkpoints import IDENTITY_KEY
from fmnist_pl.store.groups import all_written, saved_groups

Source = tuple[Path, int]  # a group checkpoint, and a run's place among its members
Layout = list[list[list[tuple[int, int]]]]  # LitLockstep.optimizer_layout()
# (member, tensor) -> (optimizer instance, param group, index in the instance's state dict)
Places = dict[tuple[int, int], tuple[int, int, int]]
DATA_KEY = FashionMNISTDataModule.__qualname__  # where Lightning keeps the DataModule's state


def sources(folder: Path) -> dict[str, Source]:
    """Run name -> its group's checkpoint in the compare ``folder`` and its place there (runs whose
    group left no checkpoint are absent)."""
    out: dict[str, Source] = {}
    for names in saved_groups(folder) or []:
        path = store.group_checkpoint_of(folder, names[0])
        if path.exists():
            out.update({name: (path, k) for k, name in enumerate(names)})
    return out


def carry(
    out: Path, config: CompareConfig, planned: Sequence[Sequence[RunPlan]], folders: Sequence[Path]
) -> dict[str, str]:
    """Write the checkpoint of every group of ``planned`` that has none yet (and is unfinished) and
    whose runs all left one in ``folders`` (a later folder's wins): those groups go on from there,
    as a ``--resume`` would. A group with a run found nowhere trains from the start (the same
    numbers, at full cost). Returns, per group given a checkpoint (by its first run), where from."""
    found: dict[str, Source] = {}
    for folder in folders:
        found.update(sources(folder))
    given: dict[str, str] = {}
    places: dict[Path, Places] = {}  # per source checkpoint, laid out once for all the groups it feeds
    for group in planned:
        target = store.group_checkpoint(out, group)
        if target.exists() or all_written(out, group) or any(r.name not in found for r in group):
            continue
        checkpoint = assemble(config, group, [found[r.name] for r in group], places)
        if checkpoint is None:
            continue
        store.atomic_torch_save(target, checkpoint)
        folders_from = dict.fromkeys(found[r.name][0].parents[2].name for r in group)
        given[group[0].name] = f"going on after epoch {checkpoint['epoch'] + 1} of {', '.join(folders_from)}"
    return given


def assemble(
    config: CompareConfig,
    group: Sequence[RunPlan],
    picks: Sequence[Source],
    places: dict[Path, Places] | None = None,
) -> dict[str, Any] | None:
    """The checkpoint of ``group`` whose run ``i`` is member ``picks[i][1]`` of checkpoint ``picks[i][0]``;
    None where those checkpoints are at different epochs (a group whose runs all diverged stops
    early): that group trains from the start. ``places``: where each source's runs keep their optimizer
    state, kept across calls."""
    loaded = {path: store.load_checkpoint(path) for path in dict.fromkeys(path for path, _ in picks)}
    for run, (path, k) in zip(group, picks):
        members = _members(loaded[path])
        if k >= len(members) or members[k] != run.to_dict():
            raise store.ResultsError(
                f"{path} does not hold run {run.name} as this compare plans it; {store.restart_fix(path)}"
            )
    first = loaded[picks[0][0]]
    if any(c["epoch"] != first["epoch"] for c in loaded.values()):
        return None
    whole = len(loaded) == 1 and [k for _, k in picks] == list(range(len(_members(first))))
    # A group that is one source group in its order (a gradient-free run, which trains alone) is
    # that checkpoint as it is; any other is a lockstep group's, put together run by run.
    out = dict(first) if whole else _merged(group, picks, loaded, {} if places is None else places)
    out[IDENTITY_KEY] = store.group_identity(config, group)
    # The epoch checkpoint's own state names the source's folder: it starts afresh in the new one.
    out["callbacks"] = {k: v for k, v in first["callbacks"].items() if not k.startswith(EpochCheckpoint.__name__)}
    return out


def _members(checkpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs a group checkpoint holds, as plans' dicts (a gradient-free run's checkpoint holds one)."""
    hparams = checkpoint["hyper_parameters"]
    return hparams["members"] if "members" in hparams else [hparams["run"]]


def _merged(
    group: Sequence[RunPlan],
    picks: Sequence[Source],
    loaded: dict[Path, dict[str, Any]],
    places: dict[Path, Places],
) -> dict[str, Any]:
    """A lockstep group's checkpoint from its runs' slices of other lockstep groups' checkpoints."""
    first = loaded[picks[0][0]]
    hparams = first["hyper_parameters"]
    new = _layout_module(group, hparams)
    state_dict = {}
    for key in new.state_dict():  # every tensor the engine keeps is per run, along dim 0
        state_dict[key] = torch.cat([loaded[path]["state_dict"][key][k : k + 1] for path, k in picks])
    for path, checkpoint in loaded.items():
        if path not in places:
            places[path] = _places(_layout_module([RunPlan.from_dict(m) for m in _members(checkpoint)], hparams))
    return {
        **first,
        "state_dict": state_dict,
        "hyper_parameters": {**hparams, "members": [r.to_dict() for r in group]},
        "optimizer_states": [
            *_optimizer_states(new.optimizer_layout(), picks, loaded, places),
            first["optimizer_states"][-1],
        ],
        "fmnist_histories": [loaded[path]["fmnist_histories"][k] for path, k in picks],
        DATA_KEY: {"generators": _generators(group, loaded)},
        # A lockstep group's wall time is every member's: the longest its runs had come with.
        "fmnist_fit_seconds": max(float(c.get("fmnist_fit_seconds", 0.0)) for c in loaded.values()),
    }


def _layout_module(group: Sequence[RunPlan], hparams: dict[str, Any]) -> LitLockstep:
    """An engine of ``group`` with the checkpoint's depth and options but one unit a layer: which runs
    each optimizer instance and param group holds, in which order, and which tensors the engine
    keeps, depend on the runs and the depth, not the widths (so a thousand-run group costs nothing
    to lay out). The C kernel does not change the layout either, so it is not built."""
    return LitLockstep(
        group,
        hidden=[1] * len(hparams["hidden"]),
        use_cuda_graphs=False,
        fused_kernel=False,
        concurrent_optimizers=hparams["concurrent_optimizers"],
    )


def _places(module: LitLockstep) -> Places:
    """Where each (member, tensor) of ``module``'s runs keeps its optimizer state in a checkpoint."""
    out: Places = {}
    for i, groups in enumerate(module.optimizer_layout()):
        index = 0
        for g, params in enumerate(groups):
            for k, j in params:
                out[(k, j)] = (i, g, index)
                index += 1
    return out


def _optimizer_states(
    layout: Layout, picks: Sequence[Source], loaded: dict[Path, dict[str, Any]], places: dict[Path, Places]
) -> list[dict[str, Any]]:
    """The new group's optimizer state dicts (``layout``: its optimizers'): each parameter's state, and
    each param group's options (its setting's: the same in every source), from where its run was."""
    out = []
    for groups in layout:
        state: dict[int, Any] = {}
        param_groups = []
        index = 0
        for params in groups:
            options: dict[str, Any] = {}
            for k, j in params:
                path, source_k = picks[k]
                i, g, source_index = places[path][(source_k, j)]
                saved = loaded[path]["optimizer_states"][i]
                if source_index in saved["state"]:
                    state[index] = saved["state"][source_index]
                options = options or {**saved["param_groups"][g]}
                index += 1
            options["params"] = list(range(index - len(params), index))
            param_groups.append(options)
        out.append({"state": state, "param_groups": param_groups})
    return out


def _generators(group: Sequence[RunPlan], loaded: dict[Path, dict[str, Any]]) -> list[Any]:
    """Each seed's shuffle state, in the new group's seed order, from a source that trains that seed."""
    state: dict[int, Any] = {}
    for checkpoint in loaded.values():
        seeds = list(dict.fromkeys(m["seed"] for m in _members(checkpoint)))
        for seed, generator in zip(seeds, checkpoint[DATA_KEY]["generators"]):
            state.setdefault(seed, generator)
    return [state[seed] for seed in dict.fromkeys(r.seed for r in group)]
