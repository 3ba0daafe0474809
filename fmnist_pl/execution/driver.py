"""The driver's side of training units in other processes (a local pool's workers, Ray tasks).

One loop (:func:`drive`) for every backend that sends units elsewhere: wait for the next ones
to finish, take in what the workers sent meanwhile, and on a stop or a failure end the rest
(each unit keeps its last epoch checkpoint). And one progress bar: Lightning's own shows one
Trainer's steps; when several Trainers run elsewhere at once, the driver counts their finished
epochs instead, from the messages the workers send after each epoch checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Sequence, TypeVar

Handle = TypeVar("Handle")  # a running unit as its backend knows it (a future, a Ray object ref)


@dataclass
class UnitProgress:
    """Finished units and epochs across worker processes, as one bar (or lines, with --no-progress).

    ``epoch(unit, n)`` is told each unit's newest finished epoch; ``finished(unit, text)`` once a unit
    is done (its text is printed above the bar).
    """

    units: int
    epochs: int
    echo: Callable[[str], None]
    show: bool
    done: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    bar: Any = None

    def __post_init__(self) -> None:
        if self.show:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.units * self.epochs, unit="epoch", desc=self._desc(), dynamic_ncols=True)

    def _desc(self) -> str:
        return f"groups {self.done}/{self.units}"

    def say(self, text: str) -> None:
        if self.bar is None:
            self.echo(text)
        else:
            with self.bar.external_write_mode():
                self.echo(text)

    def epoch(self, unit: str, epoch: int) -> None:
        new = max(0, epoch - self.seen.get(unit, 0))  # a retried unit repeats epochs already counted
        self.seen[unit] = max(epoch, self.seen.get(unit, 0))
        if self.bar is not None and new:
            self.bar.update(new)

    def finished(self, unit: str, text: str) -> None:
        self.done += 1
        rest = self.epochs - self.seen.get(unit, 0)  # a time budget may end a unit early
        self.seen[unit] = self.epochs
        if self.bar is not None:
            self.bar.set_description(self._desc())
            self.bar.update(max(0, rest))
        self.say(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class Driver(Generic[Handle]):
    """How one backend waits for its units; :func:`drive` runs the loop that every backend shares.

    ``wait(pending)``: the handles done now and those still running (returning within ~0.5 s, so
    that progress stays live); ``drain()``: take in the workers' epoch messages and files;
    ``done(handle)``: the finished unit's result, written where it belongs -> (unit key, line to
    print), raising its failure; ``abort(pending)``: end every unit still running.
    """

    wait: Callable[[list[Handle]], tuple[list[Handle], list[Handle]]]
    drain: Callable[[], None]
    done: Callable[[Handle], tuple[str, str]]
    abort: Callable[[list[Handle]], None]


def drive(handles: Sequence[Handle], driver: Driver[Handle], progress: UnitProgress) -> None:
    """Wait for every unit of ``handles``; on any exception (a failed unit, Ctrl-C) abort the rest."""
    pending = list(handles)
    try:
        while pending:
            ready, pending = driver.wait(pending)
            driver.drain()  # first: the epochs a finished unit sent come before its final files
            for handle in ready:
                progress.finished(*driver.done(handle))
    except BaseException:
        driver.abort(pending)
        raise
    finally:
        progress.close()
