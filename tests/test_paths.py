"""Paths are resolved once, at parse time: ``~`` (which the shell leaves alone after ``=``) and
relative folders mean the same folder to every writer, Lightning's loggers and checkpoints included,
and a compare writes nothing outside its output folder."""

from pathlib import Path

import pytest

from fmnist_pl.config import CompareConfig
from tests.conftest import run_cli

# What libraries write for themselves, the same for any program that imports them: matplotlib's
# font cache (~/.cache/matplotlib, ~/.config/matplotlib) and torch's compile cache folder in $TMPDIR.
# $TMPDIR is long on purpose: multiprocessing's sockets under it would not fit a socket address
# (108 bytes), so they go to the system's temporary folder (fmnist_pl.runtime.sockets).
TMP = "tmp/" + "a-temporary-folder-whose-path-is-too-long-for-a-unix-socket-address"
LIBRARY_CACHES = ("home/.cache/matplotlib", "home/.config/matplotlib", f"{TMP}/torchinductor_")


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_tilde_and_relative_folders_are_resolved_in_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    config = CompareConfig(output_dir="~/x", data_dir="data/../fm")
    assert config.output_dir == str(tmp_path / "home/x")
    assert config.data_dir == str(tmp_path / "fm")


@pytest.mark.realdata
def test_a_compare_writes_only_into_its_output_folder(real_data, tmp_path):
    home, cwd, tmp = tmp_path / "home", tmp_path / "cwd", tmp_path / TMP
    for folder in (home, cwd, tmp):
        folder.mkdir(parents=True)
    before = _tree(tmp_path)
    proc = run_cli(
        "compare",
        "--data-dir",
        str(real_data),
        "--output-dir=~/x",  # no shell expands this "~"
        "--name",
        "t",
        "--optimizers",
        "sgd,adam",
        "--epochs",
        "1",
        "--hidden",
        "16",
        "--limit-train-batches",
        "3",
        "--no-progress",
        cwd=cwd,
        env={"HOME": str(home), "TMPDIR": str(tmp)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = home / "x" / "t"
    assert (out / "report.html").is_file() and (out / "tensorboard/sgd").is_dir()
    assert next((out / "checkpoints").glob("group-*/last.ckpt")).is_file()  # Lightning's checkpoint, inside
    new = _tree(tmp_path) - before
    outside = {
        p for p in new if not p.startswith(("home/x", *LIBRARY_CACHES)) and p not in ("home/.cache", "home/.config")
    }
    assert outside == set(), sorted(outside)
    assert not list(cwd.iterdir())  # no literal "./~" folder
    assert str(out / "tensorboard") in proc.stdout  # the TensorBoard line names the real folder
