"""multiprocessing's sockets under a long TMPDIR: a folder of their own whose paths fit, removed at exit."""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fmnist_pl.runtime.sockets import SOCKET_PATH_MAX, fits
from tests.conftest import ROOT

SCRIPT = """
from multiprocessing import connection, util
from fmnist_pl.runtime.sockets import keep_socket_paths_short
keep_socket_paths_short()
folder = util.get_temp_dir()
with connection.Listener(family="AF_UNIX") as listener:  # what failed: "AF_UNIX path too long"
    print(folder, listener.address, sep="\\n")
"""


def _run(tmpdir: Path) -> list[str]:
    env = {"TMPDIR": str(tmpdir), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_a_long_tmpdir_gets_a_short_socket_folder_that_is_removed_at_exit(tmp_path):
    long = tmp_path / ("a-temporary-folder-too-long-for-a-socket-" * 2)
    long.mkdir()
    assert not fits(str(long))
    folder, address = _run(long)
    assert not folder.startswith(str(tmp_path)) and Path(folder).name.startswith("pymp-")
    assert len(address.encode()) <= SOCKET_PATH_MAX and address.startswith(folder)
    assert not Path(folder).exists()  # removed at exit, as multiprocessing removes its own
    assert list(long.iterdir()) == []


def test_a_short_tmpdir_is_left_as_multiprocessing_uses_it():
    short = Path(tempfile.mkdtemp(dir="/tmp"))  # fits, and is not the fallback folder itself
    try:
        assert fits(str(short))
        folder, _ = _run(short)
        assert Path(folder).parent == short
    finally:
        shutil.rmtree(short)
