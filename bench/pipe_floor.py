#!/usr/bin/env python3
"""The floor under bench/workers_speed.py: bare pipe round trips, no environment, no palaestra.

Each of W processes answers a 64-byte message with a 64-byte message after sleeping `--ms`
(the simulator's step); the parent sends to all and reads from all (`all`, lockstep) or
answers whichever has replied (`ready`, `multiprocessing.connection.wait`). The rate is what
the machine's processes, pipes and wake-ups allow when nothing else is done per round trip:
palaestra's worker processes do the same plus the step's metadata, the shared blocks and the
batch assembly, so the gap between the two tables is palaestra's own cost.

    python bench/pipe_floor.py            # 2 ms, 1/2/4/8 processes
    python bench/pipe_floor.py --ms 0     # round trips per second with no simulator at all
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workers_speed import machine  # noqa: E402

MESSAGE = b"x" * 64


def _answer(conn: Connection, ms: float) -> None:
    while True:
        if conn.recv_bytes() == b"q":
            return
        if ms:
            time.sleep(ms / 1000)
        conn.send_bytes(MESSAGE)


def rate(processes: int, ms: float, steps: int, ready: bool) -> float:
    """Round trips per second over `steps` rounds (each process answers `steps` times)."""
    context = mp.get_context("spawn")
    pipes = [context.Pipe() for _ in range(processes)]
    children = [context.Process(target=_answer, args=(child, ms), daemon=True)
                for _, child in pipes]
    for child in children:
        child.start()
    conns = [parent for parent, _ in pipes]
    for conn in conns:  # one round before timing: every process started and answering
        conn.send_bytes(MESSAGE)
    for conn in conns:
        conn.recv_bytes()
    start, done = time.perf_counter(), 0
    if not ready:
        for _ in range(steps):
            for conn in conns:
                conn.send_bytes(MESSAGE)
            for conn in conns:
                conn.recv_bytes()
        done = steps * processes
    else:
        for conn in conns:
            conn.send_bytes(MESSAGE)
        while done < steps * processes:
            for conn in wait(conns):
                conn.recv_bytes()  # type: ignore[union-attr]
                done += 1
                conn.send_bytes(MESSAGE)  # type: ignore[union-attr]
        for conn in conns:
            conn.recv_bytes()
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.send_bytes(b"q")
    for child in children:
        child.join()
    return done / elapsed


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ms", type=float, default=2.0, help="Sleep per answer (2 ms).")
    parser.add_argument("--processes", default="1,2,4,8", help="Process counts (1,2,4,8).")
    parser.add_argument("--steps", type=int, default=0,
                        help="Rounds per row (default: 600, or 3000 with --ms 0).")
    args = parser.parse_args(argv)
    steps = args.steps or (600 if args.ms else 3000)
    print(f"# {machine()}")
    print(f"# answers after {args.ms:g} ms, {steps} rounds per row")
    print(f"{'processes':>9}  {'sync':>5}  {'round trips/s':>13}  {'vs 1':>6}")
    for sync in ("all", "ready"):
        one = None
        for n in [int(p) for p in args.processes.split(",")]:
            r = rate(n, args.ms, steps, sync == "ready")
            one = one or r
            print(f"{n:>9}  {sync:>5}  {r:13.0f}  {r / one:5.2f}x")


if __name__ == "__main__":
    main()
