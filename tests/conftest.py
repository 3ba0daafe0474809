"""Shared fixtures: small generated IDX files, so unit tests need no download and run in seconds."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmnist_pl.config import CompareConfig
from fmnist_pl.data.idx import DEBIAN_DIR, FILES, IMAGE_MAGIC, LABEL_MAGIC

ROOT = Path(__file__).parents[1]


def cli_argv(*args: str) -> list[str]:
    """``fmnist-pl ARGS`` as a user runs it: a fresh interpreter (so exit codes, stderr and
    signals are the real ones), on this checkout."""
    return [sys.executable, "-m", "fmnist_pl", *args]


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run the command line to its end; the one runner every CLI test uses."""
    return subprocess.run(cli_argv(*args), cwd=cwd, capture_output=True, text=True, env=cli_env(env), timeout=timeout)


def start_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the command line and return at once (for tests that signal or race it)."""
    return subprocess.Popen(
        cli_argv(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(env)
    )


def small_config(tmp_path: Path, name: str, **kw: object) -> CompareConfig:
    """A compare that trains in seconds on the generated data (``fake_data``): the tests' base config."""
    base: dict[str, object] = dict(
        optimizers=("sgd", "adam"),
        epochs=2,
        hidden=(32,),
        val_size=100,
        output_dir=str(tmp_path),
        name=name,
        progress=False,
        accelerator="cpu",
        target=0.5,
    )
    return CompareConfig(**(base | kw))  # type: ignore[arg-type]


def history_rows(folder: Path, run: str) -> list[dict]:
    """A run's history without its seconds (which differ between any two trainings)."""
    import json

    rows = json.loads((folder / "runs" / run / "history.json").read_text())
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = True) -> Path:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_dataset(folder: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    """A learnable fake Fashion-MNIST: each class is a noisy bright band at its own rows."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, y in enumerate(labels):
            images[i, 2 + 2 * y : 4 + 2 * y, :] += 180
        write_idx(folder / FILES[f"{split}_images"], images.clip(0, 255), IMAGE_MAGIC)
        write_idx(folder / FILES[f"{split}_labels"], labels, LABEL_MAGIC)
    return folder


@pytest.fixture
def fake_data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "fmnist")


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not all((DEBIAN_DIR / f"{stem}.gz").is_file() for stem in FILES.values()):
        pytest.skip("real Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    return DEBIAN_DIR
