"""Runs that take turns on the machine: round-robin time slices across worker processes.

Why: a seconds budget must be the same for every method, but a machine's speed drifts (another
program, a noisy neighbour on a shared host, frequency changes). Runs trained one after another
each inherit whatever the machine was doing at their turn; runs that take turns in short slices
share every slow minute alike. One run trains at a time, with all the cores, as a run alone
would, and its budget clock (the training thread's CPU time: :mod:`fmnist_pl.engine.budget`)
does not advance while it waits for its turn.

The operating system's scheduler cannot do this: it runs every process at once, and two runs
sharing two cores spin their OpenMP threads against each other (the CPU time a budget counts).
``multiprocessing`` has no fair, ordered hand-over either (a released lock may go back to the
process that released it), so this is a small ticket scheme over one shared condition:

* a worker :meth:`~Turns.join` s with its unit's key when it starts the unit and waits for its turn;
* after each training step, :meth:`~Turns.pass_on` hands the turn to the next unit that has joined
  (in key order, cyclically) once its slice is used up;
* :meth:`~Turns.leave` when the unit is written, handing the turn on for good.

The hand-over happens only between training steps: a validation, the test and the run's files
are written inside a turn, so nothing else trains beside them.
"""

from __future__ import annotations

import time
from typing import Any

SLICE_S = 0.5  # short against a budget of tens of seconds; long against one step (milliseconds)
NOBODY = -1


class Turns:
    """Round-robin turns among ``slots`` units (keys ``0..slots-1``), shared by a pool's processes.

    Created by the pool's owner from its ``multiprocessing`` context and handed to each worker
    when it starts (synchronization objects travel only that way); ``slots`` bounds the keys.
    """

    def __init__(self, context: Any, slots: int, slice_s: float = SLICE_S) -> None:
        self.slots = slots
        self.slice_s = slice_s
        self._cond = context.Condition()
        self._joined = context.Array("b", slots, lock=False)  # guarded by _cond
        self._holder = context.Value("i", NOBODY, lock=False)
        self._since = 0.0  # this process: when it got the turn

    def join(self, key: int) -> float:
        """Take part as unit ``key`` and wait for its first turn; returns the seconds waited."""
        began = time.perf_counter()
        with self._cond:
            self._joined[key] = 1
            if self._holder.value == NOBODY:
                self._holder.value = key
            self._cond.wait_for(lambda: self._holder.value == key)
        self._since = time.perf_counter()
        return self._since - began

    def pass_on(self, key: int) -> float:
        """Between two steps of unit ``key``: hand the turn on if its slice is used up, and wait
        for the next; returns the seconds waited (0 when it kept the turn)."""
        now = time.perf_counter()
        if now - self._since < self.slice_s:
            return 0.0
        with self._cond:
            following = self._next(key)
            if following == key:  # nobody else is waiting: a new slice
                self._since = now
                return 0.0
            self._holder.value = following
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._holder.value == key)
        self._since = time.perf_counter()
        return self._since - now

    def leave(self, key: int) -> None:
        """Unit ``key`` is done (or failed): it takes no more turns, and hands its own on."""
        with self._cond:
            self._joined[key] = 0
            if self._holder.value == key:
                following = self._next(key)
                self._holder.value = NOBODY if following == key else following
            self._cond.notify_all()

    def _next(self, key: int) -> int:
        """The joined unit after ``key`` in cyclic key order (``key`` itself if none other is)."""
        for step in range(1, self.slots + 1):
            other = (key + step) % self.slots
            if self._joined[other] and other != key:
                return other
        return key
