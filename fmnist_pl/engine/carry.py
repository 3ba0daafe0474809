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
    given = {}
    for group in planned:
        target = store.group_checkpoint(out, group)
        if target.exists() or all_written(out, group) or any(r.name not in found for r in group):
            continue
        checkpoint = assemble(config, group, [found[r.name] for r in group])
        store.atomic_torch_save(target, checkpoint)
        folders_from = dict.fromkeys(found[r.name][0].parents[2].name for r in group)
        given[group[0].name] = f"going on after epoch {checkpoint['epoch'] + 1} of {', '.join(folders_from)}"
    return given


def assemble(config: CompareConfig, group: Sequence[RunPlan], picks: Sequence[Source]) -> dict[str, Any]:
    """The checkpoint of ``group`` whose run ``i`` is member ``picks[i][1]`` of checkpoint ``picks[i][0]``."""
    loaded = {path: store.load_checkpoint(path) for path in dict.fromkeys(path for path, _ in picks)}
    for run, (path, k) in zip(group, picks):
        members = loaded[path]["hyper_parameters"]["members"]
        if k >= len(members) or members[k] != run.to_dict():
            raise store.ResultsError(
                f"{path} does not hold run {run.name} as this compare plans it; {store.restart_fix(path)}"
            )
    first = loaded[picks[0][0]]
    whole = len(loaded) == 1 and [k for _, k in picks] == list(range(len(first["hyper_parameters"]["members"])))
    # A group that is one source group in its order (a gradient-free run, which trains alone) is
    # that checkpoint as it is; any other is a lockstep group's, put together run by run.
    out = dict(first) if whole else _merged(group, picks, loaded)
    out[IDENTITY_KEY] = store.group_identity(config, group)
    # The epoch checkpoint's own state names the source's folder: it starts afresh in the new one.
    out["callbacks"] = {k: v for k, v in first["callbacks"].items() if not k.startswith(EpochCheckpoint.__name__)}
    return out


def _merged(group: Sequence[RunPlan], picks: Sequence[Source], loaded: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    first = loaded[picks[0][0]]
    if any(c["epoch"] != first["epoch"] for c in loaded.values()):
        raise store.ResultsError(f"the checkpoints of {', '.join(map(str, loaded))} are at different epochs")
    hparams = first["hyper_parameters"]
    new = _module(group, hparams)
    state_dict = {}
    for key, like in new.state_dict().items():
        state_dict[key] = torch.cat([loaded[path]["state_dict"][key][k : k + 1] for path, k in picks])
        if state_dict[key].shape != like.shape:
            raise store.ResultsError(f"{picks[0][0]}: {key} is {tuple(state_dict[key].shape)}, not {tuple(like.shape)}")
    return {
        **first,
        "state_dict": state_dict,
        "hyper_parameters": {**hparams, "members": [r.to_dict() for r in group]},
        "optimizer_states": [*_optimizer_states(new, picks, loaded), first["optimizer_states"][-1]],
        "fmnist_histories": [loaded[path]["fmnist_histories"][k] for path, k in picks],
        DATA_KEY: {"generators": _generators(group, loaded)},
        # A lockstep group's wall time is every member's: the longest its runs had come with.
        "fmnist_fit_seconds": max(float(c.get("fmnist_fit_seconds", 0.0)) for c in loaded.values()),
    }


def _module(group: Sequence[RunPlan], hparams: dict[str, Any]) -> LitLockstep:
    """An engine of ``group``, as the checkpoint's was built (its optimizers tell which runs each
    optimizer instance and param group holds, in which order; the C kernel does not change that)."""
    return LitLockstep(
        group,
        hidden=hparams["hidden"],
        use_cuda_graphs=False,
        fused_kernel=False,
        concurrent_optimizers=hparams["concurrent_optimizers"],
    )


def _places(module: LitLockstep) -> list[list[list[tuple[int, int]]]]:
    """Per optimizer instance, per param group, the (member, tensor) of each of its parameters, in the
    order ``state_dict`` numbers them."""
    optimizers = module.configure_optimizers()[:-1]  # (re)makes the views it returns them over
    where = {id(view): (k, j) for k, views in enumerate(module._views) for j, view in enumerate(views)}
    return [[[where[id(p)] for p in group["params"]] for group in opt.param_groups] for opt in optimizers]


def _optimizer_states(
    new: LitLockstep, picks: Sequence[Source], loaded: dict[Path, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The new group's optimizer state dicts: each parameter's state, and each param group's options
    (its setting's: the same in every source), from where its run was."""
    # Where each (member, tensor) of every source sat: instance, param group, index in the state dict.
    at: dict[tuple[Path, int, int], tuple[int, int, int]] = {}
    for path, checkpoint in loaded.items():
        members = [RunPlan.from_dict(m) for m in checkpoint["hyper_parameters"]["members"]]
        for i, groups in enumerate(_places(_module(members, checkpoint["hyper_parameters"]))):
            index = 0
            for g, params in enumerate(groups):
                for k, j in params:
                    at[(path, k, j)] = (i, g, index)
                    index += 1
    out = []
    for groups in _places(new):
        state: dict[int, Any] = {}
        param_groups = []
        index = 0
        for params in groups:
            options: dict[str, Any] = {}
            for k, j in params:
                path, source_k = picks[k]
                i, g, source_index = at[(path, source_k, j)]
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
        seeds = list(dict.fromkeys(m["seed"] for m in checkpoint["hyper_parameters"]["members"]))
        for seed, generator in zip(seeds, checkpoint[DATA_KEY]["generators"]):
            state.setdefault(seed, generator)
    return [state[seed] for seed in dict.fromkeys(r.seed for r in group)]
