"""Results on disk: atomic writes with ordinary permissions."""

import json
import os
import stat

import pytest

from fmnist_pl import results


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    results.write_json(target, {"a": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", boom)
    with pytest.raises(OSError):
        results.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}  # old content intact
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp file left


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_atomic_files_get_the_permissions_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        results.write_json(tmp_path / "a.json", {"a": 1})
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.json").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask
