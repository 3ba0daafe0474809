"""Where ``multiprocessing`` puts its Unix sockets: a folder whose socket paths fit, whatever ``TMPDIR`` is.

Why: a training pool's processes talk over Unix sockets that ``multiprocessing`` makes in its own
folder under ``$TMPDIR`` (``pymp-XXXXXXXX/listener-XXXXXXXX``): the fork server's, and those torch
makes to hand a tensor's memory from a worker to this process. A socket address holds at most 107
bytes on Linux, so a long ``TMPDIR`` ended a compare with "AF_UNIX path too long". CPython 3.14
(gh-132124) falls back to the system's temporary folder then; this does the same on every version
(the Pythons before the fix, and a check on the safe side of the one that has it), with the same
folder name and clean-up, through the one setting ``multiprocessing.util.get_temp_dir`` reads
first (a private one: there is no public way). Child processes inherit the setting.
"""

from __future__ import annotations

import os
import shutil
import tempfile

SOCKET_PATH_MAX = 107  # bytes of a Linux socket path (sun_path is 108, NUL-terminated)
# What multiprocessing adds under its base folder: "/pymp-" and "/listener-" (or "/sock-") with
# tempfile's 8 random characters each.
ADDED = len("/pymp-12345678/listener-12345678")
FALLBACKS = ("/tmp", "/var/tmp", "/usr/tmp")  # CPython's own order


def fits(base: str) -> bool:
    """Whether multiprocessing's socket paths under ``base`` fit a socket address."""
    return len(os.fsencode(base)) + ADDED <= SOCKET_PATH_MAX


def keep_socket_paths_short() -> None:
    """Before this process's first socket: if its ``TMPDIR`` is too long for multiprocessing's sockets,
    give multiprocessing a folder of its own in the system's temporary folder (removed at exit)."""
    from multiprocessing import process, util

    if os.name == "nt":
        return  # Windows: named pipes
    config = process.current_process()._config
    if config.get("tempdir") is not None or fits(tempfile.gettempdir()):
        return  # chosen already, or short enough
    for base in FALLBACKS:
        if fits(base) and os.access(base, os.W_OK | os.X_OK):
            folder = tempfile.mkdtemp(prefix="pymp-", dir=base)
            # As multiprocessing.util.get_temp_dir does with the folder it makes.
            util.Finalize(None, util._remove_temp_dir, args=(shutil.rmtree, folder), exitpriority=-100)
            config["tempdir"] = folder
            return
