"""Every command a message tells the user to paste does exactly what it says in a real shell, whatever
the folder's name (spaces, quotes, ``$``, a leading ``-``), and never touches another file."""

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from fmnist_pl.errors import Interrupted, resume_command
from fmnist_pl.store.checkpoints import restart_fix
from fmnist_pl.store.load import rerun_fix

HOSTILE = ["my run", "it's", 'say "hi"', "$HOME", "-rf", "a;b", "`date`", "tab\tname", "new\nline"]
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")


def _argv(command: str, cwd: Path) -> list[str]:
    """The argument vector a shell gives ``command``'s program (printed by a stand-in for it)."""
    program = shlex.split(command)[0]
    stand_in = f'{program}() {{ printf "%s\\0" "$@"; }}\n{command}'
    out = subprocess.run([BASH, "-c", stand_in], cwd=cwd, capture_output=True, check=True).stdout
    return out.decode().split("\0")[:-1]


def _after(text: str, prefix: str) -> str:
    assert prefix in text, text
    return text.split(prefix, 1)[1]


@pytest.mark.parametrize("name", HOSTILE)
def test_the_resume_hint_names_exactly_the_folder(tmp_path, name):
    folder = tmp_path / name
    assert _argv(resume_command(folder, "--workers", "2"), tmp_path) == [
        "compare",
        "--resume",
        str(folder),
        "--workers",
        "2",
    ]
    message = str(Interrupted(folder))
    assert _argv(_after(message, "Continue with: "), tmp_path) == ["compare", "--resume", str(folder)]


@pytest.mark.parametrize("name", HOSTILE)
def test_the_rm_hint_for_a_damaged_checkpoint_deletes_it_and_nothing_else(tmp_path, name):
    ckpt = tmp_path / name / "checkpoints/group-sgd/last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"damaged")
    decoys = [tmp_path / "my", tmp_path / "run", tmp_path / "it", tmp_path / "a", tmp_path / "b"]
    for decoy in decoys:
        decoy.write_text("someone else's file")
    command = _after(restart_fix(ckpt), "from scratch: ")
    subprocess.run([BASH, "-c", command], cwd=tmp_path, check=True, capture_output=True)
    assert not ckpt.exists() and ckpt.parent.is_dir()
    assert all(decoy.read_text() == "someone else's file" for decoy in decoys)


@pytest.mark.parametrize("name", HOSTILE)
def test_the_rerun_hint_deletes_only_the_runs_folder_and_resumes_that_compare(tmp_path, name):
    folder = tmp_path / name
    run = folder / "runs" / "adam"
    run.mkdir(parents=True)
    (run / "history.json").write_text("[]")
    (folder / "runs/sgd").mkdir()
    (tmp_path / "my").mkdir()
    command = _after(rerun_fix(folder, run), "then resume: ")
    remove, resume = command.split(" && ")
    subprocess.run([BASH, "-c", remove], cwd=tmp_path, check=True, capture_output=True)
    assert not run.exists() and (folder / "runs/sgd").is_dir() and (tmp_path / "my").is_dir()
    assert _argv(resume, tmp_path) == ["compare", "--resume", str(folder)]
