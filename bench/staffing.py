"""Staffing benchmark: the time to recompute the agents needed for 500 queues (target: under 50 ms).

Run: ``.venv/bin/python bench/staffing.py`` (options: ``--queues N``, ``--rounds N``, ``--seed N``).

Each queue gets a half-hour's demand drawn at random: 5 to 2,000 calls, mean
handle time 60 to 600 s (offered loads from a fraction of an Erlang to about
650 Erlangs), an 80/20 target.  The same 500 queues are staffed three ways:
Erlang C; Erlang A with every queue's callers hanging up after a mean
patience of 30 to 600 s; and mixed (half of each), as ``[reports] patience =
observed`` gives when half the queues saw abandonment.  The figure is the
median over ``--rounds`` recomputations of all queues, with the slowest, in
wall-clock time and in this process's CPU time (the machine may be shared:
CPU time is what the computation itself costs).  Prints MET when every
model's median is under 50 ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import datetime

from ctid.staffing import Demand, ServiceTarget, staff_all


def make_demands(count: int, rng: random.Random, share_with_patience: float) -> list[Demand]:
    """``count`` random half-hour demands; that share of them with a patience (Erlang A)."""
    start = datetime(2026, 5, 4, 9, 0)
    return [Demand(f"q{i}", start, 1800.0, rng.randint(5, 2000), rng.uniform(60, 600),
                   rng.uniform(30, 600) if rng.random() < share_with_patience else None)
            for i in range(count)]


def measure(demands: list[Demand], rounds: int) -> tuple[float, float, float, int]:
    """(median ms, worst ms, median CPU ms, agents in total) of staffing all ``demands`` ``rounds`` times."""
    target = ServiceTarget(0.8, 20.0)
    times, cpu = [], []
    agents = 0
    for _ in range(rounds):
        began, began_cpu = time.perf_counter(), time.process_time()
        result = staff_all(demands, target)
        times.append((time.perf_counter() - began) * 1000)
        cpu.append((time.process_time() - began_cpu) * 1000)
        agents = sum(s.agents for s in result)
    return statistics.median(times), max(times), statistics.median(cpu), agents


def main() -> None:
    """Print one line per model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"{'model':<10} {'queues':>6} {'median ms':>10} {'worst ms':>9} {'CPU ms':>7} {'agents':>8}")
    medians = []
    for label, share in (("erlang C", 0.0), ("erlang A", 1.0), ("mixed", 0.5)):
        demands = make_demands(args.queues, random.Random(args.seed), share)
        median, worst, cpu, agents = measure(demands, args.rounds)
        medians.append(median)
        print(f"{label:<10} {args.queues:>6} {median:>10.1f} {worst:>9.1f} {cpu:>7.1f} {agents:>8}")
    print(f"target: {args.queues} queues under 50 ms: {'MET' if max(medians) < 50 else 'NOT MET'}")


if __name__ == "__main__":
    main()
