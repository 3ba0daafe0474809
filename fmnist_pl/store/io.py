"""Atomic writes: a process killed at any moment leaves each results file complete or absent.

Every file is written to a temporary sibling and renamed into place (``os.replace`` is
atomic on POSIX), with the permissions a plain ``open()`` would give it. The sibling's name
ends in ``TEMPORARY_SUFFIX``, which only fmnist-pl uses: clean-up after a kill removes those
and nothing else.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

from fmnist_pl.store.layout import HISTORY_CSV, HISTORY_JSON, TEMPORARY_SUFFIX


def _temporary(path: Path) -> tuple[int, str]:
    """A new temporary sibling of ``path``, open for writing, created as ``open()`` creates files:
    mode 0666 less the umask, applied by the kernel at creation (reading the umask would mean
    setting it, process-wide, while other threads create files)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """``write(file)`` fills a temporary sibling of ``path``, which then replaces ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with what open() would give (0666 less the umask), not mkstemp's 0600, so that a report
    # copied to a shared folder or served by a web server stays readable.
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileWriter:
    """Writes files atomically on a few threads while the caller goes on to its next run.

    A study writes a thousand runs' files, megabytes a run with the checkpoints, each flushed to
    disk: one after another the disk's latency adds up, while the writes and the
    ``fsync`` release the GIL. :meth:`write` takes a run's files as encoded bytes and writes them
    in their order on one thread - so a run's ``metrics.json``, given last, still appears only
    once its other files are in place. Leaving the ``with`` block waits for every write and
    raises the first error (a full disk, say) in the caller's thread.
    """

    def __init__(self, threads: int = 4, queued: int = 16) -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fmnist-write")
        self._pending: deque[Any] = deque()
        self._queued = queued  # runs' bytes held at most: a slow disk holds up the caller, not memory

    def write(self, files: Sequence[tuple[Path, bytes]]) -> None:
        """Write ``files`` ((path, bytes), in this order) on one of the threads."""
        while self._pending and (self._pending[0].done() or len(self._pending) >= self._queued):
            self._pending.popleft().result()  # waits for the oldest; raises its error here, early
        self._pending.append(self._pool.submit(write_files, list(files)))

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)  # on an error too: no write is left running behind the caller
        pending, self._pending = self._pending, type(self._pending)()
        if exc[0] is None:
            for future in pending:
                future.result()  # the first failure, raised here


def write_files(files: Sequence[tuple[Path, bytes]]) -> None:
    """Write ``files`` ((path, bytes)) atomically, one after another, in their order."""
    for path, data in files:
        atomic_write_bytes(path, data)


def json_bytes(data: Any, indent: int | None = 2) -> bytes:
    """``data`` as JSON that any parser reads: a NaN or infinity (a diverged run's loss) becomes ``null``.

    Bare ``NaN`` is not JSON (JavaScript's ``JSON.parse`` rejects it); the schemas read ``null``
    back as NaN where a field is a float. The common case, nothing non-finite, is encoded once by
    json's C encoder; only data that holds a non-finite float is walked and encoded again.
    """
    import math

    def finite(value: Any) -> Any:
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    try:
        text = json.dumps(data, indent=indent, allow_nan=False)
    except ValueError:  # a non-finite float; allow_nan=False again: nothing else non-finite slips through
        text = json.dumps(finite(data), indent=indent, allow_nan=False)
    return (text + "\n").encode("utf-8")


def torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any, indent: int | None = 2) -> None:
    atomic_write_bytes(path, json_bytes(data, indent))


def read_json(path: Path) -> Any:
    """The JSON in ``path``. What json parses but Python refuses (nesting too deep, an integer too long)
    is a :class:`json.JSONDecodeError` like any other damage, not an error that callers would not expect."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply to be results", text, 0) from None
    except ValueError as exc:  # an integer of over 4,300 digits, say
        raise json.JSONDecodeError(str(exc)[:80], text, 0) from None


def history_files(run_dir: Path, history: list[dict[str, float]]) -> list[tuple[Path, bytes]]:
    """A run's epoch history as history.json and history.csv (encoded, for :class:`FileWriter`)."""
    buf = io.StringIO()
    if history:
        # Every row's columns, in first-seen order: only a budget's last epoch has "fraction".
        writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
        writer.writeheader()
        writer.writerows(history)
    return [(run_dir / HISTORY_JSON, json_bytes(history)), (run_dir / HISTORY_CSV, buf.getvalue().encode("utf-8"))]


def atomic_torch_save(path: Path, obj: Any) -> None:
    """``torch.save`` straight into the temporary file: a study's epoch checkpoint is ~4 GiB, which
    an in-memory copy first would hold twice and copy once more."""
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh))
