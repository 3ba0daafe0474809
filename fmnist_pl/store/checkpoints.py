"""Group checkpoints read back safely: as data only, memory-mapped, one line when damaged."""

from __future__ import annotations

import shlex
import warnings
from pathlib import Path
from typing import Any

from fmnist_pl.errors import ResultsError


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
