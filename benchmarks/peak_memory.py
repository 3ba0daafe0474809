"""Wall time and peak memory of a whole command and every process it starts (Linux).

``/usr/bin/time -v`` reports the largest single process it waited for; a compare that trains in
worker processes forked by a fork server (``fmnist_pl/run/pool.py``) is several processes, and the
fork server is never waited for. This samples the command's whole process tree instead, every
0.2 s: the sum of PSS (each shared page counted once, split between the processes sharing it -
what the tree really holds) and of RSS (shared pages counted in every process: an upper bound).

    python benchmarks/peak_memory.py -- fmnist-pl compare --epochs 30 --no-progress
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(root: int) -> list[int]:
    tree, out, todo = children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB, from smaps_rollup; (0, 0) once it is gone."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
        return int(fields["Pss"].split()[0]), int(fields["Rss"].split()[0])
    except (OSError, ValueError, KeyError):
        pass
    try:  # kernels without smaps_rollup (gVisor, on some lent GPU machines): RSS stands in for PSS
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        rss = int(fields["VmRSS"].split()[0])
    except (OSError, ValueError, KeyError):
        return 0, 0
    return rss, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    began = time.perf_counter()
    proc = subprocess.Popen(command)
    peak_pss = peak_rss = peak_procs = 0
    largest: dict[int, int] = {}
    while proc.poll() is None:
        pids = descendants(proc.pid)
        sizes = {pid: memory_kib(pid) for pid in pids}
        peak_pss = max(peak_pss, sum(p for p, _ in sizes.values()))
        peak_rss = max(peak_rss, sum(r for _, r in sizes.values()))
        peak_procs = max(peak_procs, sum(1 for p, _ in sizes.values() if p))
        for pid, (_, rss) in sizes.items():
            largest[pid] = max(largest.get(pid, 0), rss)
        time.sleep(0.2)
    wall = time.perf_counter() - began
    biggest = sorted(largest.values(), reverse=True)
    print(
        f"{' '.join(command)}: exit {proc.returncode}, {wall:.1f} s wall; up to {peak_procs} processes; "
        f"peak PSS of the process tree {peak_pss / 2**20:.2f} GiB, peak sum of RSS {peak_rss / 2**20:.2f} GiB; "
        f"largest RSS per process (GiB): {', '.join(f'{r / 2**20:.2f}' for r in biggest[:6])}",
        file=sys.stderr,
    )
    sys.exit(proc.returncode)


if __name__ == "__main__":
    if not os.path.exists("/proc/self/status"):
        sys.exit("peak_memory.py reads /proc/<pid>/smaps_rollup or status: Linux only")
    main()
