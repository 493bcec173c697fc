"""The integer program: the pulp model over items, HiGHS (in process, warm-started) or CBC, and :func:`solve_milp`."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..errors import BundlingError, ConfigError
from .records import MEM_TOL_GB, RUNTIME_PHASE_MAX_NODES, RUNTIME_PHASE_SHARE, SOLVERS, _SEED, Job, Node, Plan, _job_order
from .bounds import _ceil, node_seconds_bound, strong_lower_bound, validate_jobs
from .heuristics import _balance, first_fit_decreasing, visit_first_fit


@dataclass(frozen=True)
class _Items:
    """What the integer program packs: jobs, or whole partial bundles in the merge.

    Items are in FFD order (largest first), which the symmetry breaking relies on.
    """

    mem: np.ndarray        # GB, without overheads
    cores: np.ndarray      # cores each item takes
    runtime: np.ndarray    # s
    group: np.ndarray      # visit index (overhead shared within a group); -1: no overhead
    n_groups: int
    overhead: float        # V
    memory: float          # M
    max_cores: int         # C


@dataclass(frozen=True)
class _Result:
    assign: tuple[int, ...] | None   # bin of each item, or None
    status: str
    bound: int | None                # proven bound on the bin count (count phase only)


def _items_from_jobs(jobs: Sequence[Job], node: Node) -> _Items:
    visits = sorted({j.exposure for j in jobs})   # the overhead is paid per exposure
    index = {v: i for i, v in enumerate(visits)}
    return _Items(np.array([j.mem_gb for j in jobs], dtype=float), np.ones(len(jobs), dtype=np.int64),
                  np.array([j.runtime_s for j in jobs], dtype=float),
                  np.array([index[j.exposure] for j in jobs], dtype=np.int64), len(visits),
                  float(node.visit_overhead_gb), float(node.memory_gb), int(node.cores))


def _relabel(assign: Sequence[int]) -> list[int]:
    """Number bins by their first item: then item i is in a bin <= i (the symmetry breaking)."""
    labels: dict[int, int] = {}
    return [labels.setdefault(b, len(labels)) for b in assign]


def _resolve_solver(solver: str) -> str:
    if solver not in SOLVERS:
        raise ConfigError("bundle.solver", solver, "unknown solver", ", ".join(SOLVERS))
    if solver == "auto":
        return "highs" if _highs_available() else "cbc"
    return solver


def _highs_available() -> bool:
    try:
        import highspy  # noqa: F401
    except ImportError:
        return False
    return True


def _cbc_path() -> str:
    import pulp

    system = pulp.COIN_CMD(msg=False)
    if system.available():
        return system.path
    return pulp.PULP_CBC_CMD.pulp_cbc_path  # the binary bundled with pulp


def _make_solver(name: str, time_limit_s: float, warm: bool, gap_abs: float | None = None,
                 gap_rel: float | None = None, max_nodes: int | None = None):
    """A pulp solver: single-threaded, fixed seed, quiet, warm-started, time- and node-limited."""
    import pulp

    time_limit_s = max(time_limit_s, 0.01)
    if name == "highs":
        if not _highs_available():
            raise ConfigError("bundle.solver", name, "highspy is not installed", "cbc, auto")
        extra = {"mip_max_nodes": int(max_nodes)} if max_nodes is not None else {}
        return _warm_highs_class()(msg=False, timeLimit=time_limit_s, threads=1, gapAbs=gap_abs, gapRel=gap_rel,
                                   warm_start=warm, random_seed=_SEED % 2**31, **extra)
    return pulp.COIN_CMD(path=_cbc_path(), msg=False, timeLimit=time_limit_s, threads=1, warmStart=warm,
                         gapAbs=gap_abs, gapRel=gap_rel, maxNodes=max_nodes,
                         options=[f"randomCbcSeed {_SEED % 2**31}"])


_WARM_HIGHS = None


def _warm_highs_class():
    """pulp's in-process HiGHS, plus a warm start (pulp's own class ignores initial values)."""
    global _WARM_HIGHS
    if _WARM_HIGHS is None:
        import pulp

        class WarmHiGHS(pulp.HiGHS):
            def __init__(self, *args, warm_start: bool = False, **kwargs):
                super().__init__(*args, **kwargs)
                self.warm_start = warm_start

            def buildSolverModel(self, lp):
                """pulp's model, passed in bulk (pulp adds it one column and row at a time)."""
                import highspy

                inf = highspy.kHighsInf
                variables = lp.variables()
                sense = -1 if lp.sense == pulp.LpMaximize else 1
                for i, var in enumerate(variables):
                    var.index = i
                cost = np.array([sense * lp.objective.get(v, 0.0) for v in variables], dtype=float)
                lower = np.array([-inf if v.lowBound is None else v.lowBound for v in variables], dtype=float)
                upper = np.array([inf if v.upBound is None else v.upBound for v in variables], dtype=float)
                model = lp.solverModel
                model.addCols(len(variables), cost, lower, upper, 0, np.zeros(0, np.int32),
                              np.zeros(0, np.int32), np.zeros(0))
                integer = np.array([v.index for v in variables if v.cat == pulp.LpInteger and self.mip],
                                   dtype=np.int32)
                if integer.size:
                    model.changeColsIntegrality(integer.size, integer,
                                                np.full(integer.size, highspy.HighsVarType.kInteger.value, np.uint8))
                starts, index, value, row_lower, row_upper = [], [], [], [], []
                for i, constraint in enumerate(lp.constraints()):
                    constraint.index = i
                    starts.append(len(index))
                    for var, coefficient in constraint.items():
                        if coefficient != 0:
                            index.append(var.index)
                            value.append(coefficient)
                    lb, ub = constraint.getLb(), constraint.getUb()
                    row_lower.append(-inf if lb is None else lb)
                    row_upper.append(inf if ub is None else ub)
                model.addRows(len(starts), np.array(row_lower, dtype=float), np.array(row_upper, dtype=float),
                              len(index), np.array(starts, dtype=np.int32), np.array(index, dtype=np.int32),
                              np.array(value, dtype=float))

            def findSolutionValues(self, lp):
                """pulp's, plus the status of a node limit (``mip_max_nodes``), which pulp 3.3.2 has no
                entry for (KeyError): a node limit ends the search as a time limit does."""
                import highspy

                try:
                    return super().findSolutionValues(lp)
                except KeyError:
                    if lp.solverModel.getModelStatus() != highspy.HighsModelStatus.kSolutionLimit:
                        raise
                if not math.isfinite(lp.solverModel.getObjectiveValue()):
                    return pulp.LpStatusNotSolved, pulp.LpSolutionNoSolutionFound
                return pulp.LpStatusOptimal, pulp.LpSolutionIntegerFeasible

            def callSolver(self, lp):
                if self.warm_start:
                    variables = lp.variables()
                    index = np.array([v.index for v in variables], dtype=np.int32)
                    value = np.array([v.varValue if v.varValue is not None else 0.0 for v in variables])
                    lp.solverModel.setSolution(len(index), index, value)
                super().callSolver(lp)

        _WARM_HIGHS = WarmHiGHS
    return _WARM_HIGHS


def _solve_items(items: _Items, n_bins: int, warm: Sequence[int], mode: str, solver: str,
                 time_limit_s: float, min_bins: int = 1, max_nodes: int | None = None,
                 rooms: Sequence[tuple[float, int]] = ()) -> _Result:
    """One integer program over ``items``: ``n_bins`` fresh bins, plus one *receiver* per ``rooms``.

    Fresh bins have the node's memory and cores and are interchangeable (symmetry breaking:
    item i only in fresh bins <= i, used bins first).  A receiver is a bundle kept as it is, with
    ``(memory, cores)`` left; items in it pay their overheads like anywhere else.

    ``mode`` is ``count`` (minimise the fresh bins used) or ``runtime`` (minimise the sum over bins
    of the slowest item).  ``warm`` is a feasible assignment: fresh bins < ``n_bins``, receiver r
    is ``n_bins + r``.
    """
    import pulp

    start = time.perf_counter()
    n = len(items.mem)
    F, R = n_bins, len(rooms)
    B = F + R
    warm = _relabel_fresh(warm, F)
    cap = [(items.memory, float(items.max_cores))] * F + [(float(m), float(c)) for m, c in rooms]
    prob = pulp.LpProblem("bundles", pulp.LpMinimize)
    x: list[dict[int, pulp.LpVariable]] = []
    bins_of_group: dict[int, set[int]] = {}
    for i in range(n):
        allowed = list(range(min(i + 1, F))) + list(range(F, B))
        x.append({b: prob.add_variable(f"x_{i:05d}_{b:04d}", cat=pulp.LpBinary) for b in allowed})
        if items.group[i] >= 0:
            bins_of_group.setdefault(int(items.group[i]), set()).update(allowed)
    y = {(g, b): prob.add_variable(f"y_{g:05d}_{b:04d}", cat=pulp.LpBinary)
         for g, bins in sorted(bins_of_group.items()) for b in sorted(bins)}
    count = mode == "count"
    u = [prob.add_variable(f"u_{b:04d}", lowBound=1 if b < min_bins else 0, upBound=1, cat=pulp.LpInteger)
         for b in range(F)] if count else []
    for i in range(n):
        prob += pulp.LpAffineExpression([(v, 1.0) for v in x[i].values()]) == 1
        g = int(items.group[i])
        if g >= 0:
            for b, v in x[i].items():
                prob += v - y[g, b] <= 0
    by_bin: list[list[int]] = [[] for _ in range(B)]
    for i in range(n):
        for b in x[i]:
            by_bin[b].append(i)
    groups_of_bin: list[list[int]] = [[] for _ in range(B)]
    for (g, b) in y:
        groups_of_bin[b].append(g)
    for b in range(B):
        terms = [(x[i][b], float(items.mem[i])) for i in by_bin[b]]
        terms += [(y[g, b], items.overhead) for g in groups_of_bin[b]]
        core_terms = [(x[i][b], float(items.cores[i])) for i in by_bin[b]]
        if count and b < F:
            prob += pulp.LpAffineExpression(terms + [(u[b], -cap[b][0])]) <= 0
            prob += pulp.LpAffineExpression(core_terms + [(u[b], -cap[b][1])]) <= 0
            for g in groups_of_bin[b]:
                prob += y[g, b] - u[b] <= 0
            if b + 1 < F:
                prob += u[b + 1] - u[b] <= 0
        else:
            prob += pulp.LpAffineExpression(terms) <= cap[b][0]
            prob += pulp.LpAffineExpression(core_terms) <= cap[b][1]
    if count:
        prob += pulp.lpSum(u)
        if min_bins > 0:
            prob += pulp.lpSum(u) >= min_bins
    else:  # runtime
        r = [prob.add_variable(f"r_{b:04d}", lowBound=0) for b in range(B)]
        for i in range(n):
            if items.runtime[i] > 0:
                for b, v in x[i].items():
                    prob += float(items.runtime[i]) * v - r[b] <= 0
        scale = float(items.runtime.max()) or 1.0
        prob += pulp.LpAffineExpression([(rb, 1.0 / scale) for rb in r])

    # warm start
    for i in range(n):
        for b, v in x[i].items():
            v.setInitialValue(1.0 if warm[i] == b else 0.0)
    used = {(int(items.group[i]), warm[i]) for i in range(n) if items.group[i] >= 0}
    for key, v in y.items():
        v.setInitialValue(1.0 if key in used else 0.0)
    for b in range(len(u)):
        u[b].setInitialValue(1.0 if b in set(warm) else 0.0)

    # count: integer objective, stop once the bound is within 1; otherwise stop within 1%
    time_limit_s -= time.perf_counter() - start  # the budget includes building the model
    engine = _make_solver(solver, time_limit_s, warm=True, gap_abs=0.99 if count else None,
                          gap_rel=None if count else 0.01, max_nodes=max_nodes)
    try:
        prob.solve(engine)
    except (pulp.PulpSolverError, IndexError, ValueError, OSError) as exc:
        return _Result(None, f"solver failed ({exc})", None)
    status, bound = _status(prob, solver, mode)
    assign = []
    for i in range(n):
        chosen = [b for b, v in x[i].items() if v.varValue is not None and v.varValue > 0.5]
        if len(chosen) != 1:
            return _Result(None, status + " (no solution)", bound)
        assign.append(chosen[0])
    if not _items_feasible(items, assign, F, rooms):  # our tolerance is tighter than the solver's
        return _Result(None, status + " (infeasible by our tolerance)", bound)
    return _Result(tuple(assign), status, bound)


def _relabel_fresh(assign: Sequence[int], n_fresh: int) -> list[int]:
    """Number the fresh bins (< n_fresh) by their first item; receivers keep their labels."""
    labels: dict[int, int] = {}
    return [labels.setdefault(b, len(labels)) if b < n_fresh else b for b in assign]


def _status(prob, solver: str, mode: str) -> tuple[str, int | None]:
    """The solver's status in words and, in the count phase, its proven bound on the bins."""
    import pulp

    if solver == "highs":
        model = prob.solverModel
        text = model.modelStatusToString(model.getModelStatus()).lower()
        bound = None
        if mode == "count":
            dual = model.getInfo().mip_dual_bound
            if math.isfinite(dual):
                bound = _ceil(dual - 1e-6)
        return text, bound
    optimal = prob.sol_status == pulp.LpSolutionOptimal
    text = "optimal" if optimal else pulp.LpSolution.get(prob.sol_status, "unknown").lower()
    if prob.sol_status == pulp.LpSolutionIntegerFeasible:
        text = "time limit reached"
    bound = _ceil(pulp.value(prob.objective) - 1e-6) if optimal and mode == "count" else None
    return text, bound


def _items_feasible(items: _Items, assign: Sequence[int], n_fresh: int | None = None,
                    rooms: Sequence[tuple[float, int]] = ()) -> bool:
    """Whether ``assign`` respects every bin's memory (with overheads) and cores."""
    F = n_fresh if n_fresh is not None else (max(assign) + 1 if len(assign) else 0)
    mem: dict[int, float] = {}
    cores: dict[int, int] = {}
    groups: set[tuple[int, int]] = set()
    for i, b in enumerate(assign):
        if b >= F + len(rooms):
            return False
        mem[b] = mem.get(b, 0.0) + items.mem[i]
        cores[b] = cores.get(b, 0) + int(items.cores[i])
        if items.group[i] >= 0 and (int(items.group[i]), b) not in groups:
            groups.add((int(items.group[i]), b))
            mem[b] += items.overhead
    for b in mem:
        m, c = (items.memory, items.max_cores) if b < F else rooms[b - F]
        if mem[b] > m + MEM_TOL_GB or cores[b] > c:
            return False
    return True


@dataclass(frozen=True)
class _Solved:
    assign: list[int]
    status: str
    bound: int | None


def _optimise(items: _Items, warm: Sequence[int], solver: str, time_limit_s: float, min_bins: int,
              max_nodes: int | None = None) -> _Solved:
    """Phase 1: the fewest bins, from ``warm``; never more bins than ``warm``."""
    best = _relabel(warm)
    n_best = max(best) + 1 if best else 0
    if n_best <= min_bins:
        return _Solved(best, "heuristic met the lower bound", None)
    res = _solve_items(items, n_best, best, "count", solver, time_limit_s, min_bins, max_nodes)
    status, bound = res.status, res.bound
    if res.assign is not None and max(res.assign) + 1 < n_best:
        best, n_best = _relabel(res.assign), max(res.assign) + 1
    if bound is not None and bound >= n_best:
        status = "optimal"
    return _Solved(best, status, bound)


def solve_milp(jobs: Iterable[Job], node: Node, solver: str = "auto", time_limit_s: float = 60.0,
               warm_start: Plan | None = None) -> Plan:
    """The bundling integer program, solved by HiGHS or CBC through pulp.

    Binaries ``x[s,b]`` (job s in bundle b), ``y[v,b]`` (visit v present in b), ``u[b]`` (b used)
    over as many candidate bundles as the warm start uses::

        sum_b x[s,b] = 1                                   every job once
        x[s,b] <= y[v(s),b] <= u[b]                        a visit is present where its jobs are
        sum_s mem_s x[s,b] + V sum_v y[v,b] <= M u[b]      memory, with one overhead per visit
        sum_s x[s,b] <= C u[b]                             one core per job
        u[b] >= u[b+1],  x[s,b] = 0 for b > rank(s)        symmetry breaking (jobs in FFD order:
                                                           the largest is in bundle 0, ...)
        sum_b u[b] >= strong_lower_bound                   a valid cut

    Phase 1 minimises ``sum_b u[b]``; phase 2 fixes that count and minimises node-seconds
    ``sum_b r[b]`` with ``r[b] >= runtime_s x[s,b]`` (skipped when no job has a runtime).  Both are
    warm-started (the better of FFD and visit-grouped first fit when ``warm_start`` is None), share
    ``time_limit_s`` (70/30), run single-threaded with a fixed seed, and the result is never worse
    than the warm start: on failure or a time-out without a better incumbent, that is returned.
    The time limit is the solver's; CBC may overrun it in its preprocessing.

    Parameters:
        jobs:          the sensor jobs.
        node:          the node shape.
        solver:        ``auto`` (HiGHS if highspy imports, else CBC), ``highs`` or ``cbc``
                       [default: auto].
        time_limit_s:  the solver time budget, seconds [default: 60].
        warm_start:    a feasible plan to start from [default: None, the better heuristic].

    Returns:
        the :class:`Plan`.

    Raises:
        BundlingError: invalid jobs (see :func:`validate_jobs`).
        ConfigError:   unknown solver.
    """
    return _solve_milp(validate_jobs(jobs, node), node, solver, time_limit_s, warm_start)[0]


def _solve_milp(jobs: list[Job], node: Node, solver: str, time_limit_s: float,
                warm_start: Plan | None = None, runtime_phase: bool = True) -> tuple[Plan, _Solved]:
    start = time.perf_counter()
    solver = _resolve_solver(solver)
    if not jobs:
        return Plan((), node), _Solved([], "no jobs", 0)
    ordered = sorted(jobs, key=_job_order)
    if warm_start is None:
        warm_start = min(first_fit_decreasing(ordered, node), visit_first_fit(ordered, node), key=Plan.score)
    items = _items_from_jobs(ordered, node)
    phase2 = runtime_phase and items.runtime.max() > 0
    solved = _optimise(items, _assignment(warm_start, ordered), solver,
                       (1 - RUNTIME_PHASE_SHARE if phase2 else 1.0) * time_limit_s, strong_lower_bound(ordered, node))
    plan = _balance(_plan_from(ordered, solved.assign, node))
    remaining = min(time_limit_s - (time.perf_counter() - start), RUNTIME_PHASE_SHARE * time_limit_s)
    if plan.node_seconds <= node_seconds_bound(ordered, node) * (1 + 1e-9) + 1e-9:
        phase2 = False  # the refill met the bound
    if phase2 and plan.n_bundles > 1 and remaining > 0.05:
        res = _solve_items(items, plan.n_bundles, _assignment(plan, ordered), "runtime", solver, remaining,
                           max_nodes=RUNTIME_PHASE_MAX_NODES)
        if res.assign is not None:
            candidate = _plan_from(ordered, res.assign, node)
            if candidate.score() < plan.score():
                plan = candidate
        solved = dataclasses.replace(solved, status=solved.status + f"; runtime phase: {res.status}")
    if plan.score() > warm_start.score():  # fewer node-seconds in the warm start, same count
        return warm_start, dataclasses.replace(solved, status=solved.status + "; kept the warm start")
    return plan, solved


def _assignment(plan: Plan, ordered: Sequence[Job]) -> list[int]:
    """The bundle of each job of ``ordered`` in ``plan``."""
    where = {(j.exposure, j.det_name): b for b, bundle in enumerate(plan.bundles) for j in bundle}
    try:
        return [where[(j.exposure, j.det_name)] for j in ordered]
    except KeyError as exc:
        raise BundlingError(f"the warm start lacks visit {exc.args[0][0][0]} snap {exc.args[0][0][1]} {exc.args[0][1]}",
                            "pass a plan of the same jobs") from None


def _plan_from(ordered: Sequence[Job], assign: Sequence[int], node: Node) -> Plan:
    bundles: dict[int, list[Job]] = {}
    for job, b in zip(ordered, assign):
        bundles.setdefault(b, []).append(job)
    return Plan(tuple(tuple(b) for b in bundles.values()), node)
