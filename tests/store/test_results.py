"""Results on disk: atomic writes with ordinary permissions."""

import json
import os
import stat

import pytest

from fmnist_pl import store
from fmnist_pl.store import io as store_io


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    store.write_json(target, {"a": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store_io.os, "replace", boom)
    with pytest.raises(OSError):
        store.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}  # old content intact
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_files_get_the_permissions_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        store.write_json(tmp_path / "a.json", {"a": 1})
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask


def test_the_file_writer_writes_each_runs_files_in_order_and_raises_the_first_error_here(tmp_path, monkeypatch):
    """A run's files are written in the order given (metrics.json last: its presence marks the run
    finished), several runs at once; a failed write is raised in the caller's thread when the
    block ends, and no temporary file is left."""
    import threading

    written: list[tuple[str, str]] = []
    real = store.atomic_write_bytes

    def record(path, data):
        real(path, data)
        written.append((path.parent.name, path.name))
        assert threading.current_thread() is not threading.main_thread()

    monkeypatch.setattr(store_io, "atomic_write_bytes", record)
    with store.FileWriter(threads=3, queued=2) as files:
        for run in range(6):
            files.write([(tmp_path / f"r{run}" / name, name.encode()) for name in ("history.json", "metrics.json")])
    for run in range(6):
        order = [name for folder, name in written if folder == f"r{run}"]
        assert order == ["history.json", "metrics.json"]
        assert (tmp_path / f"r{run}" / "metrics.json").read_bytes() == b"metrics.json"

    def full(src, dst, *args, **kwargs):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(store_io.os, "replace", full)
    with pytest.raises(OSError, match="No space left"):
        with store.FileWriter() as files:
            files.write([(tmp_path / "r9" / "metrics.json", b"{}")])
    assert not list(tmp_path.rglob("*.tmp")) and not (tmp_path / "r9" / "metrics.json").exists()
