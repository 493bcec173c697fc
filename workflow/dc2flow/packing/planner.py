"""The public entry: :func:`plan_bundles`, :func:`summarise` and :func:`check_plan`."""

from __future__ import annotations

import time
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError
from .records import MEM_TOL_GB, MILP_MAX_JOBS, Job, Node, Plan, Summary, _job_order, bundle_name
from .bounds import lower_bound, node_seconds_bound, strong_lower_bound, validate_jobs
from .heuristics import _balance, dc2_flat_bundles, first_fit_decreasing, visit_first_fit
from .milp import _resolve_solver, _solve_milp
from .search import _decomposed


def plan_bundles(jobs: Iterable[Job], node: Node, solver: str = "auto", time_limit_s: float = 60.0,
                 block_visits: int | None = None, milp_max_jobs: int = MILP_MAX_JOBS) -> tuple[Plan, Summary]:
    """Pack sensor jobs into as few bundles (nodes) as possible, then balance their runtimes.

    Up to ``milp_max_jobs`` jobs, one integer program (:func:`solve_milp`); above, a
    decomposition by blocks of visits and a merge of their partial bundles (see the module
    docstring).  First fit decreasing and visit-grouped first fit are always candidates, so the
    plan never has more bundles than FFD (ties: fewer node-seconds win).

    Parameters:
        jobs:           the sensor jobs (any order: the plan does not depend on it).
        node:           the node shape.
        solver:         ``auto`` (HiGHS if highspy imports, else CBC), ``highs`` or ``cbc``
                        [default: auto].
        time_limit_s:   the solver time budget, seconds [default: 60].
        block_visits:   visits per block of the decomposition [default: None, as many as fit
                        in ``milp_max_jobs`` jobs, at least one].
        milp_max_jobs:  the most jobs solved as one integer program [default: MILP_MAX_JOBS].

    Returns:
        (plan, summary): the :class:`Plan` and its :class:`Summary`.

    Raises:
        BundlingError: invalid jobs (see :func:`validate_jobs`).
        ConfigError:   unknown solver, or a time limit or block size that is not positive.
    """
    start = time.perf_counter()
    jobs = validate_jobs(jobs, node)
    solver_name = _resolve_solver(solver)
    if not (isinstance(time_limit_s, (int, float)) and time_limit_s > 0):
        raise ConfigError("bundle.solve_time_limit_s", time_limit_s, "must be > 0", "(0, inf)")
    if block_visits is not None and (not isinstance(block_visits, int) or block_visits < 1):
        raise ConfigError("block_visits", block_visits, "must be an integer >= 1", "1, 2, ...")
    jobs = sorted(jobs, key=_job_order)
    ffd = first_fit_decreasing(jobs, node)
    # (plan, method, solver, status, solver bound); on equal scores the later one wins
    candidates = [(_balance(ffd), "ffd", "none", "heuristic", None),
                  (_balance(visit_first_fit(jobs, node)), "visit-ffd", "none", "heuristic", None)]
    best = min(candidates, key=lambda c: c[0].score())[0]
    strong = strong_lower_bound(jobs, node)
    remaining = time_limit_s - (time.perf_counter() - start)
    if jobs and len(jobs) <= milp_max_jobs and (best.n_bundles > strong or best.node_seconds > 0):
        plan, solved = _solve_milp(jobs, node, solver_name, remaining, best)
        candidates.append((plan, "milp", solver_name, solved.status, solved.bound))
    elif jobs and best.n_bundles > strong:
        plan, status = _decomposed(jobs, node, solver_name, remaining, block_visits, milp_max_jobs, best)
        candidates.append((_balance(plan), "decomposed", solver_name, status, None))
    order = sorted(range(len(candidates)), key=lambda k: (candidates[k][0].score(), -k))
    plan, method, used_solver, status, _ = candidates[order[0]]
    bounds = [c[4] for c in candidates if c[4] is not None]
    lp_bound = max(bounds) if bounds else None
    if method in ("ffd", "visit-ffd"):
        if len(candidates) > 2:
            status = f"{candidates[-1][3]}; kept {method}, which was as good"
        elif jobs:
            status = "heuristic met the lower bound"
    summary = summarise(plan, jobs, node, lp_bound=lp_bound, ffd_bundles=ffd.n_bundles,
                        solve_time_s=time.perf_counter() - start, solver=used_solver, method=method,
                        status=status if jobs else "no jobs")
    return plan, summary


def summarise(plan: Plan, jobs: Sequence[Job], node: Node, *, lp_bound: int | None, ffd_bundles: int,
              solve_time_s: float, solver: str, method: str, status: str) -> Summary:
    """Build the :class:`Summary` of a plan (bounds, utilisation, node-seconds)."""
    n = plan.n_bundles
    lb = lower_bound(jobs, node)
    strong = strong_lower_bound(jobs, node)
    best = max(lb, strong, lp_bound or 0)
    mem_use = [plan.bundle_memory_gb(i) / node.memory_gb for i in range(n)]
    core_use = [plan.bundle_cores(i) / node.cores for i in range(n)]
    return Summary(
        n_jobs=len(jobs), n_visits=len({j.visit for j in jobs}), n_bundles=n, lower_bound=lb,
        strong_lower_bound=strong, lp_bound=lp_bound, gap=(n - best) / n if n else 0.0,
        ffd_bundles=ffd_bundles, dc2_flat_bundles=dc2_flat_bundles(jobs, node),
        mem_utilisation=float(np.mean(mem_use)) if n else 0.0,
        core_utilisation=float(np.mean(core_use)) if n else 0.0, node_seconds=plan.node_seconds,
        node_seconds_bound=node_seconds_bound(jobs, node),
        solve_time_s=round(solve_time_s, 3), solver=solver, method=method, status=status)


def check_plan(plan: Plan, jobs: Sequence[Job] | None = None) -> list[str]:
    """Everything wrong with a plan: bundles over memory, cores or time; jobs missing or twice.

    Parameters:
        plan:  the plan.
        jobs:  the jobs it should hold exactly once each [default: None, not checked].

    Returns:
        one line per problem; empty when the plan is feasible.
    """
    node = plan.node
    problems = []
    for i in range(plan.n_bundles):
        name = bundle_name(i)
        if plan.bundle_memory_gb(i) > node.memory_gb + MEM_TOL_GB:
            problems.append(f"{name}: memory {plan.bundle_memory_gb(i):g} GB > {node.memory_gb:g} GB")
        if plan.bundle_cores(i) > node.cores:
            problems.append(f"{name}: {plan.bundle_cores(i)} sensors > {node.cores} cores")
        if plan.bundle_runtime_s(i) > node.time_limit_s:
            problems.append(f"{name}: runtime {plan.bundle_runtime_s(i):g} s > {node.time_limit_s:g} s")
    keys = [(j.exposure, j.det_name) for j in plan.jobs()]
    if len(set(keys)) != len(keys):
        problems.append("a job is in more than one bundle")
    if jobs is not None and set(keys) != {(j.exposure, j.det_name) for j in jobs}:
        problems.append("the plan's jobs differ from the campaign's")
    return problems
