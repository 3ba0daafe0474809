"""Runs that take turns (fmnist_pl.runtime.turns): one holder at a time, round-robin, and a unit
that leaves (done or failed) hands its turn on."""

import multiprocessing
import time

from fmnist_pl.runtime.turns import Turns


def _worker(turns, key, busy, started, log, steps):
    """A unit: join, then `steps` steps of ~5 ms of work, passing the turn on between them. Each step
    is numbered under the lock as it starts: the queue's order is the order its feeder threads
    flushed in, which a loaded machine shuffles."""
    turns.join(key)
    try:
        for _ in range(steps):
            with busy.get_lock():
                busy.value += 1
                alone = busy.value == 1
                started.value += 1  # under busy's lock
                log.put((started.value, key, alone))
            end = time.perf_counter() + 0.005
            while time.perf_counter() < end:
                pass
            with busy.get_lock():
                busy.value -= 1
            turns.pass_on(key)
    finally:
        turns.leave(key)


def _run(units, steps, slice_s):
    context = multiprocessing.get_context("spawn")
    turns = Turns(context, 16, slice_s=slice_s)
    busy, started, log = context.Value("i", 0), context.Value("i", 0, lock=False), context.Queue()
    workers = [context.Process(target=_worker, args=(turns, k, busy, started, log, steps[k])) for k in range(units)]
    for w in workers:
        w.start()
    entries = sorted(log.get(timeout=60) for _ in range(sum(steps[:units])))
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    return [(key, alone) for _, key, alone in entries]


def test_one_unit_works_at_a_time_and_every_unit_gets_turns_in_rotation():
    entries = _run(3, [40, 40, 40], slice_s=0.02)
    assert all(alone for _, alone in entries), "two units worked at the same time"
    order = [key for key, _ in entries]
    # Runs of consecutive steps by one unit: with 20 ms slices of 5 ms steps, each turn is a few
    # steps, so every unit takes many turns, interleaved - not 40 steps then the next unit.
    turns = [order[0]] + [b for a, b in zip(order, order[1:]) if a != b]
    assert len(turns) >= 10
    assert set(turns[:6]) == {0, 1, 2}
    # Round-robin: once all three have joined (spawned processes start at different times) and
    # before the first leaves, the turn goes to the next key cyclically.
    joined = max(order.index(k) for k in range(3))
    left = min(len(order) - 1 - order[::-1].index(k) for k in range(3))
    starts = [0] + [i for i in range(1, len(order)) if order[i] != order[i - 1]]
    in_rotation = [order[i] for i in starts if joined <= i <= left]
    assert len(in_rotation) >= 4
    assert all((b - a) % 3 == 1 for a, b in zip(in_rotation, in_rotation[1:]))


def test_a_unit_that_leaves_hands_its_turn_on_and_the_rest_finish():
    entries = _run(3, [2, 30, 30], slice_s=0.5)  # unit 0 leaves inside its first slice
    assert all(alone for _, alone in entries)
    assert sorted(key for key, _ in entries) == [0] * 2 + [1] * 30 + [2] * 30


def test_alone_a_unit_keeps_its_turn_without_waiting():
    context = multiprocessing.get_context("spawn")
    turns = Turns(context, 4, slice_s=0.0)
    assert turns.join(2) < 0.5
    assert turns.pass_on(2) == 0.0  # nobody else has joined
    turns.leave(2)
    assert turns.join(0) < 0.5  # free again after the only holder left
    turns.leave(0)
