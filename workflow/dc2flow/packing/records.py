"""The records of packing: :class:`Job`, :class:`Node`, :class:`Plan`, :class:`PlanRow`, :class:`Summary`,
and the constants."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ConfigError


PLAN_COLUMNS = ("bundle", "visit", "snap", "det_name", "mem_mb", "runtime_min", "bundle_mem_mb")
"""Header of the plan CSV written by :func:`write_plan` (the fields of :class:`PlanRow`)."""
PLAN_COLUMNS_V1 = ("bundle", "visit", "det_name", "mem_mb", "runtime_min", "bundle_mem_mb")
"""The header of plans written before the ``snap`` column (every row snap 0): still read."""
MILP_MAX_JOBS = 400
"""Above this many jobs :func:`plan_bundles` decomposes by visits: one integer program over ~1,000
jobs no longer solves in seconds (building the pulp model alone takes 7 s at 3,780 jobs)."""
MERGE_MILP_MAX_ITEMS = 250
"""The largest merge of partial bundles solved as an integer program; above it, first fit."""
RUNTIME_PHASE_SHARE = 0.2
"""The share of the solver budget the node-seconds phase of :func:`solve_milp` may use: it starts
from the runtime-sorted refill (:func:`_balance`), often proven optimal by :func:`node_seconds_bound`,
and the LP relaxation of max() is weak (tests/test_bundle.py's 55 random jobs: 5 % fewer
node-seconds than the refill)."""
RUNTIME_PHASE_MAX_NODES = 200
"""Branch-and-bound nodes of that phase: a limit that, unlike time, gives the same plan on a busy
and an idle machine (55 jobs: 9 s, within 0.3 % of the node-seconds a 24 s time limit reached)."""
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
    """One sensor job: an exposure's sensor and its predicted demands.

    The packing's "visit" is the exposure (:attr:`exposure`, (visit, snap)): the sensors of one
    exposure share its per-visit state (catalog, sky, WCS, PSF), so the visit overhead is paid
    once per exposure present in a bundle, and two snaps of a visit pay it twice.

    Parameters:
        visit:     the visit (obshistid).
        det_name:  the sensor, e.g. ``R22_S11``.
        mem_gb:    predicted peak memory of its render, GB (without the visit overhead).
        runtime_s: predicted wall time, seconds; 0 when unknown [default: 0.0].
        snap:      the snap of the visit [default: 0].
    """

    visit: int
    det_name: str
    mem_gb: float
    runtime_s: float = 0.0
    snap: int = 0

    @property
    def exposure(self) -> tuple[int, int]:
        """(visit, snap): what shares one visit overhead."""
        return (self.visit, self.snap)


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
    return (bundle[0].exposure, bundle[0].det_name)


def exposure_words(visit: int, snap: int) -> str:
    """An exposure in messages: ``visit 449053`` (snap 0), ``visit 449053 snap 1``."""
    return f"visit {visit}" + (f" snap {snap}" if snap else "")


def _job_order(job: Job) -> tuple:
    """FFD's order: memory descending, then exposure and sensor (a total order on valid jobs)."""
    return (-job.mem_gb, job.exposure, job.det_name)


@dataclass(frozen=True)
class Plan:
    """Sensor jobs packed into bundles, in canonical order.

    The constructor sorts each bundle by (visit, snap, det_name) and the bundles by their first member
    and drops empty ones, so two plans with the same bundles compare and write equal; bundle ``i``
    is named ``b{i:04d}``.

    Parameters:
        bundles:  the bundles, each a sequence of :class:`Job`.
        node:     the node they are packed for.
    """

    bundles: tuple[tuple[Job, ...], ...]
    node: Node

    def __post_init__(self):
        bundles = [tuple(sorted(b, key=lambda j: (j.exposure, j.det_name))) for b in self.bundles]
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
        """Memory of bundle ``i``: its sensors plus one visit overhead per exposure present, GB."""
        bundle = self.bundles[i]
        return (sum(j.mem_gb for j in bundle)
                + self.node.visit_overhead_gb * len({j.exposure for j in bundle}))

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
        snap:          the snap of the visit.
        det_name:      the sensor, e.g. ``R22_S11``.
        mem_mb:        its memory request, MB: the estimate, plus the visit overhead for the first
                       sensor of each exposure (visit, snap) in the bundle, rounded down (the plan fits the bundle in
                       the node to the byte, and the members' requests must not add up to more).
        runtime_min:   its wall-time request, minutes (the estimate rounded up, at least 1).
        bundle_mem_mb: the whole bundle's request, MB: the sum of its members' ``mem_mb``, which
                       Snakemake adds up for the group job.
    """

    bundle: str
    visit: int
    snap: int
    det_name: str
    mem_mb: int
    runtime_min: int
    bundle_mem_mb: int


def _plan_rows(plan: "Plan") -> list[PlanRow]:
    rows = []
    for i, bundle in enumerate(plan.bundles):
        seen: set[tuple[int, int]] = set()
        requests = []
        for job in bundle:
            mem_gb = job.mem_gb + (plan.node.visit_overhead_gb if job.exposure not in seen else 0.0)
            seen.add(job.exposure)
            requests.append((job, int(mem_gb * 1024), max(1, math.ceil(job.runtime_s / 60.0))))
        total = sum(mem for _, mem, _ in requests)
        rows += [PlanRow(bundle_name(i), job.visit, job.snap, job.det_name, mem, minutes, total) for job, mem, minutes in requests]
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
