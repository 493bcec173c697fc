#!/usr/bin/env python
"""Benchmark ``dc2flow.packing.plan_bundles``: bundles, bounds, solve time and memory.

What is measured
----------------
For campaigns of 1, 20 and 100 visits x 189 sensors and two node shapes, the script plans the
bundles and prints, per size: the bundles found, the lower bound
``max(ceil(sum mem / (M - V)), ceil(n / C))`` (and the stronger per-visit bound), first fit
decreasing (FFD) over all sensors, DC2's flat rule (2 GB per sensor + 10 GB per visit, one visit
per bundle), the node-seconds, the solve time, the peak memory (``ru_maxrss`` of this process
and tracemalloc's peak of the Python heap during the solve) and the solver.  Every plan is checked
for feasibility.  Nothing is asserted: the targets are printed next to the figures.

Targets: optimal at 189 sensors in < 2 s; <= 1.03 x the bound at 20 visits in < 10 s;
100 visits in < 60 s on 2 cores; never worse than FFD.

Demands
-------
Synthetic by default (:func:`synthetic_jobs`, seeded): each visit has a density factor
(lognormal, sigma 0.5: sparse and dense fields), a typical sensor needs 0.3-2 GB, and a few
sensors per visit (Poisson, mean 3) hold bright stars and need 2-8 GB more; runtimes grow with
memory (~300 s + 900 s/GB, lognormal scatter).  ``--jobs FILE`` reads a jobs CSV instead
(columns ``visit,det_name,mem_gb[,runtime_s]``, e.g. made from the estimates tables); its visits
are then taken as the sizes' first 1, 20 and 100 visits.

Usage::

    python benchmarks/bundle_bench.py                       # both node shapes, 1/20/100 visits
    python benchmarks/bundle_bench.py --visits 1 20 --solver cbc
    python benchmarks/bundle_bench.py --jobs campaign.csv --node 512 128 10
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc

import numpy as np

from dc2flow.packing import (Job, Node, check_plan, dc2_flat_bundles, first_fit_decreasing, lower_bound,
                             plan_bundles, read_jobs, strong_lower_bound)

N_SENSORS = 189
NODE_SHAPES = ((256.0, 64, 10.0), (64.0, 32, 10.0))  # (memory GB, cores, visit overhead GB)
TIME_LIMIT_S = 12 * 3600.0


def synthetic_jobs(n_visits: int, seed: int = 1, first_visit: int = 1000) -> list[Job]:
    """Sensor jobs of ``n_visits`` visits x 189 sensors with varied demands (see the module doc)."""
    rng = np.random.default_rng(seed)
    jobs = []
    for k in range(n_visits):
        visit = first_visit + k
        density = rng.lognormal(0.0, 0.5)
        mem = np.clip(0.25 + 0.6 * density * rng.lognormal(0.0, 0.35, N_SENSORS), 0.3, 4.0)
        spikes = rng.choice(N_SENSORS, size=min(N_SENSORS, rng.poisson(3)), replace=False)
        mem[spikes] += rng.uniform(2.0, 8.0, spikes.size)
        runtime = 300.0 + 900.0 * mem * rng.lognormal(0.0, 0.3, N_SENSORS)
        for d in range(N_SENSORS):
            jobs.append(Job(visit, f"S{d:03d}", round(float(mem[d]), 4), round(float(runtime[d]), 1)))
    return jobs


def first_visits(jobs: list[Job], n_visits: int) -> list[Job]:
    visits = sorted({j.visit for j in jobs})[:n_visits]
    keep = set(visits)
    return [j for j in jobs if j.visit in keep]


def run_one(jobs: list[Job], node: Node, solver: str, time_limit_s: float) -> dict:
    tracemalloc.start()
    start = time.perf_counter()
    plan, summary = plan_bundles(jobs, node, solver=solver, time_limit_s=time_limit_s)
    wall = time.perf_counter() - start
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    problems = check_plan(plan, jobs)
    return dict(n=len(jobs), visits=summary.n_visits, bundles=plan.n_bundles, lb=lower_bound(jobs, node),
                strong=strong_lower_bound(jobs, node), lp=summary.lp_bound,
                ffd=first_fit_decreasing(jobs, node).n_bundles, dc2=dc2_flat_bundles(jobs, node),
                node_s=plan.node_seconds, wall=wall, heap_mb=heap_peak / 2**20,
                rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, solver=summary.solver,
                method=summary.method, status=summary.status, ok=not problems, problems=problems)


def verdict(row: dict) -> str:
    ratio = row["bundles"] / row["lb"]
    notes = []
    if row["visits"] == 1:
        notes.append(f"optimal<2s: {'yes' if row['bundles'] == max(row['strong'], row['lp'] or 0) and row['wall'] < 2 else 'no'}")
    elif row["visits"] <= 20:
        notes.append(f"<=1.03xLB<10s: {'yes' if ratio <= 1.03 and row['wall'] < 10 else 'no'}")
    else:
        notes.append(f"<60s: {'yes' if row['wall'] < 60 else 'no'}")
    notes.append(f"<=FFD: {'yes' if row['bundles'] <= row['ffd'] else 'NO'}")
    if not row["ok"]:
        notes.append("INFEASIBLE: " + "; ".join(row["problems"][:3]))
    return ", ".join(notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, nargs="+", default=[1, 20, 100], help="campaign sizes, visits")
    parser.add_argument("--node", type=float, nargs=3, action="append", metavar=("MEM_GB", "CORES", "V_GB"),
                        help="a node shape (repeatable) [default: 256 64 10 and 64 32 10]")
    parser.add_argument("--solver", default="auto", choices=["auto", "highs", "cbc"])
    parser.add_argument("--time-limit-s", type=float, default=None,
                        help="solver budget [default: 2 s at 1 visit, 8 s up to 20, 50 s above]")
    parser.add_argument("--jobs", help="read the demands from this CSV instead of the synthetic ones")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    shapes = [(m, int(c), v) for m, c, v in args.node] if args.node else NODE_SHAPES
    source = read_jobs(args.jobs) if args.jobs else synthetic_jobs(max(args.visits), args.seed)
    header = (f"{'node':>13} {'visits':>6} {'sensors':>7} {'bundles':>7} {'LB':>4} {'strong':>6} {'x LB':>5} "
              f"{'FFD':>4} {'DC2':>4} {'node-h':>7} {'time s':>7} {'heap MB':>7} {'RSS MB':>7} "
              f"{'solver':>6} {'method':>10}  targets")
    print(header)
    print("-" * len(header))
    worst_ok = True
    for memory, cores, overhead in shapes:
        node = Node(memory, cores, overhead, TIME_LIMIT_S)
        for n_visits in args.visits:
            jobs = first_visits(source, n_visits)
            limit = args.time_limit_s or (2.0 if n_visits <= 1 else 8.0 if n_visits <= 20 else 50.0)
            row = run_one(jobs, node, args.solver, limit)
            worst_ok &= row["ok"] and row["bundles"] <= row["ffd"]
            print(f"{f'{memory:g}GB/{cores}c/{overhead:g}':>13} {row['visits']:>6} {row['n']:>7} {row['bundles']:>7} "
                  f"{row['lb']:>4} {row['strong']:>6} {row['bundles'] / row['lb']:>5.3f} {row['ffd']:>4} "
                  f"{row['dc2'] if row['dc2'] is not None else '-':>4} {row['node_s'] / 3600:>7.1f} "
                  f"{row['wall']:>7.2f} {row['heap_mb']:>7.1f} {row['rss_mb']:>7.0f} {row['solver']:>6} "
                  f"{row['method']:>10}  {verdict(row)}")
            print(f"{'':>14}status: {row['status']}")
            sys.stdout.flush()
    return 0 if worst_ok else 1


if __name__ == "__main__":
    sys.exit(main())
