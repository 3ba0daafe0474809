"""The results store: one folder per compare, written atomically, locked, read back through schemas.

* ``layout`` - file names, a run's folder, a group's checkpoint (the folder's map).
* ``io`` - atomic writes (a killed process leaves each file whole or absent), the threaded writer.
* ``lock`` - one writer per folder (``flock``), and a killed writer's leftovers.
* ``schema`` - the results format as pydantic models.
* ``load`` - a folder read back, every file validated (defaults filled in; one-line errors with the fix).
* ``tables`` - the folder as a runs table and a history table: ``runs.csv``/``history.csv``, and
  ``fmnist_pl.load(folder)``'s pandas DataFrames.
* ``checkpoints`` - group checkpoints read as data only.

The names used across the package are re-exported here: ``from fmnist_pl import store``. (The
notebook loader is ``fmnist_pl.load``, from ``tables``: ``store.load`` stays the module.)
"""

from fmnist_pl.errors import ResultsError
from fmnist_pl.store.checkpoints import check_group_checkpoint, group_identity, load_checkpoint, restart_fix
from fmnist_pl.store.io import (
    FileWriter,
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    history_files,
    json_bytes,
    read_json,
    torch_bytes,
    write_files,
    write_json,
)
from fmnist_pl.store.layout import (
    CONFIG_FILE,
    FORMAT_VERSION,
    GRID_IMAGES,
    GROUPS_FILE,
    HISTORY_CSV,
    HISTORY_JSON,
    HISTORY_TABLE,
    METRICS_FILE,
    POINTS_FILE,
    PREDICTIONS_FILE,
    RUNS_TABLE,
    SAMPLES_FILE,
    SUMMARY_FILE,
    check_path_lengths,
    group_checkpoint,
    group_checkpoint_of,
    run_dir,
)
from fmnist_pl.store.load import check, load_compare, read_checked, read_predictions, read_samples, rerun_fix
from fmnist_pl.store.tables import Results, history_table, runs_table, table_files

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "GRID_IMAGES",
    "GROUPS_FILE",
    "HISTORY_CSV",
    "HISTORY_JSON",
    "HISTORY_TABLE",
    "METRICS_FILE",
    "PREDICTIONS_FILE",
    "RUNS_TABLE",
    "SAMPLES_FILE",
    "SUMMARY_FILE",
    "FileWriter",
    "Results",
    "ResultsError",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check",
    "group_checkpoint",
    "group_checkpoint_of",
    "history_files",
    "history_table",
    "json_bytes",
    "load_checkpoint",
    "check_group_checkpoint",
    "group_identity",
    "check_path_lengths",
    "POINTS_FILE",
    "load_compare",
    "read_checked",
    "read_json",
    "read_predictions",
    "read_samples",
    "rerun_fix",
    "restart_fix",
    "run_dir",
    "runs_table",
    "table_files",
    "torch_bytes",
    "write_files",
    "write_json",
]
