"""fmnist-pl writes only into folders it made (or marked folders of the same kind), and deletes only
its own files: a user's folder is refused before anything is written, a sweep's and a compare's
folders are never shared, and a checkpoint of another compare is never continued."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from fmnist_pl.config import CompareConfig
from fmnist_pl.data.idx import load_arrays
from fmnist_pl.errors import ConfigError, ResultsError
from fmnist_pl.store.layout import MARKER_FILE
from fmnist_pl.store.lock import check_owned, exclusive, folder_kind
from fmnist_pl.study.compare import compare
from fmnist_pl.study.sweep import sweep
from tests.conftest import run_cli, small_config


def _config(tmp_path: Path, name: str, **kw) -> CompareConfig:
    return small_config(tmp_path, name, **({"epochs": 1, "hidden": (16,), "target": 0.88} | kw))


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def _user_folder(root: Path) -> Path:
    """A user's folder that happens to have the name a compare would use."""
    folder = root / "docs2"
    (folder / "deep/er").mkdir(parents=True)
    (folder / "report.html").write_text("<p>my own report</p>")
    (folder / "summary.json").write_text('{"mine": true}')
    (folder / "notes.txt").write_text("notes")
    (folder / ".cache.tmp").write_text("a hidden file of another program")
    (folder / "deep/er/.budget.xlsx.tmp").write_text("an editor's autosave")
    (folder / "runs/sgd").mkdir(parents=True)
    (folder / "runs/sgd/metrics.json").write_text("{}")
    return folder


def test_a_users_folder_is_refused_in_one_line_and_left_byte_for_byte(fake_data, tmp_path):
    folder = _user_folder(tmp_path)
    before = _snapshot(folder)
    proc = run_cli(
        "compare", "--data-dir", str(fake_data), "--output-dir", str(tmp_path), "--name", "docs2", cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{folder} already exists and was not made by fmnist-pl" in lines[0], proc.stderr
    assert "choose another --name or --output-dir" in lines[0]
    assert _snapshot(folder) == before  # nothing written, nothing deleted


def test_resume_of_a_users_folder_is_refused_too(tmp_path):
    folder = _user_folder(tmp_path)
    before = _snapshot(folder)
    proc = run_cli("compare", "--resume", str(folder), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert _snapshot(folder) == before


def test_a_file_where_the_folder_would_be_is_one_line(fake_data, tmp_path):
    (tmp_path / "runs").write_text("a user's file")
    with pytest.raises(ConfigError, match="exists and is not a folder; choose another --name"):
        compare(_config(tmp_path, "runs"), arrays=load_arrays(fake_data, counts=None), echo=lambda _: None)
    assert (tmp_path / "runs").read_text() == "a user's file"


def test_an_empty_folder_is_taken_and_given_back_empty_when_the_start_fails(fake_data, tmp_path):
    (tmp_path / "empty").mkdir()
    config = _config(tmp_path, "empty", val_size=10_000)  # more than the data's images: refused after the claim
    with pytest.raises(ConfigError, match="val_size 10000 leaves no training images"):
        compare(config, arrays=load_arrays(fake_data, counts=None), echo=lambda _: None)
    assert (tmp_path / "empty").is_dir() and not list((tmp_path / "empty").iterdir())
    folder = compare(_config(tmp_path, "empty"), arrays=load_arrays(fake_data, counts=None), echo=lambda _: None)
    assert folder_kind(folder) == "compare" and (folder / "report.html").is_file()


def test_only_its_own_temporary_files_are_cleaned(fake_data, tmp_path):
    arrays = load_arrays(fake_data, counts=None)
    folder = compare(_config(tmp_path, "mine"), arrays=arrays, echo=lambda _: None)
    (folder / "runs/sgd/.metrics.json.k3j2.fmnist-pl.tmp").write_text("what a killed writer left")
    (folder / ".notes.txt.tmp").write_text("a user's editor's file")
    compare(_config(tmp_path, "mine"), resume=True, arrays=arrays, echo=lambda _: None)
    assert not (folder / "runs/sgd/.metrics.json.k3j2.fmnist-pl.tmp").exists()
    assert (folder / ".notes.txt.tmp").read_text() == "a user's editor's file"


def test_a_sweep_and_a_compare_never_share_a_folder(fake_data, tmp_path):
    arrays = load_arrays(fake_data, counts=None)
    with exclusive(tmp_path / "S", "sweep"):  # a sweep holds its top folder for its whole run
        with pytest.raises(ConfigError, match=r"is being written by PID \d+ \(another fmnist-pl command\)"):
            with exclusive(tmp_path / "S", "sweep"):  # a second sweep of the same name
                pass
        with pytest.raises(ConfigError, match="is an fmnist-pl sweep folder"):
            compare(_config(tmp_path, "S"), arrays=arrays, echo=lambda _: None)
    with pytest.raises(ConfigError, match="is an fmnist-pl sweep folder, which a compare does not write into"):
        compare(_config(tmp_path, "S"), arrays=arrays, echo=lambda _: None)
    compare(_config(tmp_path, "C"), arrays=arrays, echo=lambda _: None)
    before = _snapshot(tmp_path / "C")
    config = _config(tmp_path, "C", data_dir=str(fake_data), lrs=(0.01, 0.1))
    with pytest.raises(ConfigError, match="is an fmnist-pl compare folder, which a sweep does not write into"):
        sweep(config, echo=lambda _: None)
    assert _snapshot(tmp_path / "C") == before


def test_folders_of_versions_before_the_marker_are_recognised_and_marked(fake_data, tmp_path):
    arrays = load_arrays(fake_data, counts=None)
    folder = compare(_config(tmp_path, "old"), arrays=arrays, echo=lambda _: None)
    (folder / MARKER_FILE).unlink()
    check_owned(folder, "compare")  # its config.json says what it is
    compare(_config(tmp_path, "old"), resume=True, arrays=arrays, echo=lambda _: None)
    assert json.loads((folder / MARKER_FILE).read_text())["kind"] == "compare"


def test_a_checkpoint_of_another_compare_is_refused_before_anything_is_printed(fake_data, tmp_path):
    """Another seed and learning rate, the same optimizers: it loads, and its tensors have the right
    shapes, but continuing it would give this folder the other compare's numbers."""
    arrays = load_arrays(fake_data, counts=None)
    other = compare(_config(tmp_path, "other", seed=7, lr=0.05), arrays=arrays, echo=lambda _: None)
    mine = compare(_config(tmp_path, "mine"), arrays=arrays, echo=lambda _: None)
    (mine / "runs/sgd/metrics.json").unlink()  # its group is unfinished again
    ckpt = next((mine / "checkpoints").glob("group-*/last.ckpt"))
    shutil.copy(next((other / "checkpoints").glob("group-*/last.ckpt")), ckpt)
    assert torch.load(ckpt, weights_only=True)["fmnist_pl_identity"]  # it has one, just not ours
    lines: list[str] = []
    with pytest.raises(ResultsError, match=f"{ckpt} was not written for this compare's runs") as info:
        compare(_config(tmp_path, "mine"), resume=True, arrays=arrays, echo=lines.append)
    assert "rm -- " in str(info.value) and lines == []  # nothing printed before the refusal
    ckpt.unlink()  # the fix it names: the group restarts
    compare(_config(tmp_path, "mine"), resume=True, arrays=arrays, echo=lambda _: None)
    assert (mine / "runs/sgd/metrics.json").is_file()


def test_a_failed_start_removes_only_its_own_folders(tmp_path):
    """Two commands started into a new --output-dir: the one whose start fails takes back its own
    folder, and the parents it made only while nothing else is in them."""
    from fmnist_pl.store.lock import remove_failed_start

    exp = tmp_path / "new" / "exp"
    with exclusive(exp / "a", "compare") as claim:
        assert claim.created == tmp_path / "new"
        (exp / "b").mkdir()  # another command's, started meanwhile
        (exp / "b" / "config.json").write_text("theirs")
        remove_failed_start(claim)
    assert not (exp / "a").exists() and (exp / "b" / "config.json").read_text() == "theirs"
    with exclusive(tmp_path / "alone" / "x" / "a", "compare") as claim:
        remove_failed_start(claim)
    assert not (tmp_path / "alone").exists()  # nothing beside it: every folder it made is gone


def test_a_start_stopped_after_writing_into_a_users_empty_folder_keeps_the_marker(tmp_path):
    from fmnist_pl.store.lock import remove_failed_start

    (tmp_path / "empty").mkdir()
    with exclusive(tmp_path / "empty", "compare") as claim:
        (tmp_path / "empty" / "samples.json").write_text("{}")  # written before the stop
        remove_failed_start(claim)
    assert folder_kind(tmp_path / "empty") == "compare"  # the next start completes it, not refused


def test_a_file_named_sweep_json_does_not_make_a_users_folder_a_sweeps(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "sweep.json").write_text('{"my": "notes"}')
    assert folder_kind(tmp_path / "mine") is None


def test_the_refusal_names_the_holder_once_it_has_written_its_pid(tmp_path):
    """A command that loses the race by microseconds reads the lock before the winner wrote its PID:
    it waits a moment for it, and says "another process" only if none comes."""
    import threading

    from fmnist_pl.store.lock import _holder

    lock = tmp_path / ".lock"
    lock.write_text("")
    threading.Timer(0.1, lambda: lock.write_text("4242")).start()
    assert _holder(lock) == "PID 4242"
    lock.write_text("")
    assert _holder(lock) == "another process"
