"""A tune's learning curves in its Optuna studies while a round trains, so that optuna-dashboard
plots them as they grow, beside TensorBoard.

Why TensorBoard's files: every backend already writes each run's ``val/acc`` there after each
epoch (a pool's workers into the output folder, Ray's driver from the files its tasks ship, this
process itself), so following them needs no channel of its own through the backends. TensorBoard
keeps a scalar as float32, which a validation accuracy already is: the values equal the runs'
histories, and the round's end writes every value again from those (:func:`fmnist_pl.study.tune`'s
``_report_curve``) - what a study holds at the end never depends on what was seen live.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from fmnist_pl import store
from fmnist_pl.store.schema import ConfigFile

POLL_S = 5.0  # how often the round's folders are read: a study's page refreshes about as often
JOIN_S = 30.0  # how long the round's end waits for a poll under way
VAL_ACC = "val/acc"  # the per-epoch scalar the engine logs for each run (step = epoch)


def epoch_values(events: Any) -> dict[int, float]:
    """A run's validation accuracy after each whole epoch, as its TensorBoard files hold them so far
    (``events``: its ``EventAccumulator``, kept across polls so that each reads only what is new)."""
    events.Reload()
    if VAL_ACC not in events.Tags().get("scalars", ()):
        return {}
    return {int(e.step): float(e.value) for e in events.Scalars(VAL_ACC)}


class LiveCurves:
    """While inside: every ``POLL_S`` seconds, each trial's validation accuracy after each whole epoch - the
    mean over its tuning seeds, once every seed has that epoch - becomes an intermediate value of its
    Optuna trial (step = epoch), from the runs' TensorBoard files in ``folders()``.

    ``folders()``: the round's compare folders in the order they train (its rungs, then its own); ``trials``:
    a trial's setting (``adam/trial-003``) -> ``(storage, trial id)``. Best effort: a poll that fails (a file
    caught half-written, a database busy) is tried again at the next; the round's end writes every value anyway.
    """

    def __init__(
        self, folders: Callable[[], Sequence[Path]], trials: Mapping[str, tuple[Any, int]], every_s: float = POLL_S
    ) -> None:
        self.folders, self.trials, self.every_s = folders, dict(trials), every_s
        self.reported: set[tuple[str, int]] = set()
        self._runs: dict[Path, dict[str, list[str]]] = {}  # folder -> setting -> its runs, once its setup exists
        self._events: dict[tuple[Path, str], Any] = {}  # (folder, run) -> its EventAccumulator
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="live-curves")

    def __enter__(self) -> LiveCurves:
        if self.trials:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            # Not for ever: a database that hangs must not hold the tune; the round's end writes every value.
            self._thread.join(timeout=JOIN_S)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - best effort: the round's end writes every value
                continue

    def poll(self) -> None:
        """Report what the round's folders hold now and was not reported yet."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        runs: dict[str, list[str]] = {}  # setting -> its runs (one per tuning seed)
        values: dict[str, dict[int, float]] = {}  # run -> epoch -> accuracy, over the folders (rungs, then the round)
        for folder in self.folders():
            if folder not in self._runs:
                setup = folder / store.CONFIG_FILE
                if not setup.exists():
                    continue
                planned: dict[str, list[str]] = {}
                for r in store.read_checked(setup, ConfigFile).runs:
                    if r.setting in self.trials:
                        planned.setdefault(r.setting, []).append(r.run)
                self._runs[folder] = planned
            for setting, names in self._runs[folder].items():
                for run in names:
                    runs.setdefault(setting, [])
                    if run not in runs[setting]:
                        runs[setting].append(run)
                    logs = folder / "tensorboard" / run
                    if (folder, run) not in self._events and logs.is_dir():
                        self._events[folder, run] = EventAccumulator(str(logs), size_guidance={"scalars": 0})
                    if (folder, run) in self._events:
                        values.setdefault(run, {}).update(epoch_values(self._events[folder, run]))
        for setting, names in runs.items():
            storage, trial_id = self.trials[setting]
            for epoch in sorted(set.intersection(*(set(values.get(n, {})) for n in names))):
                if (setting, epoch) in self.reported:
                    continue
                storage.set_trial_intermediate_value(trial_id, epoch, mean(values[n][epoch] for n in names))
                self.reported.add((setting, epoch))


def mean(values: Iterable[float]) -> float:
    """The mean over the tuning seeds, summed in their order as a round's results are (the same float)."""
    seeds = list(values)
    return sum(seeds) / len(seeds)
