"""Which folders fmnist-pl may write into, and one writer per folder.

fmnist-pl writes only into a folder it made, or one marked as an fmnist-pl folder of the same
kind: every folder it makes holds a marker file (``.fmnist-pl``: its kind, "compare", "sweep" or "tune").
A non-empty folder without the marker - a user's folder that happens to have the name - is
refused before anything is written, as is a folder of the other kind (a compare into a sweep's
folder). Folders of earlier versions, which had no marker, are recognised by their results.

The lock is ``fcntl.flock`` on ``<folder>/.lock``: the kernel releases it when the process ends,
however it ends (``kill -9`` included), so a stale lock can never block a folder. A second
command on a folder in use gets one line naming the folder and the running process, and
touches nothing. Holding it, the writer removes what a killed writer left: files ending in
``.fmnist-pl.tmp`` (:mod:`fmnist_pl.store.io`), and nothing else.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from fmnist_pl.errors import ConfigError
from fmnist_pl.store.layout import CONFIG_FILE, FORMAT_VERSION, MARKER_FILE, TEMPORARY_SUFFIX

LOCK_FILE = ".lock"
KINDS = ("compare", "sweep", "tune")


@dataclass(frozen=True)
class Claim:
    """A folder held for writing, and what holding it made (what a failed start takes back)."""

    folder: Path
    created: Path | None  # the topmost folder this claim made (the folder, or an --output-dir above it)
    marked: bool  # this claim put the marker into a folder that existed (empty) before


def folder_kind(folder: Path) -> str | None:
    """The kind of fmnist-pl folder ``folder`` is, from its marker (or, for folders of versions
    before the marker, from their results); None if it is not one."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text())
        kind = marker.get("kind") if isinstance(marker, dict) else None
        return kind if kind in KINDS else None
    except FileNotFoundError:
        pass
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON, or nested absurdly deep
        return None
    if (folder / CONFIG_FILE).is_file() and _is_results_config(folder / CONFIG_FILE):
        return "compare"
    # A sweep of a version before the marker: its grid's or final comparison's results.
    if any(_is_results_config(folder / name / CONFIG_FILE) for name in ("sweep", "final")):
        return "sweep"
    return None


def _is_results_config(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON, or nested absurdly deep
        return False
    return (
        isinstance(data, dict)
        and data.get("format") in range(1, FORMAT_VERSION + 1)
        and isinstance(data.get("config"), dict)
    )


def check_owned(folder: Path, kind: str, option: str = "--name") -> None:
    """Refuse, in one line and before anything is written, a folder that a ``kind`` command must not
    write into: not a folder, a non-empty folder fmnist-pl did not make, or one of another kind."""
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise ConfigError(f"{folder} exists and is not a folder; choose another {option} or --output-dir")
    found = folder_kind(folder)
    if found == kind:
        return
    if found is not None:
        raise ConfigError(
            f"{folder} is an fmnist-pl {found} folder, which a {kind} does not write into; "
            f"choose another {option} or --output-dir"
        )
    try:
        empty = next(os.scandir(folder), None) is None
    except OSError as exc:
        raise ConfigError(
            f"cannot read output folder {folder} ({exc.strerror}); pass a readable --output-dir"
        ) from None
    if not empty:
        raise ConfigError(
            f"{folder} already exists and was not made by fmnist-pl (it has no {MARKER_FILE} marker); "
            f"fmnist-pl writes only into folders it made: choose another {option} or --output-dir"
        )


def check_free(folder: Path) -> None:
    """Refuse at once a folder that another process holds: what a command checks before it starts
    worker processes for a folder it would then be refused (the lock itself is taken by :func:`exclusive`)."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return  # no lock file: nobody holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(folder) from None
    finally:
        os.close(fd)


HOLDER_POLLS = 25  # 0.5 s at most, only when the holder has not written its PID yet


def _in_use(folder: Path) -> ConfigError:
    return ConfigError(
        f"{folder} is being written by {_holder(folder / LOCK_FILE)} (another fmnist-pl command); wait for it "
        "to finish, or choose another --name"
    )


def _holder(lock: Path) -> str:
    """Who holds the lock: its PID, which the holder writes just after taking it (so a command that
    lost the race by microseconds waits a moment for it), else "another process"."""
    for _ in range(HOLDER_POLLS):
        try:
            pid = lock.read_text().strip()
        except OSError:
            pid = ""
        if pid.isdigit():
            return f"PID {pid}"
        time.sleep(0.02)
    return "another process"


def _cannot_write(folder: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot write to output folder {folder} ({exc.strerror}); pass a writable --output-dir")


@contextlib.contextmanager
def exclusive(folder: Path, kind: str = "compare") -> Iterator[Claim]:
    """Hold ``folder`` for writing by a ``kind`` command, making and marking it if need be.

    Raises :class:`ConfigError` at once, without waiting, when another process holds it or it is
    not ``kind``'s to write (:func:`check_owned`, checked again once the lock is held).
    """
    check_owned(folder, kind)
    missing = [p for p in [folder, *folder.absolute().parents] if not p.exists()]
    try:
        folder.mkdir(parents=True)
        created: Path | None = missing[-1] if missing else None
    except FileExistsError:
        created = None
    except OSError as exc:
        raise _cannot_write(folder, exc) from None
    lock = folder / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _cannot_write(folder, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(folder) from None
        marked = _mark(folder, kind, created, lock)
        claim = Claim(folder, created, marked)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            remove_temporaries(folder)
        except OSError as exc:
            remove_failed_start(claim)
            raise _cannot_write(folder, exc) from None
        yield claim
    finally:
        os.close(fd)  # releases the lock


def _mark(folder: Path, kind: str, created: Path | None, lock: Path) -> bool:
    """Under the lock: check the folder again (another process may have marked it meanwhile) and
    write the marker if it has none; whether this call wrote it into a folder it did not make."""
    if folder_kind(folder) is None:
        others = [e.name for e in os.scandir(folder) if e.name != LOCK_FILE]
        if others:  # filled by someone else since the check
            if created is None:
                lock.unlink(missing_ok=True)
            check_owned(folder, kind)
        from fmnist_pl.store.io import write_json

        write_json(folder / MARKER_FILE, {"kind": kind, "note": "made by fmnist-pl; do not delete"})
        return created is None
    if folder_kind(folder) != kind:
        check_owned(folder, kind)
    if not (folder / MARKER_FILE).exists():  # a folder of a version before the marker: mark it now
        from fmnist_pl.store.io import write_json

        write_json(folder / MARKER_FILE, {"kind": kind, "note": "made by fmnist-pl; do not delete"})
    return False


def remove_temporaries(folder: Path) -> int:
    """Delete the temporary files a killed writer left in ``folder`` (ours only: ``*.fmnist-pl.tmp``,
    in a folder that is ours and whose lock is held)."""
    count = 0
    for tmp in folder.rglob(f"*{TEMPORARY_SUFFIX}"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            count += 1
    return count


def remove_failed_start(claim: Claim | None) -> None:
    """Take back what :func:`exclusive` made when the start failed, so the name is free again:
    the folders it created, or the marker and lock it put into a folder that was there (empty)."""
    if claim is None:
        return
    if claim.created is not None:
        # Its own folder whole; the parents it made only while empty: another command may have
        # started in a new --output-dir meanwhile, and what it wrote there is not ours.
        shutil.rmtree(claim.folder, ignore_errors=True)
        top = claim.created.absolute()
        for parent in claim.folder.absolute().parents:
            if parent != top and top not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:
                break
            if parent == top:
                break
    elif claim.marked and only_marked(claim.folder):
        # A folder that was there (empty): the marker and lock go only if nothing else of the start
        # was written; otherwise the marker stays, so that the next start completes the folder.
        for name in (MARKER_FILE, LOCK_FILE):
            (claim.folder / name).unlink(missing_ok=True)


def only_marked(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but the marker and the lock (a start that wrote nothing else)."""
    try:
        return {e.name for e in os.scandir(folder)} <= {MARKER_FILE, LOCK_FILE}
    except OSError:
        return False
