"""Bundles: pack every sensor job of a campaign into node-sized Slurm group jobs.

A campaign is visits x sensors, one render job ("sensor job") each, with a predicted peak memory
``mem_gb`` and wall time ``runtime_s`` from :mod:`dc2flow.estimate`.  A *bundle* is one Slurm node
running one group job.  All members of a bundle run side by side in **one parallel layer** (one
core each, no queueing inside the bundle), so a bundle of sensors ``b`` on a :class:`Node` with
``memory_gb`` M, ``cores`` C, ``visit_overhead_gb`` V and ``time_limit_s`` T is feasible when

* ``sum(mem_gb of b) + V * (distinct visits in b) <= M``: the sensors of one visit in one bundle
  share one catalog/SED/PSF set-up of V GB, paid once per visit present in the bundle;
* ``len(b) <= C``: one core per member;
* ``max(runtime_s of b) <= T``: the bundle lasts as long as its slowest member.

The plan minimises the number of bundles (nodes); among plans with that number it prefers the
one with the least node-seconds, ``sum over bundles of max(runtime_s)``, so slow sensors share a
node instead of each keeping one idle.  DC2 charged a flat 2 GB per sensor and 10 GB per visit and
never packed two visits together; :func:`dc2_flat_bundles` counts what that rule would need.

How a plan is found (:func:`plan_bundles`):

1. Heuristics: :func:`first_fit_decreasing` (FFD) over all jobs, and :func:`visit_first_fit`
   (first fit with the jobs grouped by visit, which pays far fewer overheads).
2. Up to ``milp_max_jobs`` jobs (default :data:`MILP_MAX_JOBS`): one integer program
   (:func:`solve_milp`) warm-started from the better heuristic, in two phases rather than one
   weighted objective: phase 1 minimises the bundle count and stops as soon as it meets its
   bound; phase 2 keeps that count and minimises node-seconds (no weight to tune, and phase 1
   keeps an integer objective the solver can prune on).
3. Above that, a decomposition: each block of ``block_visits`` visits is solved by the integer
   program on its own; the bundles that no other could join are kept and the partly filled ones
   are merged across visits by a second packing whose items are whole partial bundles (their
   memory includes their overheads, which add up because the visits differ, and their cores),
   an integer program or first fit when too large.  A local search then closes bundles one
   visit at a time, moving a few of the visit's sensors into other bundles' room
   (:func:`_spill`, the step that wins most) or re-solving the visit against that room
   (:func:`_reinsert`).  Merging whole partial bundles alone rarely saves anything: a visit of
   189 sensors on 32-core nodes leaves a partial bundle of 29 sensors, which nothing else fits.
4. Node-seconds: bundles holding the same visits are refilled slowest sensor first
   (:func:`_balance`), which usually meets :func:`node_seconds_bound`.
5. Whichever plan has fewer bundles wins (ties: fewer node-seconds), so the result is never worse
   than FFD.

The plan on disk (:func:`write_plan`) is a CSV with one row per sensor, the complete record of what
its render job asks for (:class:`PlanRow`: ``bundle,visit,det_name,mem_mb,runtime_min,bundle_mem_mb``),
with bundles named ``b0000``, ``b0001``, ... in a deterministic order; :func:`read_plan` is its one
reader and checks it; :func:`write_summary_json` records how good it
is (:class:`Summary`).  Solves are single-threaded with fixed seeds, so the same jobs (in any
order) give the same plan, unless a solver time limit cuts a solve short: then the incumbent at
that moment, which depends on the machine's speed, is used.

Memory is compared with a tolerance of :data:`MEM_TOL_GB` (a kilobyte), the integer solvers'
feasibility tolerance.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .errors import BundlingError, ConfigError
from .io import atomic_output, write_json

PLAN_COLUMNS = ("bundle", "visit", "det_name", "mem_mb", "runtime_min", "bundle_mem_mb")
"""Header of the plan CSV written by :func:`write_plan` (the fields of :class:`PlanRow`)."""
MILP_MAX_JOBS = 400
"""Above this many jobs :func:`plan_bundles` decomposes by visits: one integer program over ~1,000
jobs no longer solves in seconds (building the pulp model alone takes 7 s at 3,780 jobs)."""
MERGE_MILP_MAX_ITEMS = 250
"""The largest merge of partial bundles solved as an integer program; above it, first fit."""
RUNTIME_PHASE_SHARE = 0.2
"""The share of the solver budget the node-seconds phase of :func:`solve_milp` may use: in our
tests it never beat the runtime-sorted refill (:func:`_balance`) it starts from, whose result
is often proven optimal by :func:`node_seconds_bound`, and the LP relaxation of max() is weak."""
REPACK_RECEIVERS = 12
"""The most bundles with room a visit may spill into in one repacking step."""
REPACK_ATTEMPT_S = 0.5
"""Solver time of one repacking step, seconds."""
REPACK_MAX_NODES = 2000
"""Branch-and-bound nodes of one repacking step (a limit that, unlike time, is deterministic)."""
SOLVERS = ("auto", "highs", "cbc")
MEM_TOL_GB = 1e-6
DC2_SENSOR_GB = 2.0
"""DC2's flat memory charge per sensor, GB."""
DC2_VISIT_GB = 10.0
"""DC2's flat memory charge per visit, GB."""
_SEED = 20240611


@dataclass(frozen=True)
class Job:
    """One sensor job: a visit's sensor and its predicted demands.

    Parameters:
        visit:     the visit (obshistid).
        det_name:  the sensor, e.g. ``R22_S11``.
        mem_gb:    predicted peak memory of its render, GB (without the visit overhead).
        runtime_s: predicted wall time, seconds; 0 when unknown [default: 0.0].
    """

    visit: int
    det_name: str
    mem_gb: float
    runtime_s: float = 0.0


@dataclass(frozen=True)
class Node:
    """The shape of one Slurm node that a bundle fills.

    Parameters:
        memory_gb:          memory a bundle may use, GB (what the partition grants a job).
        cores:              cores of a node: the most sensors a bundle may hold, since all of them
                            run at the same time.
        visit_overhead_gb:  memory shared by the sensors of one visit in one bundle, GB.
        time_limit_s:       the longest predicted sensor a bundle may hold, seconds
                            [default: inf].

    Raises:
        ConfigError: a value is not a finite positive number (``time_limit_s`` may be inf), or
                     the overhead leaves no memory for sensors.
    """

    memory_gb: float
    cores: int
    visit_overhead_gb: float
    time_limit_s: float = math.inf

    def __post_init__(self):
        checks = (("bundle.node_memory_gb", self.memory_gb, 0.0, False),
                  ("bundle.visit_overhead_gb", self.visit_overhead_gb, 0.0, True),
                  ("bundle.time_limit_s", self.time_limit_s, 0.0, False))
        for key, value, low, inclusive in checks:
            ok = isinstance(value, (int, float)) and not math.isnan(value) and (
                value >= low if inclusive else value > low)
            if not ok or (key != "bundle.time_limit_s" and math.isinf(value)):
                raise ConfigError(key, value, "must be a finite number " + (">= 0" if inclusive else "> 0"),
                                  "(0, inf)" if not inclusive else "[0, inf)")
        if isinstance(self.cores, bool) or not isinstance(self.cores, (int, np.integer)) or self.cores < 1:
            raise ConfigError("bundle.node_cores", self.cores, "must be an integer >= 1", "1, 2, ...")
        if self.visit_overhead_gb >= self.memory_gb:
            raise ConfigError("bundle.visit_overhead_gb", self.visit_overhead_gb,
                              f"leaves no memory for sensors on a {self.memory_gb} GB node",
                              f"[0, {self.memory_gb})")


def _bundle_key(bundle: Sequence[Job]) -> tuple:
    return (bundle[0].visit, bundle[0].det_name)


def _job_order(job: Job) -> tuple:
    """FFD's order: memory descending, then visit and sensor (a total order on valid jobs)."""
    return (-job.mem_gb, job.visit, job.det_name)


@dataclass(frozen=True)
class Plan:
    """Sensor jobs packed into bundles, in canonical order.

    The constructor sorts each bundle by (visit, det_name) and the bundles by their first member
    and drops empty ones, so two plans with the same bundles compare and write equal; bundle ``i``
    is named ``b{i:04d}``.

    Parameters:
        bundles:  the bundles, each a sequence of :class:`Job`.
        node:     the node they are packed for.
    """

    bundles: tuple[tuple[Job, ...], ...]
    node: Node

    def __post_init__(self):
        bundles = [tuple(sorted(b, key=lambda j: (j.visit, j.det_name))) for b in self.bundles]
        object.__setattr__(self, "bundles", tuple(sorted((b for b in bundles if b), key=_bundle_key)))

    @property
    def n_bundles(self) -> int:
        return len(self.bundles)

    @property
    def names(self) -> tuple[str, ...]:
        """The bundle names, ``b0000``, ``b0001``, ..."""
        return tuple(bundle_name(i) for i in range(len(self.bundles)))

    def jobs(self) -> list[Job]:
        """Every job of the plan, bundle by bundle."""
        return [job for bundle in self.bundles for job in bundle]

    def rows(self) -> list["PlanRow"]:
        """A :class:`PlanRow` for every job, in plan order (what :func:`write_plan` writes)."""
        return _plan_rows(self)

    def bundle_memory_gb(self, i: int) -> float:
        """Memory of bundle ``i``: its sensors plus one visit overhead per visit present, GB."""
        bundle = self.bundles[i]
        return (sum(j.mem_gb for j in bundle)
                + self.node.visit_overhead_gb * len({j.visit for j in bundle}))

    def bundle_cores(self, i: int) -> int:
        """Cores bundle ``i`` uses: one per sensor."""
        return len(self.bundles[i])

    def bundle_runtime_s(self, i: int) -> float:
        """Predicted wall time of bundle ``i``: its slowest sensor, seconds."""
        return max(j.runtime_s for j in self.bundles[i])

    @property
    def node_seconds(self) -> float:
        """The sum over bundles of their predicted wall time: what the plan costs in node time."""
        return float(sum(self.bundle_runtime_s(i) for i in range(len(self.bundles))))

    def score(self) -> tuple[int, float]:
        """(bundles, node-seconds): smaller is better, compared in that order."""
        return (len(self.bundles), round(self.node_seconds, 6))


def bundle_name(i: int) -> str:
    """The name of the ``i``-th bundle of a plan: ``b0000``, ``b0001``, ..."""
    return f"b{i:04d}"


@dataclass(frozen=True)
class PlanRow:
    """One sensor of a plan, and what its render job asks the scheduler for (one row of the plan CSV).

    Parameters:
        bundle:        the bundle (one Slurm group job) the sensor belongs to, ``b0000``, ...
        visit:         the visit.
        det_name:      the sensor, e.g. ``R22_S11``.
        mem_mb:        its memory request, MB: the estimate, plus the visit overhead for the first
                       sensor of each visit in the bundle, rounded down (the plan fits the bundle in
                       the node to the byte, and the members' requests must not add up to more).
        runtime_min:   its wall-time request, minutes (the estimate rounded up, at least 1).
        bundle_mem_mb: the whole bundle's request, MB: the sum of its members' ``mem_mb``, which
                       Snakemake adds up for the group job.
    """

    bundle: str
    visit: int
    det_name: str
    mem_mb: int
    runtime_min: int
    bundle_mem_mb: int


def _plan_rows(plan: "Plan") -> list[PlanRow]:
    rows = []
    for i, bundle in enumerate(plan.bundles):
        seen: set[int] = set()
        requests = []
        for job in bundle:
            mem_gb = job.mem_gb + (plan.node.visit_overhead_gb if job.visit not in seen else 0.0)
            seen.add(job.visit)
            requests.append((job, int(mem_gb * 1024), max(1, math.ceil(job.runtime_s / 60.0))))
        total = sum(mem for _, mem, _ in requests)
        rows += [PlanRow(bundle_name(i), job.visit, job.det_name, mem, minutes, total) for job, mem, minutes in requests]
    return rows


@dataclass(frozen=True)
class Summary:
    """How good a plan is and how it was found (written as JSON next to the plan).

    Parameters:
        n_jobs, n_visits, n_bundles: sizes of the campaign and of the plan.
        lower_bound:        ``max(ceil(sum mem_gb / (M - V)), ceil(n_jobs / C))``: no plan has
                            fewer bundles (each bundle holds at least one visit overhead).
        strong_lower_bound: a tighter bound (:func:`strong_lower_bound`), >= ``lower_bound``.
        lp_bound:           the solver's proven bound on the bundle count (its best bound, or the
                            count itself when it proved optimality) when one integer program
                            over all jobs ran; else None.
        gap:                ``(n_bundles - best bound) / n_bundles`` with the best of the three
                            bounds; 0 means proven optimal.
        ffd_bundles:        what :func:`first_fit_decreasing` over all jobs needs.
        dc2_flat_bundles:   what DC2's flat rule needs (:func:`dc2_flat_bundles`), or None when
                            the rule does not fit a node.
        mem_utilisation:    mean over bundles of memory used (with overheads) / M.
        core_utilisation:   mean over bundles of cores used / C.
        node_seconds:       sum over bundles of the slowest member's runtime_s.
        node_seconds_bound: no plan has fewer node-seconds (:func:`node_seconds_bound`).
        solve_time_s:       wall time of :func:`plan_bundles`.
        solver:             ``highs``, ``cbc`` or ``none`` (no integer program run).
        method:             ``milp`` (one integer program), ``decomposed`` (blocks of visits,
                            a merge, a local search), ``ffd`` (first fit decreasing won) or
                            ``visit-ffd`` (first fit with jobs grouped by visit won).
        status:             the solver's words, e.g. ``optimal`` or ``time limit reached``.
    """

    n_jobs: int
    n_visits: int
    n_bundles: int
    lower_bound: int
    strong_lower_bound: int
    lp_bound: int | None
    gap: float
    ffd_bundles: int
    dc2_flat_bundles: int | None
    mem_utilisation: float
    core_utilisation: float
    node_seconds: float
    node_seconds_bound: float
    solve_time_s: float
    solver: str
    method: str
    status: str

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------
# Validation and bounds


def validate_jobs(jobs: Iterable[Job], node: Node) -> list[Job]:
    """Check every job against the node; return them as a list.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the jobs, as a list.

    Raises:
        BundlingError: a job's ``mem_gb`` or ``runtime_s`` is NaN, infinite or negative; one
                       sensor plus its visit overhead needs more than a node, or runs longer than
                       the time limit; a (visit, det_name) appears twice.  The message names the
                       visit and the sensor.
    """
    jobs = list(jobs)
    seen: set[tuple[int, str]] = set()
    for job in jobs:
        where = f"visit {job.visit} {job.det_name}"
        if isinstance(job.visit, bool) or not isinstance(job.visit, (int, np.integer)):
            raise BundlingError(f"{where}: the visit is not an integer ({job.visit!r})", "fix the job list")
        if not isinstance(job.det_name, str) or not job.det_name:
            raise BundlingError(f"{where}: the sensor name is empty or not text ({job.det_name!r})",
                                "fix the job list")
        for name in ("mem_gb", "runtime_s"):
            value = getattr(job, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise BundlingError(f"{where}: {name} is not a number ({value!r})", "fix the estimate")
            if math.isnan(value) or math.isinf(value) or value < 0:
                raise BundlingError(f"{where}: {name} is {value}", "fix the estimate (it must be finite and >= 0)")
        need = job.mem_gb + node.visit_overhead_gb
        if need > node.memory_gb + MEM_TOL_GB:
            raise BundlingError(
                f"{where}: needs {need:g} GB (mem_gb {job.mem_gb:g} + visit overhead "
                f"{node.visit_overhead_gb:g}) but a node has {node.memory_gb:g} GB",
                "use a node (partition) with more memory, or lower the estimate")
        if job.runtime_s > node.time_limit_s:
            raise BundlingError(
                f"{where}: runtime_s {job.runtime_s:g} exceeds the time limit of {node.time_limit_s:g} s",
                "use a partition with a longer time limit, or lower the estimate")
        key = (job.visit, job.det_name)
        if key in seen:
            raise BundlingError(f"{where}: listed twice", "remove the duplicate row")
        seen.add(key)
    return jobs


def lower_bound(jobs: Sequence[Job], node: Node) -> int:
    """``max(ceil(sum mem_gb / (M - V)), ceil(n / C))``: no plan needs fewer bundles.

    Valid because every non-empty bundle pays at least one visit overhead V.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the bound (0 for no jobs).
    """
    if not jobs:
        return 0
    total = math.fsum(j.mem_gb for j in jobs)
    return max(_ceil(total / (node.memory_gb - node.visit_overhead_gb)), _ceil(len(jobs) / node.cores))


def strong_lower_bound(jobs: Sequence[Job], node: Node) -> int:
    """A bound at least as tight as :func:`lower_bound` that counts overheads per visit.

    Visit ``v`` (``n_v`` sensors, ``S_v`` GB) appears in at least
    ``k_v = max(ceil(S_v / (M - V)), ceil(n_v / C))`` bundles and pays V in each, so
    ``N M >= sum mem_gb + V sum_v k_v``.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the bound (0 for no jobs).
    """
    if not jobs:
        return 0
    mem: dict[int, float] = {}
    count: dict[int, int] = {}
    for job in jobs:
        mem[job.visit] = mem.get(job.visit, 0.0) + job.mem_gb
        count[job.visit] = count.get(job.visit, 0) + 1
    free = node.memory_gb - node.visit_overhead_gb
    k = {v: max(_ceil(mem[v] / free), _ceil(count[v] / node.cores)) for v in mem}
    total = math.fsum(mem.values())
    overheads = _ceil((total + node.visit_overhead_gb * sum(k.values())) / node.memory_gb)
    return max(lower_bound(jobs, node), max(k.values()), overheads)


def node_seconds_bound(jobs: Sequence[Job], node: Node) -> float:
    """A lower bound on the node-seconds of any plan.

    With runtimes sorted ``t_1 >= t_2 >= ... (t_{n+1} = 0)``, node-seconds are
    ``sum_k (t_k - t_{k+1}) N_k`` where ``N_k`` counts the bundles holding any of the k slowest
    jobs, and ``N_k >= max(ceil(k / C), ceil(their mem_gb / (M - V)))``.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the bound, seconds (0 for no jobs).
    """
    ordered = sorted(jobs, key=lambda j: -j.runtime_s)
    total, mem = 0.0, 0.0
    free = node.memory_gb - node.visit_overhead_gb
    for k, job in enumerate(ordered, start=1):
        mem += job.mem_gb
        nxt = ordered[k].runtime_s if k < len(ordered) else 0.0
        total += (job.runtime_s - nxt) * max(_ceil(k / node.cores), _ceil(mem / free))
    return total


def _ceil(x: float) -> int:
    """ceil with a little slack for rounding: 3.0000000001 -> 3."""
    return int(math.ceil(x - 1e-9))


# ------------------------------------------------------------------------------------------------
# Heuristics


def _first_fit(ordered: Sequence[Job], node: Node) -> list[list[Job]]:
    """First fit in the given order: each job goes to the first bundle with room, else a new one.

    Room means memory (plus V when the job's visit is not yet in the bundle) and a free core.
    The time limit needs no check: :func:`validate_jobs` keeps every job within it.
    """
    n = len(ordered)
    free_mem = np.empty(n)
    free_cores = np.empty(n, dtype=np.int64)
    bundles: list[list[Job]] = []
    of_visit: dict[int, list[int]] = {}
    V = node.visit_overhead_gb
    for job in ordered:
        nb = len(bundles)
        with_visit = of_visit.setdefault(job.visit, [])
        fits = (free_cores[:nb] > 0) & (free_mem[:nb] >= job.mem_gb + V - MEM_TOL_GB)
        best = int(np.argmax(fits)) if nb and fits.any() else nb
        for b in with_visit:  # ascending
            if b >= best:
                break
            if free_cores[b] > 0 and free_mem[b] >= job.mem_gb - MEM_TOL_GB:
                best = b
                break
        if best == nb:
            bundles.append([])
            free_mem[nb] = node.memory_gb
            free_cores[nb] = node.cores
        if best not in with_visit:
            free_mem[best] -= V
            with_visit.append(best)
            with_visit.sort()
        bundles[best].append(job)
        free_mem[best] -= job.mem_gb
        free_cores[best] -= 1
    return bundles


def first_fit_decreasing(jobs: Iterable[Job], node: Node) -> Plan:
    """First fit decreasing: the classic bin-packing heuristic, aware of visit overheads.

    Jobs are taken by ``mem_gb`` descending (ties: visit, then det_name) and each goes into the
    first bundle where it fits: its memory, plus V if its visit is not yet in that bundle, within
    the node's memory, and a free core (every valid job is within the time limit); else a new
    bundle is opened.  Deterministic and fast (O(jobs x bundles) with numpy).  Mixing visits freely, it
    pays many overheads per bundle, which is why :func:`plan_bundles` does better.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the :class:`Plan`.

    Raises:
        BundlingError: invalid jobs (see :func:`validate_jobs`).
    """
    jobs = validate_jobs(jobs, node)
    return Plan(tuple(map(tuple, _first_fit(sorted(jobs, key=_job_order), node))), node)


def visit_first_fit(jobs: Iterable[Job], node: Node) -> Plan:
    """First fit with the jobs grouped by visit: visits by need descending (in nodes, the larger of
    memory / (M - V) and sensors / C), each visit's jobs by ``mem_gb`` descending.

    A visit's sensors fill bundles together and only its last ones spill into the room earlier
    visits left, so most bundles pay one overhead.  Used as a candidate and a warm start.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the :class:`Plan`.

    Raises:
        BundlingError: invalid jobs (see :func:`validate_jobs`).
    """
    jobs = validate_jobs(jobs, node)
    mem: dict[int, float] = {}
    count: dict[int, int] = {}
    for job in jobs:
        mem[job.visit] = mem.get(job.visit, 0.0) + job.mem_gb
        count[job.visit] = count.get(job.visit, 0) + 1
    need = {v: max(mem[v] / (node.memory_gb - node.visit_overhead_gb), count[v] / node.cores) for v in mem}
    ordered = sorted(jobs, key=lambda j: (-need[j.visit], j.visit, -j.mem_gb, j.det_name))
    return Plan(tuple(map(tuple, _first_fit(ordered, node))), node)


def _balance(plan: Plan) -> Plan:
    """Group slow sensors together without changing the bundle count (fewer node-seconds).

    Bundles holding the same visits can swap sensors freely (their overheads stay the same), so
    each such group is refilled by first fit in order of runtime descending, into as many
    bundles as before; kept where it lowers the group's node-seconds.  Cheap and deterministic.
    """
    node = plan.node
    groups: dict[frozenset, list[int]] = {}
    for i, bundle in enumerate(plan.bundles):
        groups.setdefault(frozenset(j.visit for j in bundle), []).append(i)
    out = []
    for visits, members in sorted(groups.items(), key=lambda kv: kv[1][0]):
        bundles = [plan.bundles[i] for i in members]
        if len(bundles) > 1:
            jobs = sorted((j for b in bundles for j in b), key=lambda j: (-j.runtime_s, -j.mem_gb, j.visit, j.det_name))
            free_mem = [node.memory_gb - node.visit_overhead_gb * len(visits)] * len(bundles)
            new: list[list[Job]] = [[] for _ in bundles]
            for job in jobs:
                b = next((b for b in range(len(new)) if len(new[b]) < node.cores
                          and free_mem[b] >= job.mem_gb - MEM_TOL_GB), None)
                if b is None:
                    break
                new[b].append(job)
                free_mem[b] -= job.mem_gb
            else:
                if all(new) and (sum(max(j.runtime_s for j in b) for b in new)
                                 < sum(max(j.runtime_s for j in b) for b in bundles) - 1e-9):
                    bundles = [tuple(b) for b in new]
        out.extend(bundles)
    return Plan(tuple(out), node)


def dc2_flat_size(node: Node) -> int | None:
    """Sensors per bundle under DC2's flat rule: ``min(C, floor((M - 10) / 2))``; None below one."""
    k = min(node.cores, int(math.floor((node.memory_gb - DC2_VISIT_GB) / DC2_SENSOR_GB + 1e-9)))
    return k if k >= 1 else None


def dc2_flat_bundles(jobs: Sequence[Job], node: Node) -> int | None:
    """Bundles DC2's flat rule needs: 2 GB per sensor, 10 GB per visit, one visit per bundle.

    With every sensor charged the same, first fit within a visit fills bundles of
    ``k = min(C, floor((M - 10) / 2))`` sensors, so a visit of ``n_v`` sensors takes
    ``ceil(n_v / k)`` bundles.  For comparison only: the flat charge ignores the estimates.

    Parameters:
        jobs:  the sensor jobs.
        node:  the node shape.

    Returns:
        the count, or None when not even one sensor fits a node under the rule.
    """
    per_bundle = dc2_flat_size(node)
    if per_bundle is None:
        return None
    count: dict[int, int] = {}
    for job in jobs:
        count[job.visit] = count.get(job.visit, 0) + 1
    return sum(_ceil(n / per_bundle) for n in count.values())


# ------------------------------------------------------------------------------------------------
# The integer program


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
    visits = sorted({j.visit for j in jobs})
    index = {v: i for i, v in enumerate(visits)}
    return _Items(np.array([j.mem_gb for j in jobs], dtype=float), np.ones(len(jobs), dtype=np.int64),
                  np.array([j.runtime_s for j in jobs], dtype=float),
                  np.array([index[j.visit] for j in jobs], dtype=np.int64), len(visits),
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
                for i, constraint in enumerate(lp._constraints.values()):
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
        res = _solve_items(items, plan.n_bundles, _assignment(plan, ordered), "runtime", solver, remaining)
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
    where = {(j.visit, j.det_name): b for b, bundle in enumerate(plan.bundles) for j in bundle}
    try:
        return [where[(j.visit, j.det_name)] for j in ordered]
    except KeyError as exc:
        raise BundlingError(f"the warm start lacks visit {exc.args[0][0]} {exc.args[0][1]}",
                            "pass a plan of the same jobs") from None


def _plan_from(ordered: Sequence[Job], assign: Sequence[int], node: Node) -> Plan:
    bundles: dict[int, list[Job]] = {}
    for job, b in zip(ordered, assign):
        bundles.setdefault(b, []).append(job)
    return Plan(tuple(tuple(b) for b in bundles.values()), node)


# ------------------------------------------------------------------------------------------------
# Decomposition


def _decomposed(jobs: list[Job], node: Node, solver: str, time_limit_s: float, block_visits: int | None,
                milp_max_jobs: int, start_from: Plan) -> tuple[Plan, str]:
    """Blocks of visits by the integer program, a merge of their partial bundles, then a local search.

    ``start_from`` (a heuristic plan) replaces the merged plan before the local search if it has
    fewer bundles.  The budget: 30% for a first pass over the blocks, up to 50% with a second try
    of the blocks not proven optimal, 10% for the merge, the rest for :func:`_repack`.
    """
    start = time.perf_counter()
    deadline = start + time_limit_s
    by_visit: dict[int, list[Job]] = {}
    for job in jobs:
        by_visit.setdefault(job.visit, []).append(job)
    visits = sorted(by_visit)
    if block_visits is None:
        block_visits = max(1, (milp_max_jobs // 2) // max(len(v) for v in by_visit.values()))
    blocks = [visits[i:i + block_visits] for i in range(0, len(visits), block_visits)]
    plans: list[Plan] = []
    statuses: list[str] = []
    for k, block in enumerate(blocks):  # first pass: an even share of 30% of the budget
        block_time = (start + 0.3 * time_limit_s - time.perf_counter()) / (len(blocks) - k)
        block_jobs = [j for v in block for j in by_visit[v]]
        if len(block_jobs) > milp_max_jobs or block_time < 0.02:  # too big, or out of time
            plan = min(first_fit_decreasing(block_jobs, node), visit_first_fit(block_jobs, node), key=Plan.score)
            status = "heuristic"
        else:
            plan, solved = _solve_milp(block_jobs, node, solver, block_time, runtime_phase=False)
            status = solved.status
        plans.append(plan)
        statuses.append(status)
    # second pass: the blocks left unproven share what the first pass did not use, up to 50%
    retry = [k for k, st in enumerate(statuses) if st not in ("optimal", "heuristic met the lower bound")
             and plans[k].n_bundles > strong_lower_bound(plans[k].jobs(), node)
             and len(plans[k].jobs()) <= milp_max_jobs]
    for n, k in enumerate(retry):
        block_time = (start + 0.5 * time_limit_s - time.perf_counter()) / (len(retry) - n)
        if block_time < 0.1:
            continue
        plans[k], solved = _solve_milp(plans[k].jobs(), node, solver, block_time, plans[k], runtime_phase=False)
        statuses[k] = solved.status + " (second try)"
    bundles = [b for plan in plans for b in plan.bundles]
    counts: dict[str, int] = {}
    for st in statuses:
        counts[st] = counts.get(st, 0) + 1
    merge_time = min(0.1 * time_limit_s, deadline - time.perf_counter())
    merged, merge_status = _merge(bundles, node, solver, merge_time)
    plan = Plan(tuple(merged), node)
    text = (f"{len(blocks)} blocks of {block_visits} visits: "
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            + f" ({len(bundles)} bundles); merge: {merge_status}")
    if start_from.n_bundles < plan.n_bundles:
        text += f"; local search from visit-grouped first fit ({start_from.n_bundles}) instead"
        plan = start_from
    lb = strong_lower_bound(jobs, node)
    repacked, repack_status = _repack(list(plan.bundles), node, solver, deadline, lb)
    return Plan(tuple(repacked), node), text + f"; local search: {repack_status}"


def _merge(bundles: list[tuple[Job, ...]], node: Node, solver: str, time_limit_s: float) -> tuple[list, str]:
    """Pack whole bundles into nodes; only bundles some other bundle could join take part."""
    V = node.visit_overhead_gb
    mem = np.array([sum(j.mem_gb for j in b) + V * len({j.visit for j in b}) for b in bundles])
    cores = np.array([len(b) for b in bundles], dtype=np.int64)
    if len(bundles) < 2:
        return bundles, "nothing to merge"
    # the two smallest of each, so an item is never compared with itself
    m2 = np.partition(mem, 1)[:2]
    c2 = np.partition(cores, 1)[:2]
    other_mem = np.where(mem == m2[0], m2[1], m2[0])
    other_cores = np.where(cores == c2[0], c2[1], c2[0])
    mergeable = (mem + other_mem <= node.memory_gb + MEM_TOL_GB) & (cores + other_cores <= node.cores)
    fixed = [b for b, ok in zip(bundles, mergeable) if not ok]
    loose = [b for b, ok in zip(bundles, mergeable) if ok]
    if len(loose) < 2:
        return bundles, "no partial bundles to merge"
    order = sorted(range(len(loose)), key=lambda k: (-_size(loose[k], node), _bundle_key(loose[k])))
    loose = [loose[k] for k in order]
    items = _Items(np.array([sum(j.mem_gb for j in b) + V * len({j.visit for j in b}) for b in loose]),
                   np.array([len(b) for b in loose], dtype=np.int64),
                   np.array([max(j.runtime_s for j in b) for b in loose]),
                   -np.ones(len(loose), dtype=np.int64), 0, 0.0, float(node.memory_gb), int(node.cores))
    warm = _first_fit_items(items)
    status = "first fit"
    if len(loose) <= MERGE_MILP_MAX_ITEMS and time_limit_s > 0.1:
        lb = max(_ceil(items.mem.sum() / node.memory_gb), _ceil(items.cores.sum() / node.cores))
        solved = _optimise(items, warm, solver, time_limit_s, lb)
        warm, status = solved.assign, solved.status
    groups: dict[int, list[Job]] = {}
    for b, bundle in zip(warm, loose):
        groups.setdefault(b, []).extend(bundle)
    merged = fixed + [tuple(g) for g in groups.values()]
    return merged, f"{len(loose)} partial bundles into {len(groups)} ({status})"


def _repack(bundles: list[tuple[Job, ...]], node: Node, solver: str, deadline: float,
            lb: int) -> tuple[list[tuple[Job, ...]], str]:
    """Local search after the decomposition: close bundles one visit at a time.

    Visits are tried emptiest own bundle first: :func:`_spill` (moves a few sensors into other
    bundles' room), then :func:`_reinsert` (the integer program), pass after pass, until a pass
    saves nothing, the plan meets ``lb`` or ``deadline`` passes.
    """
    V, M, C = node.visit_overhead_gb, node.memory_gb, node.cores
    bundles = [tuple(b) for b in bundles]
    spills = reinserts = 0
    failed: set[tuple[int, int]] = set()  # (visit, bundle count) already tried by the program
    improved = True
    while improved and len(bundles) > lb and deadline - time.perf_counter() > 0.1:
        improved = False
        stats = [_BundleStats.of(b, node) for b in bundles]
        fill: dict[int, float] = {}
        for st in stats:
            if len(st.visits) == 1:
                (visit,) = st.visits
                fill[visit] = min(fill.get(visit, math.inf), (M - st.free_mem) / M + (C - st.free_cores) / C)
        for visit in sorted(fill, key=lambda v: (fill[v], v)):
            if len(bundles) <= lb or deadline - time.perf_counter() <= 0.1:
                break
            new = _spill(bundles, stats, visit, node)
            if new is None and (visit, len(bundles)) not in failed:
                result = _reinsert(bundles, [visit], node, solver, deadline)
                if result is not None and result[1] > 0:
                    new = result[0]
                    reinserts += result[1]
                else:
                    failed.add((visit, len(bundles)))
            elif new is not None:
                spills += 1
            if new is not None:
                bundles, improved = new, True
                stats = [_BundleStats.of(b, node) for b in bundles]
    return bundles, f"{spills} bundles closed by moving sensors, {reinserts} by the integer program"


@dataclass(frozen=True)
class _BundleStats:
    free_mem: float   # GB left, after the overheads of the visits present
    free_cores: int
    visits: frozenset

    @classmethod
    def of(cls, bundle: Sequence[Job], node: Node) -> "_BundleStats":
        visits = frozenset(j.visit for j in bundle)
        used = math.fsum(j.mem_gb for j in bundle) + node.visit_overhead_gb * len(visits)
        return cls(node.memory_gb - used, node.cores - len(bundle), visits)


def _spill(bundles: list[tuple[Job, ...]], stats: list[_BundleStats], visit: int,
           node: Node) -> list[tuple[Job, ...]] | None:
    """Close one of a visit's own bundles by moving some of its sensors into other bundles' room.

    The visit's *own* bundles (holding only it) are F; its sensors there must fit F - 1 of them
    after some go elsewhere.  Candidates to move are taken heaviest first when the visit is short of
    memory, lightest first when it is short of cores (then the other way round); each goes, best
    fit, into a bundle with room
    (a free core, and its memory plus V unless the visit is already there), and after each move
    first fit decreasing tries to repack the rest into F - 1 bundles.  Returns the new bundles, or
    None if the visit cannot give up a bundle this way.  Cheap (no solver) and deterministic.
    """
    V, M, C = node.visit_overhead_gb, node.memory_gb, node.cores
    own = {k for k, st in enumerate(stats) if st.visits == {visit}}
    F = len(own)
    if F == 0:
        return None
    jobs = sorted((j for k in own for j in bundles[k]), key=_job_order)
    total = math.fsum(j.mem_gb for j in jobs)
    short_of_memory = F == 1 or total / ((F - 1) * (M - V)) >= len(jobs) / ((F - 1) * C)
    lightest = jobs[-1].mem_gb
    others = [k for k, st in enumerate(stats)
              if k not in own and st.free_cores >= 1 and st.free_mem >= lightest - MEM_TOL_GB]
    for candidates in ((jobs, jobs[::-1]) if short_of_memory else (jobs[::-1], jobs)):
        out = _spill_in_order(bundles, stats, visit, node, own, candidates, others)
        if out is not None:
            return out
    return None


def _spill_in_order(bundles: list[tuple[Job, ...]], stats: list[_BundleStats], visit: int, node: Node,
                    own: set[int], candidates: Sequence[Job], others: list[int]) -> list[tuple[Job, ...]] | None:
    """:func:`_spill` with one order of candidates (``own``: the visit's bundles; ``others``: the
    bundles that might take some of it)."""
    V, M, C = node.visit_overhead_gb, node.memory_gb, node.cores
    F = len(own)
    jobs = sorted(candidates, key=_job_order)
    total = math.fsum(j.mem_gb for j in jobs)
    free_mem = {k: stats[k].free_mem for k in others}
    free_cores = {k: stats[k].free_cores for k in others}
    has_visit = {k for k in others if visit in stats[k].visits}
    moved: dict[int, list[Job]] = {}
    kept = list(jobs)
    kept_mem, kept_n = total, len(jobs)
    for job in candidates:
        best, best_key = None, None
        for k in others:
            extra = job.mem_gb + (0.0 if k in has_visit else V)
            if free_cores[k] >= 1 and free_mem[k] >= extra - MEM_TOL_GB:
                key = (free_mem[k] - extra, _bundle_key(bundles[k]))
                if best_key is None or key < best_key:
                    best, best_key = k, key
        if best is None:
            continue
        free_mem[best] -= job.mem_gb + (0.0 if best in has_visit else V)
        free_cores[best] -= 1
        has_visit.add(best)
        moved.setdefault(best, []).append(job)
        kept.remove(job)
        kept_mem -= job.mem_gb
        kept_n -= 1
        if kept_n <= (F - 1) * C and kept_mem <= (F - 1) * (M - V) + MEM_TOL_GB:
            packed = _first_fit(kept, node)
            if len(packed) <= F - 1:
                out = [b for n, b in enumerate(bundles) if n not in own and n not in moved]
                out += [bundles[n] + tuple(moved[n]) for n in sorted(moved)]
                out += [tuple(b) for b in packed]
                return out
    return None


def _reinsert(bundles: list[tuple[Job, ...]], visits: Sequence[int], node: Node, solver: str,
              deadline: float) -> tuple[list[tuple[Job, ...]], int] | None:
    """One step of :func:`_repack`: (new bundles, bundles saved), or None when not worth a try."""
    V, M, C = node.visit_overhead_gb, node.memory_gb, node.cores
    S = set(visits)
    own = sorted((j for b in bundles for j in b if j.visit in S), key=_job_order)
    fresh = [k for k, b in enumerate(bundles) if all(j.visit in S for j in b)]
    rest = [tuple(j for j in b if j.visit not in S) for b in bundles]
    room = {k: (M - sum(j.mem_gb for j in rest[k]) - V * len({j.visit for j in rest[k]}), C - len(rest[k]))
            for k in range(len(bundles)) if rest[k]}
    hosts = [k for k in room if len(rest[k]) < len(bundles[k])]
    others = [k for k, (m, c) in room.items()
              if k not in hosts and c >= 1 and m >= V + own[-1].mem_gb - MEM_TOL_GB]
    others.sort(key=lambda k: (-min((room[k][0] - V) / M, room[k][1] / C), _bundle_key(bundles[k])))
    receivers = hosts + others[:REPACK_RECEIVERS]
    F = len(fresh)
    if F == 0:
        return None
    # could S fit in one fresh bin fewer at all?
    spare_mem = sum(max(0.0, room[k][0] - V) for k in receivers)
    if (math.fsum(j.mem_gb for j in own) > (F - 1) * (M - V) + spare_mem + MEM_TOL_GB
            or len(own) > (F - 1) * C + sum(room[k][1] for k in receivers)):
        return None
    label = {k: n for n, k in enumerate(fresh + receivers)}
    bin_of = {(j.visit, j.det_name): label[k] for k, b in enumerate(bundles) for j in b if j.visit in S}
    warm = [bin_of[(j.visit, j.det_name)] for j in own]
    items = _items_from_jobs(own, node)
    rooms = [room[k] for k in receivers]
    limit = min(REPACK_ATTEMPT_S, deadline - time.perf_counter())
    res = _solve_items(items, F, warm, "count", solver, limit, min_bins=0, max_nodes=REPACK_MAX_NODES,
                       rooms=rooms)
    if res.assign is None:
        return None
    used = len({b for b in res.assign if b < F})
    if used >= F:
        return bundles, 0
    touched = set(fresh) | set(receivers)
    out = [b for k, b in enumerate(bundles) if k not in touched]
    for r, k in enumerate(receivers):
        out.append(rest[k] + tuple(j for j, b in zip(own, res.assign) if b == F + r))
    for n in range(F):
        members = tuple(j for j, b in zip(own, res.assign) if b == n)
        if members:
            out.append(members)
    return out, F - used


def _size(bundle: Sequence[Job], node: Node) -> float:
    mem = sum(j.mem_gb for j in bundle) + node.visit_overhead_gb * len({j.visit for j in bundle})
    return mem / node.memory_gb + len(bundle) / node.cores


def _first_fit_items(items: _Items) -> list[int]:
    free_mem: list[float] = []
    free_cores: list[int] = []
    assign = []
    for m, c in zip(items.mem, items.cores):
        for b in range(len(free_mem)):
            if free_mem[b] >= m - MEM_TOL_GB and free_cores[b] >= c:
                break
        else:
            b = len(free_mem)
            free_mem.append(items.memory)
            free_cores.append(items.max_cores)
        free_mem[b] -= m
        free_cores[b] -= int(c)
        assign.append(b)
    return assign


# ------------------------------------------------------------------------------------------------
# The public entry


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
    keys = [(j.visit, j.det_name) for j in plan.jobs()]
    if len(set(keys)) != len(keys):
        problems.append("a job is in more than one bundle")
    if jobs is not None and set(keys) != {(j.visit, j.det_name) for j in jobs}:
        problems.append("the plan's jobs differ from the campaign's")
    return problems


# ------------------------------------------------------------------------------------------------
# Files


def read_jobs(path: str | os.PathLike) -> list[Job]:
    """Read sensor jobs from an estimates table or any table with the columns ``visit``,
    ``det_name``, ``mem_gb`` and, optionally, ``runtime_s`` (CSV or tab-separated, with a header).

    The table is read by :func:`dc2flow.estimate.read_estimates`, the one reader of estimates,
    which checks every value.

    Raises:
        EstimateError: the file is missing or empty, a column is missing, or a value is not a
                       finite number >= 0 or not a science sensor; the message names ``file:line``.
    """
    from .estimate import JOB_COLUMNS, read_estimates

    return [Job(r["visit"], r["det_name"], r["mem_gb"], r["runtime_s"]) for r in read_estimates(path, JOB_COLUMNS)]


def write_plan(path: str | os.PathLike, plan: Plan) -> None:
    """Write the plan as CSV, one :class:`PlanRow` per sensor (header :data:`PLAN_COLUMNS`), atomically.

    Parameters:
        path:  the output file.
        plan:  the plan.
    """
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(PLAN_COLUMNS)
        writer.writerows(dataclasses.astuple(row) for row in plan.rows())


_BUNDLE_RE = re.compile(r"b[0-9]{4,}")


def read_plan(path: str | os.PathLike) -> list[PlanRow]:
    """Read a plan CSV (:func:`write_plan`) back, every value checked: the one reader of plans.

    Raises:
        BundlingError: the file cannot be read, the header is not :data:`PLAN_COLUMNS`, a row has
                       the wrong number of fields, a bundle name, visit, sensor or request is
                       invalid, a sensor is listed twice, or a row's ``bundle_mem_mb`` is not the
                       sum of its bundle's ``mem_mb``; the message names ``file:line``.
    """
    from .camera import DET_NAMES

    path = os.fspath(path)
    fix = "rerun dc2flow bundle (delete the plan to make Snakemake remake it)"
    try:
        fh = open(path, newline="")
    except OSError as exc:
        raise BundlingError(f"{path}: cannot read the plan ({exc.strerror})", "check the path") from None
    with fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        if tuple(header) != PLAN_COLUMNS:
            raise BundlingError(f"{path}:1: header is {','.join(header)!r}, not {','.join(PLAN_COLUMNS)!r}", fix)
        rows: list[PlanRow] = []
        lines: dict[tuple[int, str], int] = {}
        totals: dict[str, list[int]] = {}
        for lineno, row in enumerate(reader, start=2):
            if len(row) != len(PLAN_COLUMNS):
                raise BundlingError(f"{path}:{lineno}: {len(row)} fields, not {len(PLAN_COLUMNS)} ({','.join(row)})", fix)
            bundle, visit, det_name, *numbers = row
            if not _BUNDLE_RE.fullmatch(bundle):
                raise BundlingError(f"{path}:{lineno}: bundle name {bundle!r} is not b0000, b0001, ...", fix)
            if det_name not in DET_NAMES:
                raise BundlingError(f"{path}:{lineno}: det_name {det_name!r} is not an LSSTCam science sensor", fix)
            values = []
            for col, text, low in zip(("visit", *PLAN_COLUMNS[3:]), (visit, *numbers), (0, 1, 1, 1)):
                try:
                    value = int(text) if text.isascii() else None
                except ValueError:
                    value = None
                if value is None or value < low:
                    raise BundlingError(f"{path}:{lineno}: column '{col}' is not an integer >= {low} ({text!r})", fix)
                values.append(value)
            entry = PlanRow(bundle, values[0], det_name, *values[1:])
            key = (entry.visit, det_name)
            if key in lines:
                raise BundlingError(f"{path}:{lineno}: visit {entry.visit} {det_name} is also on line {lines[key]}", fix)
            lines[key] = lineno
            total = totals.setdefault(bundle, [entry.bundle_mem_mb, 0, lineno])
            if entry.bundle_mem_mb != total[0]:
                raise BundlingError(f"{path}:{lineno}: bundle_mem_mb {entry.bundle_mem_mb} differs from {total[0]} "
                                    f"on line {total[2]} (bundle {bundle})", fix)
            total[1] += entry.mem_mb
            rows.append(entry)
    for bundle, (want, got, lineno) in totals.items():
        if want != got:
            raise BundlingError(f"{path}:{lineno}: bundle {bundle}'s bundle_mem_mb is {want}, its members' mem_mb "
                                f"add up to {got}", fix)
    return rows


def write_summary_json(path: str | os.PathLike, summary: Summary) -> None:
    """Write the :class:`Summary` as JSON, atomically."""
    write_json(path, summary.to_dict())


def format_summary(summary: Summary) -> str:
    """The summary as a few human-readable lines (what ``dc2flow bundle`` prints)."""
    s = summary
    bounds = f"lower bound {s.lower_bound}, strong bound {s.strong_lower_bound}"
    if s.lp_bound is not None:
        bounds += f", solver bound {s.lp_bound}"
    flat = f"{s.dc2_flat_bundles}" if s.dc2_flat_bundles is not None else "does not fit a node"
    return "\n".join([
        f"jobs:         {s.n_jobs} sensors in {s.n_visits} visits",
        f"bundles:      {s.n_bundles} ({bounds}; gap {100 * s.gap:.1f}%)",
        f"compare:      first fit decreasing {s.ffd_bundles}, DC2 flat rule {flat}",
        f"utilisation:  memory {100 * s.mem_utilisation:.1f}%, cores {100 * s.core_utilisation:.1f}%",
        f"node-seconds: {s.node_seconds:.0f} (lower bound {s.node_seconds_bound:.0f})",
        f"method:       {s.method} with {s.solver} in {s.solve_time_s:.2f} s: {s.status}",
    ])


def run_cli(in_csv: str | os.PathLike | Sequence[str | os.PathLike], out_csv: str | os.PathLike, node: Node,
            solver: str, solve_time_limit_s: float, summary_json: str | os.PathLike | None = None) -> Summary:
    """``dc2flow bundle``: read the jobs, plan, write the plan (and summary); return the summary.

    Parameters:
        in_csv:              one jobs table or several (e.g. every ``estimates/{visit}.tsv``).
        out_csv:             the plan CSV to write.
        node:                the node shape.
        solver:              ``auto``, ``highs`` or ``cbc``.
        solve_time_limit_s:  the solver time budget, seconds.
        summary_json:        where to write the summary as JSON [default: None, not written].

    Returns:
        the :class:`Summary` (print it with :func:`format_summary`).

    Raises:
        BundlingError: unreadable or invalid jobs; nothing is written then.
    """
    paths = [in_csv] if isinstance(in_csv, (str, os.PathLike)) else list(in_csv)
    jobs = [job for path in paths for job in read_jobs(path)]
    plan, summary = plan_bundles(jobs, node, solver=solver, time_limit_s=solve_time_limit_s)
    write_plan(out_csv, plan)
    if summary_json is not None:
        write_summary_json(summary_json, summary)
    return summary
