"""One writer per compare folder: an OS file lock, and the leftovers of a killed writer cleaned.

The lock is ``fcntl.flock`` on ``<folder>/.lock``: the kernel releases it when the process
ends, however it ends (``kill -9`` included), so a stale lock can never block a folder. A
second ``compare`` (or ``--resume``) on a folder in use gets one line naming the folder and the
running process, and touches nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Iterator

from fmnist_pl.config import ConfigError

LOCK_FILE = ".lock"


def _holder(lock: Path) -> str:
    try:
        pid = lock.read_text().strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "another process"


@contextlib.contextmanager
def exclusive(folder: Path) -> Iterator[Path | None]:
    """Hold ``folder`` for writing (creating it); yields the topmost folder this call created, if any
    (``folder`` itself, or an ``--output-dir`` above it that did not exist either).

    Raises :class:`ConfigError` at once, without waiting, when another process holds it.
    """
    missing = [p for p in [folder, *folder.absolute().parents] if not p.exists()]
    try:
        folder.mkdir(parents=True)
        created: Path | None = missing[-1] if missing else None
    except FileExistsError:
        created = None
    except OSError as exc:
        raise ConfigError(
            f"cannot write to output folder {folder} ({exc.strerror}); pass a writable --output-dir"
        ) from None
    lock = folder / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(
            f"cannot write to output folder {folder} ({exc.strerror}); pass a writable --output-dir"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"{folder} is being written by {_holder(lock)} (another fmnist-pl compare or "
                "--resume); wait for it to finish, or choose another --name"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        remove_temporaries(folder)
        yield created
    finally:
        os.close(fd)  # releases the lock


def remove_temporaries(folder: Path) -> int:
    """Delete the ``.NAME.xxxx.tmp`` files a killed writer left (only ours: the lock is held)."""
    count = 0
    for tmp in folder.rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            count += 1
    return count


def remove_failed_start(folder: Path | None) -> None:
    """Delete what :func:`exclusive` created when the start failed, so the name is free again."""
    if folder is None:
        return
    shutil.rmtree(folder, ignore_errors=True)
