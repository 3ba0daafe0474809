"""Ctrl-C and SIGTERM as one exception, whatever the compare is doing when they arrive.

While a compare runs, both signals raise :class:`Stopped` (a ``BaseException``, like
``KeyboardInterrupt``), in training, testing, writing a run's files or rendering. Lightning
keeps its own SIGTERM bookkeeping and calls the handler that was there before it (ours), so a
stop inside ``Trainer.fit`` arrives the same way. The compare then keeps what finished, renders
the report from it and exits 130 (SIGINT) or 143 (SIGTERM), as shells report those signals.

Worker processes (the training pool's, the report's figure worker) leave the answer to their
owner: they ignore Ctrl-C, and they end when the owner does (:func:`lifeline`, :func:`as_child_of`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator


class Stopped(BaseException):
    """The user (Ctrl-C) or the system (SIGTERM) asked the compare to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_received: int | None = None


def requested() -> int | None:
    """The signal that asked this process to stop, if one did (even if its exception was swallowed:
    a stop that lands inside a library's import can be caught there and resurface as another error)."""
    return _received


def _raise(signum: int, frame: Any) -> None:
    global _received
    _received = signum
    raise Stopped(signum)


@contextlib.contextmanager
def stops_as_exceptions() -> Iterator[None]:
    """Within: SIGINT and SIGTERM raise :class:`Stopped`; the previous handlers come back after.

    Only the main thread can own signal handlers; elsewhere (a worker thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def lifeline() -> tuple[Any, Any]:
    """A one-way pipe from a pool's owner to its workers: ``(reader, writer)``. The owner keeps the
    writer, each worker gets the reader (:func:`as_child_of`); the reader sees end-of-file once no
    process holds the writer, that is, once the owner has ended - ``kill -9`` included."""
    import multiprocessing

    return multiprocessing.Pipe(duplex=False)


def as_child_of(owner: Any) -> None:
    """For a worker process of a pool: ignore Ctrl-C (the pool's owner answers it and ends its
    workers) and leave once the owner is gone (``owner``: the reader of its :func:`lifeline`).

    Not "once the parent process changes": a fork server's workers keep the fork server alive
    (they hold its alive-pipe), so it never ends before them; and a pool's own pipes do not tell
    either: a worker holds both ends of its call queue. Either way it would wait forever, and keep
    the terminal's or a caller's output pipes open.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_closed, args=(owner,), daemon=True, name="owner-watch").start()


def _exit_when_closed(owner: Any) -> None:
    try:
        owner.poll(None)  # nothing is ever sent: this returns at end-of-file
    finally:
        os._exit(0)
