"""Results on disk: atomic writes, and reading a compare folder back as plain data.

Every file is written to a temporary sibling and renamed into place (``os.replace`` is
atomic on POSIX), so a process killed at any moment leaves each results file complete or
absent, never half-written. The report is always rebuilt from these files alone.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
PREDICTIONS_FILE = "predictions.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_history(run_dir: Path, history: list[dict[str, float]]) -> None:
    write_json(run_dir / HISTORY_JSON, history)
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    atomic_write_text(run_dir / HISTORY_CSV, buf.getvalue())


def atomic_torch_save(path: Path, obj: Any) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class ResultsError(ValueError):
    """A folder that holds no results; the message says what to pass instead."""


def load_compare(folder: Path) -> dict[str, Any]:
    """Read a compare folder: its config, and every finished run's metrics and history.

    Runs listed in the config whose files are missing (interrupted, or deleted) are returned
    under ``"missing"`` so the report can say so instead of failing.
    """
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise ResultsError(f"{folder} holds no fmnist-pl results ({CONFIG_FILE} missing); "
                           "pass a folder made by `fmnist-pl compare`, e.g. outputs/<run>")
    try:
        config = read_json(config_path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{config_path} is not valid JSON ({exc}); re-run the compare") from None
    runs, missing = [], []
    for planned in config.get("runs", []):
        run_dir = folder / "runs" / planned["run"]
        try:
            metrics = read_json(run_dir / METRICS_FILE)
            history = read_json(run_dir / HISTORY_JSON)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            missing.append(planned["run"])
            continue
        runs.append(metrics | {"history": history, "dir": str(run_dir)})
    return {"folder": str(folder), "config": config, "runs": runs, "missing": missing}
