"""fmnist-pl: which optimizer trains the Fashion-MNIST MLP best? (PyTorch Lightning).

In a notebook, a compare folder as pandas tables::

    import fmnist_pl
    results = fmnist_pl.load("outputs/my-compare")   # Results: .runs, .history, .config, .missing
    results.runs.groupby("optimizer")["test_acc"].mean()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os

    from fmnist_pl.store.tables import Results

from fmnist_pl.version import __version__

__all__ = ["Results", "__version__", "load"]


def load(folder: str | os.PathLike[str]) -> Results:
    """Read a compare folder into :class:`~fmnist_pl.store.tables.Results` (pandas DataFrames
    ``runs`` and ``history``, the ``config`` dict, the ``missing`` runs); every file is validated.

    Imported here only when called, so that ``import fmnist_pl`` stays light (no pydantic, no pandas).
    """
    from fmnist_pl.store.tables import load as load_folder

    return load_folder(folder)


def __getattr__(name: str) -> object:
    # ``fmnist_pl.Results`` for type hints, imported on first use like :func:`load`.
    if name == "Results":
        from fmnist_pl.store.tables import Results

        return Results
    raise AttributeError(f"module 'fmnist_pl' has no attribute {name!r}")
