"""Group checkpoints read back safely: as data only, memory-mapped, one line when damaged or another compare's."""

from __future__ import annotations

import hashlib
import json
import shlex
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from fmnist_pl.errors import ResultsError

if TYPE_CHECKING:
    from fmnist_pl.config import CompareConfig, RunPlan


def restart_fix(checkpoint: Path) -> str:
    """The fix for a damaged group checkpoint, as a command that can be pasted as printed."""
    return f"delete it to restart that group from scratch: {shlex.join(['rm', '--', str(checkpoint)])}"


def load_checkpoint(path: Path) -> Any:
    """A group checkpoint, loaded as data only (``weights_only``): garbage bytes, a refused pickle or
    a truncated file are one line saying what to do, not a traceback.

    Memory-mapped: what is checked (the runs, the tensors' shapes) is read; the weights are read
    only where used. A resume checks each checkpoint twice before Lightning loads it (the driver,
    then the worker), and a study's checkpoint holds gigabytes that a check need not read."""
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing a file
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - garbage bytes, a refused pickle, a truncated zip: all one answer
        raise ResultsError(f"{path} is not a valid checkpoint ({type(exc).__name__}); {restart_fix(path)}") from None


IDENTITY_KEY = "fmnist_pl_identity"  # in every group checkpoint: whose runs these are (see group_identity)
# The settings besides the runs' own (optimizer, hyperparameters, seed, architecture) that decide
# what a group's training computes: a checkpoint trained under other values is another compare's.
PROTOCOL_FIELDS = ("epochs", "batch_size", "val_size", "limit_train_batches", "time_budget", "budget")


def group_identity(config: CompareConfig, group: Sequence[RunPlan]) -> str:
    """A fingerprint of what a group trains: its runs and the compare's protocol settings.

    Stored in the group's checkpoint and compared on resume, so that a checkpoint copied from
    another compare (another seed or learning rate, say) is refused instead of silently continued.
    """
    settings = {
        "runs": [run.to_dict() for run in group],
        "protocol": {field: getattr(config, field) for field in PROTOCOL_FIELDS},
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def check_group_checkpoint(path: Path, identity: str) -> dict[str, Any]:
    """The group checkpoint at ``path``, loaded as data, if it was written for ``identity``: one line
    naming it and the fix when it is damaged or another compare's."""
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or checkpoint.get(IDENTITY_KEY) != identity:
        raise ResultsError(
            f"{path} was not written for this compare's runs (another compare's, or an older fmnist-pl's); "
            + restart_fix(path)
        )
    return checkpoint
